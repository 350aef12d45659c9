"""Server-side sessions of the pages: the signed cookie carries only a random id; the row says
whose login it is and until when. Logout deletes one row, a password change all of a user's."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .models import WebSession


async def create(
    session: AsyncSession,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    lifetime: timedelta,
    *,
    now: datetime | None = None,
) -> str:
    """A new session for the user; returns its id (256 random bits)."""
    now = now or utcnow()
    sid = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id=sid, user_id=user_id, tenant_id=tenant_id, created_at=now, expires_at=now + lifetime
        )
    )
    # expired sessions are dropped as new ones begin (no separate sweeper)
    await session.execute(
        delete(WebSession)
        .where(WebSession.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return sid


async def alive(
    session: AsyncSession,
    sid: str,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    *,
    now: datetime | None = None,
) -> bool:
    """The session exists, has not expired and belongs to this user of this tenant."""
    found = await session.scalar(select(WebSession).where(WebSession.id == sid))
    return (
        found is not None
        and found.user_id == user_id
        and found.tenant_id == tenant_id
        and found.expires_at > (now or utcnow())
    )


async def end(session: AsyncSession, sid: str) -> None:
    await session.execute(
        delete(WebSession).where(WebSession.id == sid).execution_options(synchronize_session=False)
    )


async def end_all(session: AsyncSession, user_id: uuid.UUID) -> int:
    """End every session of the user (password changed); returns how many there were."""
    result = await session.execute(
        delete(WebSession)
        .where(WebSession.user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
