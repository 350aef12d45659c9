"""When to try a Google call again: exponential backoff with full jitter, honouring Retry-After.

Only errors whose class says `retryable` (rate limits, 5xx, timeouts, connection errors) are
retried; a 4xx that cannot succeed is raised at once. Retries stop after `max_attempts` or when
the next wait would end past `max_seconds` since the first try, whichever comes first — then the
last error is raised as it is. `sleep`, `clock` and `rng` are injectable so tests never wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from calsync.settings import Settings

from .errors import GoogleError

T = TypeVar("T")
log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, GoogleError) and exc.retryable


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    max_seconds: float = 120.0
    base_seconds: float = 1.0  # first backoff ceiling; doubles per attempt
    cap_seconds: float = 64.0  # Google's guide: cap exponential backoff at 32-64 s
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    #: called before each wait with (error, attempt that failed, seconds to wait)
    on_retry: Callable[[BaseException, int, float], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> RetryPolicy:
        policy = cls(
            max_attempts=settings.google_max_attempts,
            max_seconds=settings.google_max_retry_seconds,
        )
        for name, value in overrides.items():
            setattr(policy, name, value)
        return policy

    def backoff(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): full jitter, or longer if
        Google said so in Retry-After."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        wait = self.rng.uniform(0, ceiling)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, float(retry_after))
        return wait

    def gives_up(self, attempt: int, started: float, upcoming_wait: float) -> bool:
        """True when another try is not allowed: attempts used up or the wait would overrun."""
        if attempt >= self.max_attempts:
            return True
        return (self.clock() - started) + upcoming_wait > self.max_seconds

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` until it succeeds, raises something not retryable, or the budget is spent."""
        started = self.clock()
        # the first attempt is awaited directly: nearly every call succeeds at once, and
        # tenacity's machinery (its retrying object and per-attempt actions) cost about 0.1 ms
        # of CPU a call, a Google request's share of a webhook-triggered sync that sends one;
        # a retryable failure goes on in tenacity from the second attempt, as before
        try:
            return await fn()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            first = exc
        pause = self.backoff(1, first)
        if self.gives_up(1, started, pause):
            raise first
        self._before_sleep(first, 1, pause)
        await self.sleep(pause)

        # tenacity counts its attempts from 1: attempt n there is attempt n + 1 of the call
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.backoff(state.attempt_number + 1, exc)

        def stop(state: RetryCallState) -> bool:
            return self.gives_up(state.attempt_number + 1, started, state.upcoming_sleep)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                self._before_sleep(exc, state.attempt_number + 1, state.upcoming_sleep)

        retrying = AsyncRetrying(
            sleep=self.sleep,
            stop=stop,
            wait=wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )

        async def attempt() -> T:  # tenacity only awaits what looks like a coroutine function
            return await fn()

        return await retrying(attempt)

    def _before_sleep(self, exc: BaseException, attempt: int, wait: float) -> None:
        log.info("google call failed, retrying", extra={"attempt": attempt, "wait": wait})
        if self.on_retry is not None:
            self.on_retry(exc, attempt, wait)


NO_RETRY = RetryPolicy(max_attempts=1)
