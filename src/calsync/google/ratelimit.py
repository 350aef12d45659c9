"""Keep each Google account under its request budget instead of bouncing off Google's limit.

A token bucket per account: `rate_per_minute` tokens flow in evenly, at most `capacity` are
saved up for a burst (default: one second's worth). Each call reserves its tokens at once and
then sleeps until they exist, so concurrent callers are served in arrival order without a lock
and never exceed the rate together. `clock` and `sleep` are injectable for tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from calsync.settings import Settings


class TokenBucket:
    def __init__(
        self,
        rate_per_minute: float,
        *,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate = rate_per_minute / 60.0  # tokens per second
        self.capacity = capacity if capacity is not None else max(1.0, self.rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()

    def reserve(self, n: float = 1) -> float:
        """Take `n` tokens now (possibly going into debt); return the seconds to wait for them."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self, n: float = 1) -> float:
        """Wait until `n` requests may be sent; returns how long that took."""
        wait = self.reserve(n)
        if wait > 0:
            await self._sleep(wait)
        return wait


class RateLimiter:
    """One bucket per Google account (e-mail), created on first use. Share one per process."""

    def __init__(
        self,
        rate_per_minute: float = 600,
        *,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate_per_minute = rate_per_minute
        self._capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        """None (no limiting) when CALSYNC_GOOGLE_REQUESTS_PER_MINUTE is 0."""
        rpm = settings.google_requests_per_minute
        return cls(rpm) if rpm > 0 else None

    def bucket(self, account: str) -> TokenBucket:
        key = account.lower()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(
                self.rate_per_minute, capacity=self._capacity, clock=self._clock, sleep=self._sleep
            )
            self._buckets[key] = bucket
        return bucket

    async def acquire(self, account: str, n: float = 1) -> float:
        return await self.bucket(account).acquire(n)
