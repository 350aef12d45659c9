"""Which bindings are due for a safety-net poll, and when.

Google's per-project budget is the ceiling at scale, so the interval adapts: a binding whose push
channel is healthy is polled every `healthy_interval` (default 24 h: at most once a day), one
without a working channel at its tenant's `poll_interval_seconds` (default 300, never under 30).
A channel is judged by evidence, not by its expiry: one a poll caught missing a change
(`channel_suspect`, jobs/execute.py) counts as not working until a notification arrives on it.
A healthy channel on a busy calendar is trusted less long: a calendar with `r` Google-side
changes a day (decayed over a week, counted by the runs that applied them) would, with a
working channel, have announced about `silence_changes` (2) changes after `silence_changes / r`
days, so a silence that long is polled — at the first of 1, 2, 4, 8 or 16 hours that covers it,
never more often than hourly. Notifications keep such a calendar's `last_sync_at` fresh, so a
healthy busy calendar is rarely polled (in its quiet hours, at most `r / silence_changes` times
a day: half a request per change it already costs), and a broken one is caught within those
hours instead of a day. An idle calendar stays at the daily poll. And a channel that missed the
echo of calsync's own write (sync/channels/echo.py) is suspect after `echo_grace`: re-created,
synced at once (`missed_echoes`, run by each runner's poll tick).

Each binding is due at a fixed, binding-specific fraction of the interval off (jitter) — later
for the daily poll (so never more than once a day), earlier for the tenant's interval — so
bindings synced together drift apart instead of stampeding. After failures the engine's backoff
is the lower bound.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from calsync.domain.rates import decayed
from calsync.google.calendar import count_requests
from calsync.store import schedule
from calsync.store.db import Database
from calsync.store.schedule import PollCandidate
from calsync.sync.channels import echo
from calsync.sync.channels.kinds import trusted
from calsync.sync.errors import backoff_delay

from .budget import Budget

MIN_POLL_SECONDS = 30
DEFAULT_POLL_SECONDS = 300
#: the shorter intervals a busy calendar's healthy channel is polled at (hours)
BUSY_HOURS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class PollPolicy:
    healthy_interval: timedelta = timedelta(hours=24)
    jitter: float = 0.1  # fraction of the interval a binding's due time is moved
    # how long a claimed binding stays off the poll list if its sync never reports back
    claim_hold: timedelta = timedelta(minutes=15)
    #: how many changes a working channel would have announced in a silence that is polled
    #: (0: every healthy channel polled at `healthy_interval`, whatever its calendar's traffic)
    silence_changes: float = 2.0
    #: how long after a write of calsync's its channel may take to announce it
    echo_grace: timedelta = echo.GRACE

    def busy_tiers(self) -> list[tuple[float, timedelta]]:
        """(changes a day at least, interval) for each busy interval, shortest first."""
        if self.silence_changes <= 0:
            return []
        day = timedelta(days=1)
        tiers = [timedelta(hours=h) for h in BUSY_HOURS]
        return [(self.silence_changes * (day / t), t) for t in tiers if t < self.healthy_interval]

    @property
    def floor(self) -> timedelta:
        return timedelta(seconds=MIN_POLL_SECONDS) * (1 - self.jitter)


def spread(binding_id: uuid.UUID) -> float:
    """A stable number in [0, 1) per binding: its place inside the jitter window."""
    digest = hashlib.sha256(binding_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def healthy(candidate: PollCandidate, now: datetime) -> bool:
    """A channel (either twin) is live and has not been caught missing a change or an echo
    since it last notified."""
    return trusted(
        now,
        (candidate.channel_id, candidate.channel_expires_at, candidate.channel_suspect),
        (candidate.twin_channel_id, candidate.twin_channel_expires_at, candidate.twin_suspect),
    )


def healthy_interval(candidate: PollCandidate, policy: PollPolicy, now: datetime) -> timedelta:
    """How long a healthy channel's silence is trusted on this calendar: shorter the busier."""
    rate = decayed(candidate.google_change_rate, candidate.google_rate_at, now)
    for at_least, every in policy.busy_tiers():
        if rate >= at_least:
            return every
    return policy.healthy_interval


def interval(candidate: PollCandidate, policy: PollPolicy, now: datetime) -> timedelta:
    """The poll interval that applies to this binding now (before jitter)."""
    if healthy(candidate, now):
        base = healthy_interval(candidate, policy, now)
    else:
        seconds = candidate.tenant_poll_interval or DEFAULT_POLL_SECONDS
        base = timedelta(seconds=max(MIN_POLL_SECONDS, seconds))
    if candidate.failure_count > 0:
        base = max(base, backoff_delay(candidate.failure_count - 1))
    return base


def due_at(candidate: PollCandidate, policy: PollPolicy, now: datetime) -> datetime | None:
    """When this binding is next due; None means now (never synced)."""
    if candidate.next_sync_at is not None:
        return candidate.next_sync_at  # an explicit schedule: backoff, a claim, a hand-back
    if candidate.last_sync_at is None:
        return None
    every = interval(candidate, policy, now)
    shift = every * (policy.jitter * spread(candidate.binding_id))
    if healthy(candidate, now) and candidate.failure_count == 0:
        return candidate.last_sync_at + every + shift  # at most once per healthy interval
    return candidate.last_sync_at + every - shift


def is_due(candidate: PollCandidate, policy: PollPolicy, now: datetime) -> bool:
    at = due_at(candidate, policy, now)
    return at is None or at <= now


async def allowance(budget: Budget | None, cap: int = 1000) -> int:
    """How many polls one tick may enqueue: what the request budget leaves for polls."""
    if budget is None:
        return cap
    allowed = await budget.poll_allowance()
    if allowed < cap:
        budget.postponed(1)  # a pass the budget cut short (or skipped)
    return min(cap, allowed)


async def due_bindings(
    db: Database, policy: PollPolicy, now: datetime, *, limit: int = 1000
) -> Sequence[uuid.UUID]:
    """The bindings due at `now` (at most `limit`: what the request budget allows), each
    claimed for this caller so that several processes polling one database enqueue it once;
    those left over stay due for a later pass (postponed)."""
    if limit <= 0:
        return []
    async with db.session() as s:
        found = await schedule.poll_candidates(
            s,
            now,
            floor=policy.floor,
            healthy_floor=policy.healthy_interval * (1 - policy.jitter),
            busy=policy.busy_tiers(),
            limit=max(limit, 1000),
        )
        await s.commit()
    picked: list[uuid.UUID] = []
    for candidate in found:
        if len(picked) >= limit:
            break
        if not is_due(candidate, policy, now):
            continue
        async with db.session() as s:
            ok = await schedule.claim(
                s, candidate.binding_id, candidate.next_sync_at, now + policy.claim_hold
            )
            await s.commit()
        if ok:
            picked.append(candidate.binding_id)
    return picked


async def missed_echoes(
    db: Database,
    policy: PollPolicy,
    now: datetime,
    *,
    rewatch: Callable[[uuid.UUID], Awaitable[object]] | None = None,
    budget: Budget | None = None,
) -> list[uuid.UUID]:
    """Bindings whose channel missed the echo of calsync's write (marked suspect, channel
    re-created — its requests counted in the budget): the runner syncs them now."""
    with count_requests() as sent:
        missed = await echo.check(db, now, grace=policy.echo_grace, rewatch=rewatch)
    if budget is not None:
        await budget.spend(sent.n)
    return missed
