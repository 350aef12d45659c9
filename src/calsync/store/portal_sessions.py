"""Portal sessions: one-time links that sign a CRM user into the pages without a password.
The token is shown once (in the link); the row keeps only its SHA-256. Opening the link
consumes it with one conditional UPDATE, so two requests racing for the same link cannot both
win, and an expired link never signs anyone in."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .models import PortalSession

# expired links are kept this long (then dropped as new ones are made): a late click can still
# be told "expired or already used" rather than "unknown"
KEEP = timedelta(days=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    lifetime: timedelta,
    *,
    return_url: str | None = None,
    return_label: str | None = None,
    now: datetime | None = None,
) -> tuple[str, PortalSession]:
    """A new link's token (256 random bits, URL-safe) and its row."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = PortalSession(
        token_hash=token_hash(token),
        tenant_id=tenant_id,
        user_id=user_id,
        return_url=return_url,
        return_label=return_label,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    await session.execute(
        delete(PortalSession)
        .where(PortalSession.expires_at <= now - KEEP)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return token, row


async def consume(
    session: AsyncSession, token: str, *, now: datetime | None = None
) -> PortalSession | None:
    """The link's row if this call used it up (unused, not expired); None otherwise."""
    now = now or utcnow()
    digest = token_hash(token)
    result = await session.execute(
        update(PortalSession)
        .where(
            PortalSession.token_hash == digest,
            PortalSession.used_at.is_(None),
            PortalSession.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0) or 0) != 1:
        return None
    found: PortalSession | None = await session.scalar(
        select(PortalSession)
        .where(PortalSession.token_hash == digest)
        .execution_options(populate_existing=True)
    )
    return found


async def find(session: AsyncSession, token: str) -> PortalSession | None:
    """The link's row whatever its state (to tell "used or expired" from "unknown")."""
    found: PortalSession | None = await session.scalar(
        select(PortalSession).where(PortalSession.token_hash == token_hash(token))
    )
    return found
