"""Issue 13 item 2, in the store and the runners (SQLite and PostgreSQL): a lock held by a dead
process of this machine is taken over at once, an acknowledged webhook stays owed until a sync
covers it, and CRM changes whose debounced push was lost are found from the change feed."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import timedelta

from sqlalchemy import update

from calsync.jobs.execute import Executor, busy
from calsync.jobs.port import Reason
from calsync.jobs.recovery import Recovery
from calsync.store import bindings, schedule
from calsync.store.base import utcnow
from calsync.store.models import CalendarBinding
from calsync.sync.context import Hooks
from calsync.sync.engine import RunResult, sync_binding
from calsync.sync.errors import Outcome
from calsync.sync.owner import _start_ticks, holder_dead, process_identity
from tests.jobs.conftest import Harness, at


class Recorder:
    """Only what Recovery needs of a JobQueue: the requests it makes."""

    def __init__(self) -> None:
        self.requests: list[tuple[uuid.UUID, Reason]] = []

    async def enqueue_sync(
        self, binding_id: uuid.UUID, reason: Reason, *, full: bool = False, delay: float = 0.0
    ) -> None:
        self.requests.append((binding_id, reason))


def dead_holder() -> str:
    """The lock owner string a process of this machine had, once it is dead."""
    proc = subprocess.Popen(["sleep", "30"])
    start = _start_ticks(proc.pid) or "rgone"
    proc.kill()
    proc.wait(10)
    host = process_identity().split(":")[0]
    return f"{host}:{proc.pid}:{start}:ab12cd34:ef56"


async def lock_as(h: Harness, owner: str, *, for_: timedelta = timedelta(minutes=15)) -> None:
    async with h.db.session() as s:
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == h.binding_id)
            .values(locked_by=owner, locked_until=utcnow() + for_)
        )
        await s.commit()


async def until_locked(h: Harness) -> None:
    """Wait (up to 10 s) until a sync holds the binding's lock."""
    async with asyncio.timeout(10):
        while True:
            async with h.db.session() as s:
                if await schedule.lock_holder(s, h.binding_id) is not None:
                    return
            await asyncio.sleep(0.01)


async def test_owner_identity_tells_a_dead_process_from_a_live_one() -> None:
    me = process_identity()
    assert not holder_dead(f"{me}:abc")  # this very process
    assert holder_dead(dead_holder())
    host, pid, _ = me.split(":")
    assert holder_dead(f"{host}:{pid}:999999999:abc")  # our pid, an earlier start
    assert not holder_dead(f"elsewhere.example:{pid}:1:abc")  # another machine: not judged
    assert not holder_dead("legacy-owner") and not holder_dead(None)


async def test_a_dead_local_holder_is_taken_over_at_once(h: Harness) -> None:
    await lock_as(h, dead_holder())
    result = await sync_binding(h.db, h.binding_id, h.google, trigger="retry")
    assert result.outcome is Outcome.OK, result.error
    async with h.db.session() as s:
        assert await schedule.lock_holder(s, h.binding_id) is None


async def test_a_live_holder_keeps_its_lock(h: Harness) -> None:
    await lock_as(h, f"{process_identity()}:other:run")
    result = await sync_binding(h.db, h.binding_id, h.google, trigger="retry")
    assert result.outcome is Outcome.SKIPPED and result.error is not None
    assert result.error.code == "calsync.sync_in_progress"


async def test_stuck_lock_release_frees_a_dead_holder_before_its_lock_runs_out(
    h: Harness,
) -> None:
    await lock_as(h, dead_holder())
    async with h.db.session() as s:  # another binding, held by a process on another machine
        other = await bindings.create(s, h.tenant_id, h.connection_id, "team@example.com")
        live = other.id
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == live)
            .values(locked_by="far.example:1:1:x", locked_until=utcnow() + timedelta(seconds=20))
        )
        await s.commit()
    freed = await Executor(h.db, h.google).release_stuck()
    assert freed == [h.binding_id]
    async with h.db.session() as s:
        assert await schedule.lock_holder(s, live) == "far.example:1:1:x"


