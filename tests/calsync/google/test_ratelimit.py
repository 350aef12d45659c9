"""The per-account token bucket, on a fake clock: bursts are held to the configured rate."""

from __future__ import annotations

import asyncio

from calsync.google import calls
from calsync.google.auth import StaticToken
from calsync.google.calendar import CalendarClient
from calsync.google.ratelimit import RateLimiter, TokenBucket
from calsync.google.retry import NO_RETRY
from calsync.settings import Settings
from tests.conftest import Emulator

from .conftest import ControlTokens, FakeTime


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_burst_of_1000_sequential_calls_runs_at_600_per_minute(fake_time: FakeTime) -> None:
    bucket = TokenBucket(600, clock=fake_time.clock, sleep=fake_time.sleep)
    start = fake_time.now
    sent: list[float] = []
    for _ in range(1000):
        await bucket.acquire()
        sent.append(fake_time.now)
    elapsed = fake_time.now - start
    # 10 saved up for the burst, the other 990 at 10/s
    assert elapsed == pytest_approx(99.0)
    assert _max_in_window(sent, 60.0) <= 600 + bucket.capacity
    assert _max_in_window(sent, 1.0) <= 10 + bucket.capacity


async def test_burst_of_1000_concurrent_calls_is_served_in_order_at_the_rate(
    fake_time: FakeTime,
) -> None:
    async def parked(seconds: float) -> None:
        await asyncio.sleep(0)  # let every other caller reserve before time moves on

    limiter = RateLimiter(600, clock=fake_time.clock, sleep=parked)
    start = fake_time.now
    released: list[float] = []

    async def call(i: int) -> None:
        waited = await limiter.acquire("alice@example.com")
        released.append(start + waited)  # every reservation was made at `start`

    await asyncio.gather(*(call(i) for i in range(1000)))
    assert len(released) == 1000
    assert max(released) - start == pytest_approx(99.0)
    assert _max_in_window(released, 60.0) <= 610
    # and nobody was starved: the n-th call waits no longer than n/rate
    assert sorted(released) == released


async def test_each_account_has_its_own_bucket(fake_time: FakeTime) -> None:
    limiter = RateLimiter(60, clock=fake_time.clock, sleep=fake_time.sleep)
    assert await limiter.acquire("a@example.com") == 0
    assert await limiter.acquire("b@example.com") == 0
    assert await limiter.acquire("A@example.com") == pytest_approx(1.0)


async def test_tokens_refill_with_time(fake_time: FakeTime) -> None:
    bucket = TokenBucket(60, capacity=5, clock=fake_time.clock, sleep=fake_time.sleep)
    for _ in range(5):
        assert await bucket.acquire() == 0
    assert bucket.reserve() == pytest_approx(1.0)
    fake_time.now += 60  # the bucket refills, but only up to its capacity
    for _ in range(5):
        assert bucket.reserve() == 0
    assert bucket.reserve() == pytest_approx(1.0)


async def test_batch_costs_one_token_per_call(fake_time: FakeTime) -> None:
    bucket = TokenBucket(600, clock=fake_time.clock, sleep=fake_time.sleep)
    assert await bucket.acquire(50) == pytest_approx(4.0)  # 10 saved, 40 more at 10/s


def test_from_settings() -> None:
    limiter = RateLimiter.from_settings(Settings(google_requests_per_minute=600))
    assert limiter is not None and limiter.rate_per_minute == 600
    assert RateLimiter.from_settings(Settings(google_requests_per_minute=0)) is None


def pytest_approx(value: float) -> object:
    import pytest

    return pytest.approx(value, abs=1e-6)


async def test_client_spends_one_token_per_request_and_per_batch_part(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    limiter = RateLimiter(600, clock=fake_time.clock, sleep=fake_time.sleep)
    async with CalendarClient(
        ControlTokens(emulator, "alice@example.com"),
        settings=settings,
        rate_limiter=limiter,
        retry=NO_RETRY,
    ) as client:
        for _ in range(30):
            await client.get_calendar(alice)
        assert sum(fake_time.sleeps) == pytest_approx(2.0)  # 10 free, 20 more at 10/s
        await client.batch([calls.calendars_get(alice) for _ in range(50)])
        assert sum(fake_time.sleeps) == pytest_approx(7.0)


def test_client_limiter_comes_from_settings(emulator: Emulator) -> None:
    on = CalendarClient(StaticToken("t"), settings=Settings(google_requests_per_minute=120))
    assert on.rate_limiter is not None and on.rate_limiter.rate_per_minute == 120
    off = CalendarClient(StaticToken("t"), settings=Settings(google_requests_per_minute=0))
    assert off.rate_limiter is None
