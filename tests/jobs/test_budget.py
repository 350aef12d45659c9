"""The project-wide Google request budget (issue 16), in both runners: counted in the database
for every process, polls postponed first (at their share), webhook and CRM-change syncs held
only when the minute's whole budget is spent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain import rates
from calsync.jobs import polling
from calsync.jobs.budget import Budget, Limits
from calsync.jobs.polling import PollPolicy
from calsync.jobs.port import Reason
from calsync.store import budget as stored
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.models import CalendarBinding
from calsync.store.schedule import PollCandidate
from calsync.sync.context import Hooks
from tests.sql_events import statements
from tests.sync.conftest import Harness, at

from .conftest import add_bindings, runs_of, start_running, wait_until

# every reading of the budget falls in one minute, however long the test runs
MINUTE = utcnow().replace(second=30, microsecond=0)


def fixed() -> datetime:
    return MINUTE


async def change_rate(
    session: AsyncSession, binding_id: uuid.UUID
) -> tuple[float | None, datetime | None, datetime | None]:
    """The binding's stored Google-side change rate, when it was stored, and since when the
    binding exists."""
    row = (
        await session.execute(
            select(
                CalendarBinding.google_change_rate,
                CalendarBinding.google_rate_at,
                CalendarBinding.created_at,
            ).where(CalendarBinding.id == binding_id)
        )
    ).one()
    return row[0], row[1], row[2]


async def test_every_process_counts_into_one_budget(db: Database) -> None:
    """Two runners' budgets (two processes) read what the other spent: the count is stored."""
    one = Budget(db, clock=fixed, cache_seconds=0)
    other = Budget(db, clock=fixed, cache_seconds=0)
    await one.spend(7)
    await other.spend(5)
    assert (await one.usage()).minute == 12 and (await other.usage()).day == 12
    async with db.session() as s:  # a minute later the minute's count starts afresh
        assert await stored.used(s, MINUTE + timedelta(minutes=1)) == 0
        assert await stored.used(s, MINUTE - timedelta(hours=23)) == 12
        await s.commit()


async def test_polls_stop_at_their_share_and_webhooks_go_on(
    h: Harness, db: Database, make_runner: Any
) -> None:
    others = await add_bindings(h, 3, event=False)
    budget = Budget(db, Limits(per_minute=100, per_day=10_000, poll_share=0.5), clock=fixed)
    runner = await make_runner(budget=budget, clock=fixed)
    await start_running(runner)
    await budget.spend(49)  # one poll (2 requests) would pass half the minute's budget
    await runner.poll_once()  # every binding is due (never synced), none is enqueued
    await runner.enqueue_sync(h.binding_id, Reason.WEBHOOK)

    async def webhook_synced() -> bool:
        return any(r.finished_at is not None for r in await runs_of(db, [h.binding_id]))

    await wait_until(webhook_synced)
    assert budget.postponed_polls >= 1
    assert await runs_of(db, others) == []  # postponed, still due
    assert set(others) <= set(await polling.due_bindings(db, PollPolicy(), utcnow()))


async def test_a_spent_minute_holds_webhook_syncs_too(
    h: Harness, db: Database, make_runner: Any
) -> None:
    budget = Budget(db, Limits(per_minute=20, per_day=10_000, poll_share=0.5), clock=fixed)
    runner = await make_runner(budget=budget, clock=fixed)
    await budget.spend(20)
    await start_running(runner)
    await runner.enqueue_sync(h.binding_id, Reason.WEBHOOK)
    await runner.enqueue_sync(h.binding_id, Reason.CHANGE)

    async def held() -> bool:
        return budget.delayed_syncs >= 1

    await wait_until(held)
    assert await runs_of(db, [h.binding_id]) == []  # it waits for the next minute


def test_healthy_channel_polled_at_most_once_a_day() -> None:
    """The daily poll's jitter only ever makes it later; a tenant-interval poll's earlier."""
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    policy = PollPolicy()
    for _ in range(200):
        healthy = PollCandidate(
            uuid.uuid4(), None, now, 0, "ch", now + timedelta(days=6), 300, False
        )
        due = polling.due_at(healthy, policy, now)
        assert due is not None and timedelta(days=1) <= due - now <= timedelta(hours=26.4)
        suspect = PollCandidate(
            uuid.uuid4(), None, now, 0, "ch", now + timedelta(days=6), 300, True
        )
        assert polling.interval(suspect, policy, now) == timedelta(minutes=5)


