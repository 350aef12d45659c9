"""Backoff with jitter, Retry-After and the attempt/time budget — with an injected sleep."""

from __future__ import annotations

import random

import pytest

from calsync.google import errors
from calsync.google.calendar import CalendarClient
from calsync.google.retry import RetryPolicy
from calsync.settings import Settings
from tests.conftest import Emulator

from .conftest import ControlTokens, FakeTime, log_mark, log_since


def policy(fake_time: FakeTime, **kw: object) -> RetryPolicy:
    p = RetryPolicy(sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(1))
    for k, v in kw.items():
        setattr(p, k, v)
    return p


async def _client(emulator: Emulator, settings: Settings, retry: RetryPolicy) -> CalendarClient:
    return CalendarClient(
        ControlTokens(emulator, "alice@example.com"), settings=settings, retry=retry
    )


async def test_retry_after_is_honoured(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    emulator.control(
        "POST",
        "/faults",
        {
            "path_regex": "calendarList",
            "status": 403,
            "reason": "userRateLimitExceeded",
            "retry_after": 7,
            "count": 2,
        },
    )
    mark = log_mark(emulator)
    async with await _client(emulator, settings, policy(fake_time)) as client:
        assert await client.calendars()
    assert len(fake_time.sleeps) == 2
    assert all(s >= 7 for s in fake_time.sleeps)
    assert [r["status"] for r in log_since(emulator, mark)] == [403, 403, 200]


async def test_5xx_backs_off_with_full_jitter_then_succeeds(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    emulator.control("POST", "/faults", {"path_regex": "calendarList", "status": 503, "count": 3})
    async with await _client(emulator, settings, policy(fake_time)) as client:
        assert await client.calendars()
    assert len(fake_time.sleeps) == 3
    for attempt, wait in enumerate(fake_time.sleeps, start=1):
        assert 0 <= wait <= 2 ** (attempt - 1)


async def test_gives_up_after_max_attempts(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    emulator.control("POST", "/faults", {"path_regex": "calendarList", "status": 500})
    mark = log_mark(emulator)
    async with await _client(emulator, settings, policy(fake_time, max_attempts=4)) as client:
        with pytest.raises(errors.BackendError):
            await client.calendars()
    assert len(fake_time.sleeps) == 3
    assert len(log_since(emulator, mark)) == 4


async def test_gives_up_on_time_without_sleeping_past_the_budget(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    emulator.control(
        "POST",
        "/faults",
        {"path_regex": "calendarList", "status": 429, "retry_after": 50},
    )
    start = fake_time.now
    retry = policy(fake_time, max_attempts=100, max_seconds=120)
    async with await _client(emulator, settings, retry) as client:
        with pytest.raises(errors.RateLimited) as exc:
            await client.calendars()
    assert exc.value.retry_after == 50
    # waits 50 + 50; a third wait would end at 150 s > 120 s, so it stops at 100 s
    assert fake_time.sleeps == [50, 50]
    assert fake_time.now - start == 100


async def test_a_4xx_that_cannot_succeed_is_not_retried(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    for status, reason in [(403, "quotaExceeded"), (404, None), (400, None)]:
        emulator.control("DELETE", "/faults")
        fault: dict[str, object] = {"path_regex": "calendarList", "status": status}
        if reason:
            fault["reason"] = reason
        emulator.control("POST", "/faults", fault)
        mark = log_mark(emulator)
        async with await _client(emulator, settings, policy(fake_time)) as client:
            with pytest.raises(errors.GoogleError):
                await client.calendars()
        assert len(log_since(emulator, mark)) == 1
    assert fake_time.sleeps == []


async def test_backoff_ceiling_and_retry_after() -> None:
    p = RetryPolicy(rng=random.Random(3), base_seconds=1, cap_seconds=8)
    for attempt in range(1, 10):
        assert 0 <= p.backoff(attempt, None) <= min(8, 2 ** (attempt - 1))
    assert p.backoff(1, errors.RateLimited(retry_after=30)) >= 30


async def test_on_retry_hook_and_settings() -> None:
    seen: list[tuple[str, int, float]] = []
    t = FakeTime()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise errors.NetworkError()
        return "ok"

    p = RetryPolicy.from_settings(
        Settings(google_max_attempts=3, google_max_retry_seconds=10),
        sleep=t.sleep,
        clock=t.clock,
        on_retry=lambda e, n, w: seen.append((type(e).__name__, n, w)),
    )
    assert p.max_attempts == 3 and p.max_seconds == 10
    assert await p.call(flaky) == "ok"
    assert [(name, n) for name, n, _ in seen] == [("NetworkError", 1), ("NetworkError", 2)]
