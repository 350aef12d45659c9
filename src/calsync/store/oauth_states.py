"""Pending Google sign-ins: put once, taken once (whoever deletes the row wins), expiring.

Only a SHA-256 of the `state` is stored: someone reading the database cannot finish another
user's sign-in with it. The PKCE verifier is encrypted like every other secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .models import OAuthState


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Pending:
    user_key: str
    code_verifier: str
    redirect_uri: str
    login_hint: str | None
    created_at: datetime
    expires_at: datetime
    browser_hash: str | None = None


async def put(
    session: AsyncSession,
    state: str,
    *,
    user_key: str,
    code_verifier: str,
    redirect_uri: str,
    login_hint: str | None,
    created_at: datetime,
    expires_at: datetime,
    browser_hash: str | None = None,
) -> None:
    """Remember a state; expired ones are swept on the way (there are never many)."""
    await session.execute(delete(OAuthState).where(OAuthState.expires_at < utcnow()))
    session.add(
        OAuthState(
            state_hash=state_hash(state),
            user_key=user_key,
            code_verifier=code_verifier,
            redirect_uri=redirect_uri,
            login_hint=login_hint,
            browser_hash=browser_hash,
            created_at=created_at,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def take(session: AsyncSession, state: str) -> Pending | None:
    """The pending sign-in for `state`, removed; None when unknown, expired or already taken
    (by this or another process: only the one whose DELETE removed the row gets it)."""
    key = state_hash(state)
    row = await session.scalar(select(OAuthState).where(OAuthState.state_hash == key))
    if row is None:
        return None
    pending = Pending(
        user_key=row.user_key,
        code_verifier=row.code_verifier,
        redirect_uri=row.redirect_uri,
        login_hint=row.login_hint,
        created_at=row.created_at,
        expires_at=row.expires_at,
        browser_hash=row.browser_hash,
    )
    result = await session.execute(
        delete(OAuthState)
        .where(OAuthState.state_hash == key)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    if pending.expires_at <= utcnow():
        return None
    return pending