# -- the echo of calsync's own writes, and a busy calendar's silence (issue 16) ---------------


async def _watched(db: Database, binding_id: uuid.UUID, **values: Any) -> None:
    """Give the binding a (made-up) live channel, and the columns given."""
    async with db.session() as s:
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == binding_id)
            .values(
                channel_id=f"{binding_id.hex}-echo",
                channel_resource_id="res",
                channel_expires_at=utcnow() + timedelta(days=6),
                **values,
            )
        )
        await s.commit()


async def test_a_channel_silent_after_our_write_is_rewatched_and_synced_at_once(
    h: Harness, db: Database, make_runner: Any
) -> None:
    """Both runners' poll tick: a write the channel has not announced within the grace makes
    the channel suspect, re-creates it and syncs the calendar now — once, in whichever
    process gets there first; an echo that was heard leaves the channel alone."""
    await h.sync(trigger="initial")
    heard = (await add_bindings(h, 1, event=False))[0]
    await h.sync(trigger="initial")
    written = utcnow() - timedelta(minutes=3)
    await _watched(db, h.binding_id, channel_echo_since=written, last_sync_at=utcnow())
    await _watched(
        db,
        heard,
        channel_echo_since=written,
        channel_heard_at=written + timedelta(seconds=1),
        last_sync_at=utcnow(),
    )
    rewatched: list[uuid.UUID] = []

    async def rewatch(binding_id: uuid.UUID) -> bool:
        rewatched.append(binding_id)
        return True

    runner = await make_runner(
        rewatch=rewatch, poll_policy=PollPolicy(echo_grace=timedelta(minutes=2))
    )
    await start_running(runner)
    await runner.poll_once()

    async def caught_up() -> bool:
        runs = await runs_of(db, [h.binding_id])
        return any(r.trigger == "retry" and r.finished_at is not None for r in runs)

    await wait_until(caught_up)
    assert rewatched == [h.binding_id]
    async with db.session() as s:
        mine = await s.get(CalendarBinding, h.binding_id)
        other = await s.get(CalendarBinding, heard)
        assert mine is not None and other is not None
        assert mine.channel_suspect_since is not None and mine.channel_echo_since is None
        assert other.channel_suspect_since is None
        await s.commit()
    await runner.poll_once()  # settled: a second tick does not act again
    assert rewatched == [h.binding_id]
    assert [r.trigger for r in await runs_of(db, [heard])].count("retry") == 0


async def test_runs_count_a_calendars_google_side_changes(
    h: Harness, db: Database, make_runner: Any
) -> None:
    """A run that applies Google-side changes adds them to the binding's rate; the first sync's
    import does not (it is the calendar's past, not its traffic)."""
    runner = await make_runner()
    await start_running(runner)
    await h.ginsert("Before", at(2, 9))
    await runner.enqueue_sync(h.binding_id, Reason.INITIAL)

    async def ran(n: int) -> Any:
        async def check() -> bool:
            runs = await runs_of(db, [h.binding_id])
            return len([r for r in runs if r.finished_at is not None]) >= n

        return check

    await wait_until(await ran(1))
    async with db.session() as s:
        assert (await change_rate(s, h.binding_id))[0] is None
        await s.commit()
    await h.ginsert("Made in Google", at(3, 9))
    await runner.enqueue_sync(h.binding_id, Reason.WEBHOOK)
    await wait_until(await ran(2))

    async def counted() -> bool:  # written with the run's end
        async with db.session() as s:
            return (await change_rate(s, h.binding_id))[0] is not None

    await wait_until(counted)
    async with db.session() as s:
        rate, rate_at, _ = await change_rate(s, h.binding_id)
        await s.commit()
    assert rate is not None and rate_at is not None
    # one change on the binding's first day reads one a day (not a seventh: a week's memory
    # counts only the time the binding has been watched)
    assert rate == pytest.approx(1.0, rel=0.1)


