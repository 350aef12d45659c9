"""Connecting, reconnecting, choosing calendars and switching sync on start a sync at once
(issue 12 item 5): the first import and what changed during an outage do not wait for the next
poll. They go through the same jobs port as "Sync now"."""

from __future__ import annotations

import asyncio
import uuid

from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.port import Periodic, Reason
from calsync.store import bindings, connections

from .conftest import Api

ALICE = "alice@example.com"


class Recorder:
    """A `JobQueue` that only remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[uuid.UUID, Reason]] = []

    async def enqueue_sync(
        self, binding_id: uuid.UUID, reason: Reason, *, full: bool = False, delay: float = 0.0
    ) -> None:
        self.asked.append((binding_id, reason))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def register_periodic(self, name: str, interval: float, work: Periodic) -> None:
        return None

    def healthy(self) -> bool:
        return True

    def queue_depth(self) -> int:
        return 0

    def take(self) -> list[tuple[uuid.UUID, Reason]]:
        asked, self.asked = self.asked, []
        return asked


async def enabled_bindings(api: Api, user_id: uuid.UUID) -> list[uuid.UUID]:
    async with api.world.db.session() as s:
        conn = await connections.for_user(s, user_id)
        assert conn is not None
        ids = [b.id for b in await bindings.for_connection(s, conn.id) if b.enabled]
        await s.commit()
    return ids


async def settings(api: Api, user_id: uuid.UUID, key: str, **body: object) -> None:
    resp = await api.call("PATCH", f"/api/v1/users/{user_id}/google/settings", key, json=body)
    assert resp.status_code == 200, resp.text


async def test_each_way_of_starting_asks_for_a_sync_at_once(api: Api) -> None:
    jobs = Recorder()
    api.app.state.jobs = jobs
    api.emu.account(ALICE)
    user_id, key = await api.user(ALICE)

    await api.connect(user_id, ALICE, key)  # first connect
    primary = await enabled_bindings(api, user_id)
    assert len(primary) == 1
    assert jobs.take() == [(primary[0], Reason.INITIAL)]

    # settings that choose nothing new start nothing
    await settings(api, user_id, key, private_events="busy")
    await settings(api, user_id, key, enabled=False)
    assert jobs.take() == []
    # switching sync on does
    await settings(api, user_id, key, enabled=True)
    assert jobs.take() == [(primary[0], Reason.INITIAL)]
    # choosing calendars does (the new export calendar's too)
    crm = api.emu.control("POST", f"/accounts/{ALICE}/calendars", {"summary": "CRM"}).json()["id"]
    await settings(api, user_id, key, import_calendar_ids=[ALICE], export_calendar_id=crm)
    chosen = await enabled_bindings(api, user_id)
    assert len(chosen) == 2
    assert sorted(jobs.take()) == sorted((b, Reason.INITIAL) for b in chosen)

    # reconnecting after Google revoked the grant
    api.emu.control("POST", f"/accounts/{ALICE}/revoke-grants")
    assert (await api.sync(user_id, key)).json()["outcome"] == "needs_reauth"
    jobs.take()
    await api.connect(user_id, ALICE, key)
    assert sorted(jobs.take()) == sorted((b, Reason.INITIAL) for b in chosen)


async def test_a_reconnect_with_sync_switched_off_starts_nothing(api: Api) -> None:
    jobs = Recorder()
    api.app.state.jobs = jobs
    api.emu.account(ALICE)
    user_id, key = await api.user(ALICE)
    await api.connect(user_id, ALICE, key)
    await settings(api, user_id, key, enabled=False)
    jobs.take()
    await api.connect(user_id, ALICE, key)
    assert jobs.take() == []


async def test_with_the_real_runner_the_first_import_arrives_without_sync_now(api: Api) -> None:
    """The in-process runner, with its polling switched off: connect, and Google's entry
    reaches the CRM and the CRM's entry reaches Google without anyone pressing Sync now or a
    poll coming due."""
    runner = InProcessRunner(api.world.db, api.services.access, poll_every=None, stuck_every=None)
    api.app.state.jobs = runner
    await runner.start()
    try:
        api.emu.account(ALICE)
        user_id, key = await api.user(ALICE)
        api.insert_event(ALICE, "Dentist")
        await api.activity(user_id, "Budget review")
        await api.connect(user_id, ALICE, key)
        for _ in range(200):  # a bounded wait for the queued sync, not a timing assertion
            subjects = sorted(a["subject"] for a in await api.activities(user_id))
            if subjects == ["Budget review", "Dentist"] and len(api.events(ALICE)) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(a["subject"] for a in await api.activities(user_id)) == [
            "Budget review",
            "Dentist",
        ]
        assert sorted(e["summary"] for e in api.events(ALICE)) == ["Budget review", "Dentist"]
    finally:
        await runner.stop()
