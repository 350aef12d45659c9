"""Polling: the interval adapts to the push channel, per-binding jitter, backoff floor, claims."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from calsync.jobs import polling
from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.polling import PollPolicy
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.models import CalendarBinding, Tenant
from calsync.store.schedule import PollCandidate
from tests.sync.conftest import Harness

from .conftest import add_bindings

NOW = utcnow()
POLICY = PollPolicy()


def candidate(**kw: object) -> PollCandidate:
    values: dict[str, object] = {
        "binding_id": uuid.uuid4(),
        "next_sync_at": None,
        "last_sync_at": NOW,
        "failure_count": 0,
        "channel_id": None,
        "channel_expires_at": None,
        "tenant_poll_interval": 300,
    }
    values.update(kw)
    return PollCandidate(**values)  # type: ignore[arg-type]


def test_interval_follows_the_channel_and_the_tenant() -> None:
    healthy = candidate(channel_id="c", channel_expires_at=NOW + timedelta(days=1))
    expired = candidate(channel_id="c", channel_expires_at=NOW - timedelta(seconds=1))
    assert polling.interval(healthy, POLICY, NOW) == timedelta(hours=24)  # issue 16: daily
    assert polling.interval(expired, POLICY, NOW) == timedelta(minutes=5)
    assert polling.interval(candidate(tenant_poll_interval=5), POLICY, NOW) == timedelta(seconds=30)
    failing = candidate(failure_count=4)  # the engine's backoff is the floor
    assert polling.interval(failing, POLICY, NOW) == timedelta(minutes=8)


def test_jitter_spreads_bindings_inside_the_window() -> None:
    dues = [polling.due_at(candidate(), POLICY, NOW) for _ in range(200)]
    offsets = [(d - NOW).total_seconds() for d in dues if d is not None]
    assert all(270 <= o <= 300 for o in offsets)
    assert len({round(o) for o in offsets}) > 20  # no stampede: spread over the window
    one = candidate()
    assert polling.due_at(one, POLICY, NOW) == polling.due_at(one, POLICY, NOW)  # stable


async def test_due_bindings_with_an_injected_clock(h: Harness, db: Database) -> None:
    quiet, watched = await add_bindings(h, 2, event=False)
    async with db.session() as s:
        await s.execute(
            update(Tenant).where(Tenant.id == h.tenant_id).values(poll_interval_seconds=60)
        )
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.tenant_id == h.tenant_id)
            .values(last_sync_at=NOW, next_sync_at=None)
        )
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == watched)
            .values(channel_id="ch", channel_expires_at=NOW + timedelta(days=7))
        )
        await s.commit()
    assert await polling.due_bindings(db, POLICY, NOW + timedelta(seconds=50)) == []
    due = set(await polling.due_bindings(db, POLICY, NOW + timedelta(seconds=61)))
    assert due == {h.binding_id, quiet}  # the watched one waits for its day
    # claimed: a second poller at the same moment gets nothing
    assert await polling.due_bindings(db, POLICY, NOW + timedelta(seconds=62)) == []
    later = NOW + timedelta(hours=24 * 1.1, seconds=1)  # a day, and its jitter (later)
    assert watched in set(await polling.due_bindings(db, POLICY, later))


async def test_every_configured_runner_renews_push_channels(db: Database) -> None:
    """The web process and `calsync worker` build runners with the same factory, so channel
    renewal runs wherever periodic work runs (with procrastinate: in the workers)."""
    from calsync.jobs.factory import make_job_queue
    from calsync.settings import Settings
    from calsync.sync.tokens import GoogleAccess

    settings = Settings(database_url=db.url)
    queue = make_job_queue(settings, db, GoogleAccess(settings))
    assert isinstance(queue, InProcessRunner)
    assert "renew_channels" in queue.periodic_names()