async def test_the_rate_is_stored_by_the_runs_end_under_its_lock(h: Harness, db: Database) -> None:
    """The run's Google-side changes go into the rate in the UPDATE that ends the run and
    releases the lock (no transaction of its own after it: a crash between the two cannot
    lose the count), fenced like the rest of the end: a run that lost its lock stores none."""
    event = await h.ginsert("Made in Google", at(3, 9))
    assert (await h.sync()).ok  # the first sync: no clock, nothing counted
    async with db.session() as s:
        assert (await change_rate(s, h.binding_id))[0] is None
    when = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert event.id is not None
    await h.gpatch(event.id, {"summary": "Moved in Google"})
    with statements(db) as sent:
        result = await h.sync(rate_clock=lambda: when)
    assert result.ok and result.counts["updated"] == 1
    async with db.session() as s:
        rate, rate_at, since = await change_rate(s, h.binding_id)
    assert rate == pytest.approx(rates.added(None, None, 1, when, since))
    assert rate_at is not None and rate_at.replace(tzinfo=UTC) == when
    # the last statement of the run ends it: the rate, the release and the rest in one UPDATE
    assert "google_change_rate" in sent[-1] and "locked_by" in sent[-1], sent[-1]
    assert sum(q.startswith("UPDATE") and "google_change_rate" in q for q in sent) == 1

    async def steal() -> None:  # another worker takes the binding over during the run
        async with db.session() as s:
            await s.execute(
                update(CalendarBinding)
                .where(CalendarBinding.id == h.binding_id)
                .values(locked_by="someone-else")
            )
            await s.commit()

    await h.gpatch(event.id, {"summary": "Moved again"})
    later = when + timedelta(hours=1)
    fenced = await h.sync(rate_clock=lambda: later, hooks=Hooks(before_release=steal))
    assert fenced.counts["updated"] == 1
    async with db.session() as s:
        assert (await change_rate(s, h.binding_id))[0] == pytest.approx(rate)


def test_a_busy_calendars_healthy_channel_is_trusted_for_a_shorter_silence() -> None:
    """Silence is polled after about `silence_changes` (2) changes' worth of it: hourly at 48
    changes a day or more, every 2 h at 24, …, 16 h at 3; idle and quiet calendars daily."""
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    policy = PollPolicy()

    def candidate(rate: float | None, at: datetime = now, suspect: bool = False) -> PollCandidate:
        return PollCandidate(
            uuid.uuid4(), None, now, 0, "ch", now + timedelta(days=6), 300, suspect, rate, at
        )

    hours = {
        None: 24,
        0.5: 24,
        3.0: 16,
        6.0: 8,
        12.0: 4,
        30.0: 2,
        48.0: 1,
        500.0: 1,
    }
    for rate, expected in hours.items():
        assert polling.interval(candidate(rate), policy, now) == timedelta(hours=expected), rate
    # three weeks without a change: 30 a day has decayed to 30/e³ ≈ 1.5, back to daily
    assert polling.interval(candidate(30.0, now - timedelta(days=21)), policy, now) == timedelta(
        days=1
    )
    # a suspect channel polls at the tenant's interval whatever the rate
    assert polling.interval(candidate(30.0, suspect=True), policy, now) == timedelta(minutes=5)
    # switched off: every healthy channel daily
    off = PollPolicy(silence_changes=0)
    assert polling.interval(candidate(500.0), off, now) == timedelta(days=1)


def test_the_rate_reads_changes_a_day() -> None:
    """Ten Google-side changes every day read about ten a day; a run's relisting counts at most
    five."""
    now = datetime(2026, 12, 3, tzinfo=UTC)
    rate: float | None = None
    at: datetime | None = None
    for day in range(60):
        when = now + timedelta(days=day)
        for _ in range(10):
            rate, at = rates.added(rate, at, 1, when), when
    assert 9 <= rates.decayed(rate, at, now + timedelta(days=59, hours=12)) <= 11
    # from the first day of a binding's life on (not after a week of warming up)
    rate, at = None, None
    for day in range(3):
        when = now + timedelta(days=day, hours=23)
        for _ in range(10):
            rate, at = rates.added(rate, at, 1, when, since=now), when
        assert 9 <= rates.decayed(rate, at, when) <= 11, (day, rate)
    assert rates.added(None, None, 10_000, now) == pytest.approx(5 / 7)


async def test_a_busy_binding_is_due_after_its_shorter_silence(h: Harness, db: Database) -> None:
    """The poll query finds a busy binding whose healthy channel has been silent for its
    interval (3 h at 30 changes a day), not an idle one synced as long ago."""
    idle = (await add_bindings(h, 1, event=False))[0]
    now = utcnow()
    three_hours_ago = now - timedelta(hours=3)
    await _watched(
        db, h.binding_id, last_sync_at=three_hours_ago, google_change_rate=30.0, google_rate_at=now
    )
    await _watched(db, idle, last_sync_at=three_hours_ago)
    due = await polling.due_bindings(db, PollPolicy(jitter=0.0), now)
    assert h.binding_id in due and idle not in due
