"""The project-wide Google request budget both runners respect.

Google gives a Cloud project a number of requests a minute (10,000 by default) and, since May
2026, a daily billing threshold (about 1,000,000); every process of a deployment spends from the
same project, so the count lives in the database (store/budget.py: requests per UTC minute,
added by every sync run, channel watch and stop — each process writes its own at most once a
second) and each process reads it, cached for a second.

What waits first: safety-net polls stop at `poll_share` (80 %) of the minute's or the day's
budget — the poll tick enqueues only as many as the rest allows, the others stay due and are
polled later (postponed). Webhook, CRM-change, manual and retry syncs carry a change someone is
waiting for: they wait only when the minute's whole budget is spent (until the next minute), and
go on past the day's threshold (Google charges beyond it, it does not refuse).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from calsync.store import budget as stored
from calsync.store.base import utcnow
from calsync.store.db import Database

from .port import Reason

log = logging.getLogger(__name__)

#: what one poll of an idle calendar is assumed to cost: an incremental list, and an access
#: token refresh (tokens live an hour, a daily poll always needs a new one)
POLL_COST = 2
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Limits:
    per_minute: int = 10_000
    per_day: int = 1_000_000
    poll_share: float = 0.8


@dataclass(frozen=True)
class Usage:
    minute: int  # requests in the current UTC minute, every process
    day: int  # requests in the last 24 hours, every process
    at: datetime


class Budget:
    """Reads and adds to the shared count; decides what may send requests now."""

    def __init__(
        self,
        db: Database,
        limits: Limits | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        cache_seconds: float = 1.0,
        flush_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.limits = limits or Limits()
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.flush_seconds = flush_seconds
        self._cached: Usage | None = None
        self._read_at = 0.0
        # requests spent here, not yet added to the shared count, by minute: one write a
        # second per process instead of one per sync run (a crash loses at most a second's)
        self._unsaved: dict[datetime, int] = {}
        self._saved_at = float("-inf")
        self.postponed_polls = 0  # polls left due because of the budget (this process)
        self.delayed_syncs = 0  # other syncs that waited for the next minute (this process)

    async def usage(self) -> Usage:
        now = self.clock()
        cached = self._cached
        fresh = time.monotonic() - self._read_at < self.cache_seconds
        if cached is not None and fresh and stored.minute_of(cached.at) == stored.minute_of(now):
            return cached
        await self.flush()
        async with self.db.session() as s:
            minute = await stored.used(s, now)
            day = await stored.used(s, now - DAY)
            await s.commit()
        self._cached = Usage(minute, day, now)
        self._read_at = time.monotonic()
        return self._cached

    async def spend(self, requests: int) -> None:
        """Count requests just sent (by a sync run, a channel watch or stop)."""
        if requests <= 0:
            return
        now = self.clock()
        minute = stored.minute_of(now)
        self._unsaved[minute] = self._unsaved.get(minute, 0) + requests
        if time.monotonic() - self._saved_at >= self.flush_seconds:
            await self.flush()
        cached = self._cached
        if cached is not None and stored.minute_of(cached.at) == stored.minute_of(now):
            self._cached = Usage(cached.minute + requests, cached.day + requests, cached.at)

    async def flush(self) -> None:
        """Add what this process spent to the shared count (runners call it when stopping)."""
        self._saved_at = time.monotonic()
        if not self._unsaved:
            return
        unsaved, self._unsaved = self._unsaved, {}
        now = self.clock()
        async with self.db.session() as s:
            for minute, requests in sorted(unsaved.items()):
                await stored.record(s, minute, requests)
            if now.minute == 0:  # now and then, drop what no window needs any more
                await stored.prune(s, now)
            await s.commit()

    async def poll_allowance(self, cost: int = POLL_COST) -> int:
        """How many polls may be enqueued now without passing `poll_share` of either budget."""
        used = await self.usage()
        share = self.limits.poll_share
        left = min(
            share * self.limits.per_minute - used.minute, share * self.limits.per_day - used.day
        )
        return max(0, int(left // max(1, cost)))

    async def wait_for(self, reason: Reason) -> float:
        """Seconds a sync for `reason` must wait for the budget (0: go now). A poll past its
        share waits for the next minute too (the runner may drop it: it stays due)."""
        used = await self.usage()
        limit = self.limits.per_minute
        share = self.limits.poll_share
        if reason is Reason.POLL:
            spent = used.minute >= share * limit or used.day >= share * self.limits.per_day
        else:
            spent = used.minute >= limit
        if not spent:
            return 0.0
        if reason is Reason.POLL:
            self.postponed_polls += 1
        else:
            self.delayed_syncs += 1
        now = self.clock()
        return max(1.0, 60.0 - now.second - now.microsecond / 1e6)

    def postponed(self, n: int) -> None:
        self.postponed_polls += n