async def test_an_owed_webhook_is_recovered_until_a_sync_covers_it(h: Harness) -> None:
    assert (await sync_binding(h.db, h.binding_id, h.google)).ok
    jobs = Recorder()
    recovery = Recovery(h.db, jobs, settle=timedelta(seconds=30))
    assert await recovery.run() == 0
    async with h.db.session() as s:
        await bindings.mark_owed(s, h.binding_id, utcnow())
        await s.commit()
    # the first pass of a process takes everything; later ones leave the young alone
    assert await Recovery(h.db, jobs, settle=timedelta(seconds=30)).run() == 1
    assert jobs.requests == [(h.binding_id, Reason.WEBHOOK)]
    assert await recovery.run() == 0
    # held by a live sync: its run covers it
    await lock_as(h, f"{process_identity()}:other:run")
    assert await Recovery(h.db, jobs, settle=timedelta(0)).run() == 0
    async with h.db.session() as s:
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == h.binding_id)
            .values(locked_by=None, locked_until=None)
        )
        await s.commit()
    assert (await sync_binding(h.db, h.binding_id, h.google, trigger="webhook")).ok
    assert (await h_binding(h)).sync_owed_at is None
    assert await Recovery(h.db, jobs, settle=timedelta(0)).run() == 0


async def test_a_webhook_during_the_sync_stays_owed(h: Harness) -> None:
    """A run pays the webhook debt it saw at its start, not one a notification left while it
    worked (that change may have come after the run's listing)."""
    first = utcnow()
    second = first + timedelta(milliseconds=5)
    async with h.db.session() as s:
        await bindings.mark_owed(s, h.binding_id, first)
        await s.commit()

    async def notified_meanwhile(ctx: object) -> None:
        async with h.db.session() as s:
            await bindings.mark_owed(s, h.binding_id, second)
            await s.commit()

    result = await sync_binding(
        h.db, h.binding_id, h.google, trigger="webhook", hooks=Hooks(after_pull=notified_meanwhile)
    )
    assert result.ok, result
    assert (await h_binding(h)).sync_owed_at == second
    # and the next run, which saw it, pays it
    assert (await sync_binding(h.db, h.binding_id, h.google, trigger="webhook")).ok
    assert (await h_binding(h)).sync_owed_at is None


async def test_crm_changes_whose_push_was_lost_are_found_in_the_change_feed(h: Harness) -> None:
    assert (await sync_binding(h.db, h.binding_id, h.google)).ok
    jobs = Recorder()
    assert await Recovery(h.db, jobs, settle=timedelta(0)).run() == 0
    await h.activity("Board meeting", at(3, 9))  # committed; its debounced push died
    later = Recovery(h.db, jobs, settle=timedelta(seconds=30))
    later.passes = 1  # a periodic pass: a change this young is the debounce's
    assert await later.run() == 0
    assert await Recovery(h.db, jobs, settle=timedelta(seconds=30)).run() == 1
    assert jobs.requests == [(h.binding_id, Reason.CHANGE)]
    assert (await sync_binding(h.db, h.binding_id, h.google, trigger="change")).ok
    assert await Recovery(h.db, jobs, settle=timedelta(0)).run() == 0
    assert "Board meeting" in [e.summary for e in await h.events()]


async def test_the_first_pass_leaves_what_this_process_saw_arrive_to_its_own_debounce(
    h: Harness,
) -> None:
    """The first pass looks at what a dead process left, i.e. what is older than this process:
    a CRM edit or a webhook that arrives after the start, before the pass runs (a busy event
    loop), is this process's own debounce's and would be synced twice (CI, 2026-12-03: a bulk
    edit went out in two runs)."""
    assert (await sync_binding(h.db, h.binding_id, h.google)).ok
    jobs = Recorder()
    recovery = Recovery(h.db, jobs, settle=timedelta(seconds=30))  # this process starts
    await asyncio.sleep(0.01)
    await h.activity("Bulk edit", at(3, 9))
    async with h.db.session() as s:
        await bindings.mark_owed(s, h.binding_id, utcnow())
        await s.commit()
    assert await recovery.run() == 0
    assert jobs.requests == []


async def h_binding(h: Harness) -> CalendarBinding:
    async with h.db.session() as s:
        found = await bindings.get(s, h.binding_id)
        assert found is not None
        return found


