"""The project-wide Google request budget (issue 16), in both runners: counted in the database
for every process, polls postponed first (at their share), webhook and CRM-change syncs held
only when the minute's whole budget is spent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from calsync.jobs import polling
from calsync.jobs.budget import Budget, Limits
from calsync.jobs.polling import PollPolicy
from calsync.jobs.port import Reason
from calsync.store import budget as stored
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.schedule import PollCandidate
from tests.sync.conftest import Harness

from .conftest import add_bindings, runs_of, start_running, wait_until

# every reading of the budget falls in one minute, however long the test runs
MINUTE = utcnow().replace(second=30, microsecond=0)


def fixed() -> datetime:
    return MINUTE


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
