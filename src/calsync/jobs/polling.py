"""Which bindings are due for a safety-net poll, and when.

Google's per-project budget is the ceiling at scale, so the interval adapts: a binding whose push
channel is healthy is polled every `healthy_interval` (default 24 h: at most once a day), one
without a working channel at its tenant's `poll_interval_seconds` (default 300, never under 30).
A channel is judged by evidence, not by its expiry: one a poll caught missing a change
(`channel_suspect`, jobs/execute.py) counts as not working until a notification arrives on it.
Each binding is due at a fixed, binding-specific fraction of the interval off (jitter) — later
for the daily poll (so never more than once a day), earlier for the tenant's interval — so
bindings synced together drift apart instead of stampeding. After failures the engine's backoff
is the lower bound.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from calsync.store import schedule
from calsync.store.db import Database
from calsync.store.schedule import PollCandidate
from calsync.sync.errors import backoff_delay

from .budget import Budget

MIN_POLL_SECONDS = 30
DEFAULT_POLL_SECONDS = 300


@dataclass(frozen=True)
class PollPolicy:
    healthy_interval: timedelta = timedelta(hours=24)
    jitter: float = 0.1  # fraction of the interval a binding's due time is moved
    # how long a claimed binding stays off the poll list if its sync never reports back
    claim_hold: timedelta = timedelta(minutes=15)

    @property
    def floor(self) -> timedelta:
        return timedelta(seconds=MIN_POLL_SECONDS) * (1 - self.jitter)


def spread(binding_id: uuid.UUID) -> float:
    """A stable number in [0, 1) per binding: its place inside the jitter window."""
    digest = hashlib.sha256(binding_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def channel_healthy(channel_id: str | None, expires_at: datetime | None, now: datetime) -> bool:
    return bool(channel_id) and expires_at is not None and expires_at > now


def healthy(candidate: PollCandidate, now: datetime) -> bool:
    """The channel is live and no poll has caught it missing a change since it last notified."""
    return not candidate.channel_suspect and channel_healthy(
        candidate.channel_id, candidate.channel_expires_at, now
    )


def interval(candidate: PollCandidate, policy: PollPolicy, now: datetime) -> timedelta:
    """The poll interval that applies to this binding now (before jitter)."""
    if healthy(candidate, now):
        base = policy.healthy_interval
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
