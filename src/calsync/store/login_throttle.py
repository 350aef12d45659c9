"""Throttling page logins: failures are rows (kind account/address, key, time), so every web
process sees the same counts.

An attempt is recorded *before* its password is checked and removed again when it succeeds: a
burst of parallel guesses therefore counts in full, not only the ones that finished first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .models import LoginFailure


class Kind(StrEnum):
    """login_failure.kind: what a failure is counted against."""

    ACCOUNT = "account"  # the e-mail tried (guessing one user's password)
    ADDRESS = "address"  # the client address (trying many accounts)


KEY_LENGTH = 320


@dataclass(frozen=True)
class Limits:
    per_account: int
    per_address: int
    window: timedelta


@dataclass(frozen=True)
class Attempt:
    """An attempt recorded as failed until `succeeded` removes it."""

    ids: tuple[uuid.UUID, ...]


async def _count(
    session: AsyncSession, kind: str, key: str, since: datetime
) -> tuple[int, datetime | None]:
    row = (
        await session.execute(
            select(func.count(), func.min(LoginFailure.at)).where(
                LoginFailure.kind == kind, LoginFailure.key == key, LoginFailure.at > since
            )
        )
    ).one()
    return int(row[0]), row[1]


async def begin(
    session: AsyncSession,
    account: str,
    address: str,
    limits: Limits,
    *,
    now: datetime | None = None,
) -> Attempt | int:
    """Record an attempt and return it; or, when the account or the address has used up its
    failures in the window, record nothing and return the seconds until it may try again.
    The caller commits."""
    now = now or utcnow()
    since = now - limits.window
    account, address = account[:KEY_LENGTH], address[:KEY_LENGTH]
    wait = await _wait(session, account, address, limits, now, allowed=0)
    if wait is not None:
        return wait
    rows = [LoginFailure(kind=Kind.ACCOUNT, key=account, at=now)]
    rows.append(LoginFailure(kind=Kind.ADDRESS, key=address, at=now))
    session.add_all(rows)
    # failures older than the window count for nothing: drop them as new ones arrive
    await session.execute(
        delete(LoginFailure)
        .where(LoginFailure.at <= since)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return Attempt(tuple(r.id for r in rows))


async def over_limit(
    session: AsyncSession,
    attempt: Attempt,
    account: str,
    address: str,
    limits: Limits,
    *,
    now: datetime | None = None,
) -> int | None:
    """After `begin` committed: if parallel attempts took the account or the address past its
    limit, withdraw this one and return the seconds to wait (the caller commits)."""
    now = now or utcnow()
    account, address = account[:KEY_LENGTH], address[:KEY_LENGTH]
    # this attempt is among the rows counted: one more than the limit is over it
    wait = await _wait(session, account, address, limits, now, allowed=1)
    if wait is not None:
        await _remove(session, attempt.ids)
    return wait


async def _wait(
    session: AsyncSession,
    account: str,
    address: str,
    limits: Limits,
    now: datetime,
    *,
    allowed: int,
) -> int | None:
    """Whole seconds until the account and the address are both below their limits (counting
    `allowed` more rows than the limit as still below), or None when they are now."""
    since = now - limits.window
    wait = 0.0
    for kind, key, limit in (
        (Kind.ACCOUNT, account, limits.per_account),
        (Kind.ADDRESS, address, limits.per_address),
    ):
        count, oldest = await _count(session, kind, key, since)
        if count >= limit + allowed and oldest is not None:
            wait = max(wait, (oldest + limits.window - now).total_seconds())
    return max(1, int(wait + 0.999)) if wait > 0 else None


async def succeeded(session: AsyncSession, attempt: Attempt, account: str) -> None:
    """The password was right: the attempt was no failure, and the account starts afresh."""
    await _remove(session, attempt.ids)
    await session.execute(
        delete(LoginFailure)
        .where(and_(LoginFailure.kind == Kind.ACCOUNT, LoginFailure.key == account[:KEY_LENGTH]))
        .execution_options(synchronize_session=False)
    )


async def _remove(session: AsyncSession, ids: tuple[uuid.UUID, ...]) -> None:
    await session.execute(
        delete(LoginFailure)
        .where(LoginFailure.id.in_(ids))
        .execution_options(synchronize_session=False)
    )
