"""calsync's clock: the wall clock plus an offset, 0 in production.

A simulation (bench/budget.py, tests of a simulated day) moves calsync's time together with the
emulator's instead of waiting: every timestamp calsync stores or compares comes from
`store.base.utcnow` and every token expiry is judged by `now` here, so one offset moves both.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

_offset_seconds = 0.0


def now() -> float:
    """Seconds since the epoch (time.time, moved by a simulation's offset)."""
    return time.time() + _offset_seconds


def utcnow() -> datetime:
    moved = datetime.now(UTC)
    if _offset_seconds:
        return datetime.fromtimestamp(moved.timestamp() + _offset_seconds, UTC)
    return moved


def advance(seconds: float) -> None:
    """Move calsync's clock forward (simulations only; move the emulator's clock alike)."""
    global _offset_seconds
    if seconds < 0:
        raise ValueError("the clock only moves forward")
    _offset_seconds += seconds


def reset() -> None:
    global _offset_seconds
    _offset_seconds = 0.0
