"""Issue 13 item 5 (and the webhook half of item 2): a replayed notification does no work, a
forged channel id is never stopped at Google, and a verified notification is stored as "a
sync is owed" before it is answered."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from calsync.jobs.port import Reason
from calsync.store.models import CalendarBinding
from calsync.web.webhooks import TWIN_COALESCE_SECONDS
from tests.channels.conftest import Served
from tests.sql_events import statements


def _stops(served: Served) -> int:
    log = served.emu.control("GET", "/requests").json()["items"]
    return sum(1 for r in log if r["method"] == "POST" and r["path"].endswith("/channels/stop"))


async def _headers(served: Served, binding_id: uuid.UUID, number: int) -> dict[str, str]:
    binding = await served.binding(binding_id)
    return {
        "X-Goog-Channel-ID": binding.channel_id,
        "X-Goog-Channel-Token": binding.channel_token,
        "X-Goog-Resource-ID": binding.channel_resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": str(number),
    }


async def test_a_replayed_notification_does_no_work(served: Served) -> None:
    _, _, binding_id = await served.connected("rae@example.com")
    await served.wait_for(lambda: len(served.deliveries()) == 2)  # the `sync` messages
    captured = await _headers(served, binding_id, 5)
    client = served.world.client
    for _ in range(200):
        resp = await client.post("/webhooks/google", headers=captured)
        assert resp.status_code == 200
    assert served.jobs.requests == [(binding_id, Reason.WEBHOOK)]
    # an older number of the same channel is a replay too; the next one is new
    older = await client.post(
        "/webhooks/google", headers={**captured, "X-Goog-Message-Number": "4"}
    )
    assert older.status_code == 200 and len(served.jobs.requests) == 1
    newer = await client.post(
        "/webhooks/google", headers={**captured, "X-Goog-Message-Number": "6"}
    )
    assert newer.status_code == 200 and len(served.jobs.requests) == 2
    assert (await served.binding(binding_id)).channel_message_seq == 6


async def test_a_new_channel_counts_from_one_again(served: Served) -> None:
    from calsync.sync.channels.service import Channels

    _, _, binding_id = await served.connected("ray@example.com")
    client = served.world.client
    resp = await client.post("/webhooks/google", headers=await _headers(served, binding_id, 90))
    assert resp.status_code == 200 and len(served.jobs.requests) == 1
    service = Channels(served.world.db, served.services.access, served.services.settings)
    assert await service.watch(binding_id)  # renewed: Google numbers the new channel afresh
    resp = await client.post("/webhooks/google", headers=await _headers(served, binding_id, 2))
    assert resp.status_code == 200 and len(served.jobs.requests) == 2


async def test_a_missing_or_bad_message_number_is_refused(served: Served) -> None:
    _, _, binding_id = await served.connected("rob@example.com")
    good = await _headers(served, binding_id, 3)
    client = served.world.client
    for bad in ("", "0", "-1", "x", "1.5", "1e3", "9" * 40):
        resp = await client.post("/webhooks/google", headers={**good, "X-Goog-Message-Number": bad})
        assert resp.status_code == 400, bad
        assert "X-Goog-Message-Number" in resp.text
    missing = {k: v for k, v in good.items() if k != "X-Goog-Message-Number"}
    resp = await client.post("/webhooks/google", headers=missing)
    assert resp.status_code == 400
    assert served.jobs.requests == []
    assert (await served.binding(binding_id)).sync_owed_at is None


async def test_the_owed_sync_is_stored_before_the_answer(served: Served) -> None:
    _, _, binding_id = await served.connected("ros@example.com")
    assert (await served.binding(binding_id)).sync_owed_at is None
    resp = await served.world.client.post(
        "/webhooks/google", headers=await _headers(served, binding_id, 2)
    )
    assert resp.status_code == 200
    # the FakeJobs runner did not sync: the database alone says a sync is owed
    assert (await served.binding(binding_id)).sync_owed_at is not None


async def test_forged_channel_ids_are_never_stopped_at_google(
    served: Served, monkeypatch: Any
) -> None:
    from calsync.web import webhooks

    monkeypatch.setattr(webhooks, "STALE_GRACE_SECONDS", 0.0)
    _, _, binding_id = await served.connected("rue@example.com")
    await served.wait_for(lambda: len(served.deliveries()) == 2)
    binding = await served.binding(binding_id)
    before = _stops(served)
    client = served.world.client
    for i in range(30):
        forged = {
            **await _headers(served, binding_id, 10 + i),
            "X-Goog-Channel-ID": f"{binding_id.hex}-forged{i}",
            "X-Goog-Channel-Token": "whatever",
        }
        resp = await client.post("/webhooks/google", headers=forged)
        assert resp.status_code == 200
    await served.services.drain()
    assert _stops(served) == before
    assert served.jobs.requests == []
    after = await served.binding(binding_id)
    assert after.channel_id == binding.channel_id
    assert after.sync_owed_at is None and after.channel_message_seq is None


async def test_a_notification_is_served_ahead_of_the_router_and_sessions(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """web/webhooks.py FastPath: Google's POST skips the session middleware and the route
    matching (its CPU was a good part of a webhook-triggered sync's); every other request, and
    any other method on the webhook's path, still goes through them."""
    from fastapi.routing import APIRouter
    from starlette.middleware.sessions import SessionMiddleware

    _, _, binding_id = await served.connected("rex@example.com")
    passed: list[str] = []

    def spy(cls: Any, name: str) -> None:
        real = cls.__call__

        async def counted(self: Any, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                passed.append(f"{name} {scope['method']} {scope['path']}")
            await real(self, scope, receive, send)

        monkeypatch.setattr(cls, "__call__", counted)

    spy(APIRouter, "router")
    spy(SessionMiddleware, "sessions")
    client = served.world.client
    resp = await client.post("/webhooks/google", headers=await _headers(served, binding_id, 7))
    assert resp.status_code == 200
    assert served.jobs.requests == [(binding_id, Reason.WEBHOOK)]
    unknown = await client.post(
        "/webhooks/google", headers={"X-Goog-Channel-ID": "nope", "X-Goog-Resource-ID": "r"}
    )
    assert unknown.status_code == 200
    assert (await client.post("/webhooks/google")).status_code == 400  # no channel id
    assert passed == []
    assert (await client.get("/webhooks/google")).status_code == 405
    assert (await client.get("/healthz")).status_code == 200
    assert passed == [
        "sessions GET /webhooks/google",
        "router GET /webhooks/google",
        "sessions GET /healthz",
        "router GET /healthz",
    ]


async def test_a_notification_is_two_statements_without_an_orm_session(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The channel's lookup and the message number's write, on a connection (web.webhooks: a
    session's set-up, commit and close cost about as much as one of its statements). On
    PostgreSQL each is its own transaction: no BEGIN and COMMIT round trips around them
    (asyncpg starts a transaction only for a connection not in autocommit)."""
    _, _, binding_id = await served.connected("sol@example.com")
    await served.wait_for(lambda: len(served.deliveries()) == 2)  # the `sync` messages
    headers = await _headers(served, binding_id, 7)
    sessions: list[asyncio.Task[Any] | None] = []
    begun: list[asyncio.Task[Any] | None] = []
    start = asyncpg.transaction.Transaction.start

    async def counted(self: Any) -> None:  # a transaction sent to PostgreSQL, from any task
        begun.append(asyncio.current_task())
        await start(self)

    monkeypatch.setattr(asyncpg.transaction.Transaction, "start", counted)

    def began(*_: Any) -> None:  # an ORM session began a transaction, in this task or another
        sessions.append(asyncio.current_task())

    event.listen(Session, "after_begin", began)
    try:
        with statements(served.world.db) as sent:
            # ASGITransport runs the app in this task
            resp = await served.world.client.post("/webhooks/google", headers=headers)
    finally:
        event.remove(Session, "after_begin", began)
    assert resp.status_code == 200 and served.jobs.requests == [(binding_id, Reason.WEBHOOK)]
    assert asyncio.current_task() not in sessions
    assert asyncio.current_task() not in begun
    channel = [s for s in sent if "channel" in s]
    assert len(channel) == 2, channel  # the lookup, the write
    assert channel[0].startswith("SELECT") and channel[1].startswith("UPDATE"), channel
    # the write is committed: another connection sees it
    assert (await served.binding(binding_id)).channel_message_seq == 7


@pytest.mark.channels(2)
async def test_a_notification_waits_for_the_twins_message_only_when_there_is_a_twin(
    served: Served,
) -> None:
    """The sync waits for the other twin's message of the change (TWIN_COALESCE_SECONDS, ended
    by that message) only when the calendar has the other twin: with one channel (its twin
    stopped, or not made yet) no message would end the wait, so the sync is queued at once."""
    _, _, binding_id = await served.connected("wait@example.com")
    await served.wait_for(lambda: len(served.deliveries()) >= 3)  # the `sync` messages
    served.jobs.delays.clear()
    client = served.world.client
    resp = await client.post("/webhooks/google", headers=await _headers(served, binding_id, 5))
    assert resp.status_code == 200
    assert served.jobs.requests == [(binding_id, Reason.WEBHOOK)]
    assert served.jobs.delays == [TWIN_COALESCE_SECONDS]
    async with served.world.db.session() as s:
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == binding_id)
            .values(twin_channel_id=None, twin_channel_resource_id=None)
        )
        await s.commit()
    resp = await client.post("/webhooks/google", headers=await _headers(served, binding_id, 6))
    assert resp.status_code == 200
    assert served.jobs.requests[-1] == (binding_id, Reason.WEBHOOK)
    assert served.jobs.delays[-1] == 0.0