async def test_a_sync_that_lost_its_lock_stops_before_writing_more(h: Harness) -> None:
    """A worker whose renewals failed for longer than the lock timeout (a stall; CI once saw a
    renewal starved by SQLite's writer lock) finds the binding taken by another when its next
    renewal lands: it stops that sync at once instead of going on writing beside the new holder."""
    h.emu.control("POST", "/latency", {"ms": 300})  # every Google answer takes 0.3 s
    executor = Executor(h.db, h.google, lock_ttl=timedelta(seconds=3), heartbeat=0.05)
    try:
        run = asyncio.create_task(executor.run(h.binding_id, Reason.MANUAL, False))
        await until_locked(h)
        await lock_as(h, "far.example:1:1:new-holder")  # as after the old lock ran out
        result = await run
    finally:
        h.emu.control("POST", "/latency", {"ms": 0})
    assert busy(result), result
    async with h.db.session() as s:
        assert await schedule.lock_holder(s, h.binding_id) == "far.example:1:1:new-holder"
        binding = await s.get(CalendarBinding, h.binding_id)
        assert binding is not None and binding.sync_token is None  # the stopped sync saved nothing


class Stall:
    """The executor's monotonic clock, moved by the test: a process stopped (SIGSTOP, a long GC
    pause, a starved VM) sees its clock jump when it wakes, with no renewal run meanwhile."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def stalled_in_its_pull(
    h: Harness, executor: Executor, stall: Stall, *, taken: bool
) -> RunResult:
    """Run the executor's sync of a CRM entry; while its listing is under way, the process
    "stalls" past its lock timeout (and, if `taken`, another worker takes the binding)."""
    await h.activity("Written only by the holder", at(3, 10))
    h.emu.control("POST", "/latency", {"ms": 400})  # the listing is under way a while
    try:
        run = asyncio.create_task(executor.run(h.binding_id, Reason.MANUAL, False))
        await until_locked(h)
        if taken:
            await lock_as(h, "far.example:1:1:new-holder")  # as after the old lock ran out
        stall.now += executor.lock_ttl.total_seconds() + 1
        return await run
    finally:
        h.emu.control("POST", "/latency", {"ms": 0})


async def test_a_sync_that_wakes_past_its_lock_writes_nothing_to_google(h: Harness) -> None:
    """A process stalled past its lock timeout wakes in the middle of a sync. Its keeper renews
    only every few seconds, so without a check the push would write to Google beside the new
    holder before the keeper noticed. Before every request that changes Google the runner looks
    at its lease: older than half the timeout, it is renewed first; found taken, the sync stops
    and Google is not written."""
    stall = Stall()
    executor = Executor(
        h.db, h.google, lock_ttl=timedelta(seconds=60), heartbeat=30, monotonic=stall
    )
    mark = h.mark()
    result = await stalled_in_its_pull(h, executor, stall, taken=True)
    assert busy(result), result
    writes = [r for r in h.requests_since(mark) if r["method"] != "GET"]
    assert writes == [], writes
    assert [e.summary for e in await h.events()] == []
    async with h.db.session() as s:
        assert await schedule.lock_holder(s, h.binding_id) == "far.example:1:1:new-holder"


async def test_a_sync_that_wakes_with_its_lock_still_free_renews_it_and_writes(
    h: Harness,
) -> None:
    """The same stall with nobody taking the binding over: the stale lease is renewed before
    the write, and the sync goes on and writes the entry once."""
    stall = Stall()
    executor = Executor(
        h.db, h.google, lock_ttl=timedelta(seconds=60), heartbeat=30, monotonic=stall
    )
    result = await stalled_in_its_pull(h, executor, stall, taken=False)
    assert result.ok, result.error
    assert [e.summary for e in await h.events()] == ["Written only by the holder"]
    async with h.db.session() as s:
        assert await schedule.lock_holder(s, h.binding_id) is None


async def test_a_run_whose_lock_was_taken_stores_nothing_over_the_new_holder(h: Harness) -> None:
    """Without a keeper (a sync run directly, or one stalled between its last renewal and its
    end): the run's end finds the lock someone else's and leaves the binding's cursors alone."""

    async def taken(ctx: object) -> None:
        await lock_as(h, "far.example:1:1:new-holder")

    result = await sync_binding(
        h.db, h.binding_id, h.google, trigger="retry", hooks=Hooks(after_pull=taken)
    )
    assert result.run_id is not None
    async with h.db.session() as s:
        binding = await s.get(CalendarBinding, h.binding_id)
        assert binding is not None
        assert binding.sync_token is None and binding.last_sync_at is None
        assert binding.locked_by == "far.example:1:1:new-holder"
