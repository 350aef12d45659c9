"""The echo (issue 16): Google announces calsync's own writes on the calendar's channel too, so
a channel that stays silent after a write is caught within the grace — at no request cost while
it works, with the expectation stored before the write (a crash leaves it checked)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calsync import clock
from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.port import Reason
from calsync.store import echoes
from calsync.store.models import CalendarBinding
from calsync.sync.channels.service import Channels
from calsync.sync.context import Hooks
from calsync.sync.engine import sync_binding
from tests.jobs.conftest import runs_of

from .conftest import GRACE, Served, tick
from .test_evidence import _connected


async def echo_owed(session: AsyncSession, binding_id: uuid.UUID) -> datetime | None:
    """Since when the binding's channel owes the echo of a write (None: it owes none): an
    expectation stored and no verified notification since."""
    row = (
        await session.execute(
            select(CalendarBinding.channel_echo_since, CalendarBinding.channel_heard_at).where(
                CalendarBinding.id == binding_id
            )
        )
    ).one()
    since, heard = row
    return since if since is not None and (heard is None or heard < since) else None


def calendar_calls(served: Served, seq: int, account: str) -> list[dict[str, Any]]:
    items = served.emu.control("GET", f"/requests?after={seq}").json()["items"]
    return [r for r in items if r["account"] == account and r["path"].startswith("/calendar/")]


def last_seq(served: Served) -> int:
    return int(served.emu.control("GET", "/requests?after=0").json()["last_seq"])


async def dies_after_google_write(
    served: Served,
    binding_id: uuid.UUID,
    *,
    before_write: Callable[..., Awaitable[None]] | None = None,
    at_death: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """A CRM change's sync whose process dies right after Google answered its writes, before
    it stored anything (`at_death`: what the test reads at that moment)."""

    async def die(*_: Any) -> None:
        if at_death is not None:
            await at_death()
        raise RuntimeError("the process dies right after Google's answer")

    with pytest.raises(RuntimeError):
        await sync_binding(
            served.world.db,
            binding_id,
            served.services.access,
            trigger="change",
            hooks=Hooks(before_google_write=before_write, after_google_write=die),
        )


async def push_crm_entry(
    served: Served, runner: InProcessRunner, user_id: uuid.UUID, binding_id: uuid.UUID, s: str
) -> None:
    await served.activity(user_id, s)
    await runner.enqueue_sync(binding_id, Reason.CHANGE)
    await runner.drain()
    assert s in [e["summary"] for e in served.events(await _email(served, binding_id))]


async def _email(served: Served, binding_id: uuid.UUID) -> str:
    return str((await served.binding(binding_id)).google_calendar_id)


async def test_a_healthy_channel_echoes_our_write_and_nothing_more_is_spent(
    served: Served, runner: InProcessRunner
) -> None:
    user_id, binding_id = await _connected(served, "echo@example.com")
    channel = (await served.binding(binding_id)).channel_id
    await push_crm_entry(served, runner, user_id, binding_id, "Made in the CRM")
    # the receiver heard the echo: the one write per notification stamped it
    await served.wait_for(lambda: (binding_id, Reason.ECHO) in served.jobs.requests)
    async with served.world.db.session() as s:
        assert await echo_owed(s, binding_id) is None
        await s.commit()
    seq = last_seq(served)
    await tick(served, runner, GRACE.total_seconds() + 60)
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is None and binding.channel_id == channel
    assert calendar_calls(served, seq, "echo@example.com") == []  # the check costs nothing
    assert "retry" not in [r.trigger for r in await runs_of(served.world.db, [binding_id])]


async def test_a_channel_silent_after_our_write_is_caught_within_the_grace(
    served: Served, runner: InProcessRunner
) -> None:
    """Caught minutes after the write, not at the next daily poll: the channel re-created, and
    what it kept quiet (an edit made in Google meanwhile) imported in the same catch-up."""
    user_id, binding_id = await _connected(served, "deaf@example.com")
    old = (await served.binding(binding_id)).channel_id
    served.emu.control("POST", f"/channels/{old}/silence", {"silent": True})
    served.insert_event("deaf@example.com", "Made in Google while silent")
    await push_crm_entry(served, runner, user_id, binding_id, "Made in the CRM")
    await tick(served, runner, 60)  # within the grace: nothing yet
    assert (await served.binding(binding_id)).channel_suspect_since is None
    await tick(served, runner, GRACE.total_seconds())
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is not None
    assert binding.channel_id != old
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[old]["stopped"] is True and by_id[binding.channel_id]["stopped"] is False
    subjects = {a["subject"] for a in await served.activities(user_id)}
    assert "Made in Google while silent" in subjects
    # the new channel announces the next change: trusted again
    served.insert_event("deaf@example.com", "Announced")
    await served.wait_for(lambda: (binding_id, Reason.WEBHOOK) in served.jobs.requests)
    assert (await served.binding(binding_id)).channel_suspect_since is None


async def test_the_expectation_is_stored_before_the_write(
    served: Served, runner: InProcessRunner
) -> None:
    """Stored and committed before the request leaves, so a crash right after the write (or
    an echo faster than the push's own bookkeeping) cannot lose or outrun it."""
    user_id, binding_id = await _connected(served, "early@example.com")
    served.emu.control(
        "POST", f"/channels/{(await served.binding(binding_id)).channel_id}/silence", {}
    )
    await served.activity(user_id, "Written")
    seen: list[Any] = []

    async def owed_then() -> None:
        async with served.world.db.session() as s:
            seen.append(await echo_owed(s, binding_id))
            await s.commit()

    await dies_after_google_write(served, binding_id, at_death=owed_then)
    assert seen and seen[0] is not None
    await tick(served, runner, GRACE.total_seconds() + 1)  # after the restart: still checked
    assert (await served.binding(binding_id)).channel_suspect_since is not None


async def test_a_new_channel_does_not_owe_the_old_ones_echo(served: Served) -> None:
    _, binding_id = await _connected(served, "fresh@example.com")
    async with served.world.db.session() as s:
        await echoes.expect_echo(s, binding_id, clock.utcnow())
        await s.commit()
    db, access, settings = served.world.db, served.services.access, served.services.settings
    assert await Channels(db, access, settings).watch(binding_id)
    async with served.world.db.session() as s:
        assert await echo_owed(s, binding_id) is None
        await s.commit()


async def test_a_write_google_did_not_apply_owes_no_echo(
    served: Served, runner: InProcessRunner
) -> None:
    """Deleting an event already gone at Google changes nothing there, so nothing will be
    announced: the expectation is withdrawn and the channel keeps its trust."""
    user_id, binding_id = await _connected(served, "gone@example.com")
    await push_crm_entry(served, runner, user_id, binding_id, "Soon gone")
    await served.wait_for(lambda: (binding_id, Reason.ECHO) in served.jobs.requests)
    channel = (await served.binding(binding_id)).channel_id
    served.emu.control("POST", f"/channels/{channel}/silence", {})  # nothing heard from here on
    (event,) = [e for e in served.events("gone@example.com") if e["summary"] == "Soon gone"]
    (activity,) = [a for a in await served.activities(user_id) if a["subject"] == "Soon gone"]
    resp = await served.call("DELETE", f"/api/v1/activities/{activity['id']}")
    assert resp.status_code in (200, 204), resp.text

    async def gone_meanwhile(*_: Any) -> None:  # after the pull, before the push's delete
        with served.google("gone@example.com") as g:
            g.delete(f"/calendars/gone@example.com/events/{event['id']}")

    served.emu.control("POST", "/clock", {"advance_seconds": 60})  # the last echo is old
    clock.advance(60)
    mark = last_seq(served)
    await sync_binding(
        served.world.db,
        binding_id,
        served.services.access,
        trigger="change",
        hooks=Hooks(after_pull=gone_meanwhile),
    )
    deletes = [
        r for r in calendar_calls(served, mark, "gone@example.com") if r["method"] == "DELETE"
    ]
    assert len(deletes) == 2, deletes  # the person's, then calsync's: already gone
    async with served.world.db.session() as s:
        assert await echo_owed(s, binding_id) is None
        await s.commit()
    await tick(served, runner, GRACE.total_seconds() + 60)
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is None and binding.channel_id == channel


async def test_the_echo_of_our_write_is_queued_as_such_and_its_run_changes_nothing(
    served: Served, runner: InProcessRunner
) -> None:
    """The notification that answers calsync's own write is queued as Reason.ECHO (behind
    Google's other news, jobs/inprocess.py and procrastinate_runner.py); its run reads the
    event calsync wrote and writes nothing on either side: one copy each, no guest e-mail.
    A change made in Google afterwards is news again (Reason.WEBHOOK)."""
    user_id, binding_id = await _connected(served, "own@example.com")
    await push_crm_entry(served, runner, user_id, binding_id, "Made in the CRM")
    await served.wait_for(lambda: (binding_id, Reason.ECHO) in served.jobs.requests)
    assert (binding_id, Reason.WEBHOOK) not in served.jobs.requests
    mark = last_seq(served)
    await runner.enqueue_sync(binding_id, Reason.ECHO)
    await runner.drain()
    (run,) = [r for r in await runs_of(served.world.db, [binding_id]) if r.trigger == "echo"]
    assert run.outcome == "ok"
    calls = calendar_calls(served, mark, "own@example.com")
    assert calls and all(c["method"] == "GET" for c in calls)  # read, nothing written
    assert [e["summary"] for e in served.events("own@example.com")].count("Made in the CRM") == 1
    subjects = [a["subject"] for a in await served.activities(user_id)]
    assert subjects.count("Made in the CRM") == 1

    served.jobs.requests.clear()
    served.insert_event("own@example.com", "Made in Google")
    await served.wait_for(lambda: (binding_id, Reason.WEBHOOK) in served.jobs.requests)
    assert (binding_id, Reason.ECHO) not in served.jobs.requests


async def test_a_notification_long_after_an_unanswered_write_is_news(served: Served) -> None:
    """An echo owed for longer than the echo's grace marks a channel under suspicion: what it
    announces now is treated as a change made in Google (Reason.WEBHOOK), not as the echo."""
    _, binding_id = await _connected(served, "late@example.com")
    grace = timedelta(seconds=served.services.settings.channel_echo_grace_seconds)
    async with served.world.db.session() as s:
        await echoes.expect_echo(s, binding_id, clock.utcnow() - grace - timedelta(seconds=1))
        await s.commit()
    served.insert_event("late@example.com", "Made in Google")
    await served.wait_for(lambda: (binding_id, Reason.WEBHOOK) in served.jobs.requests)
    assert (binding_id, Reason.ECHO) not in served.jobs.requests
