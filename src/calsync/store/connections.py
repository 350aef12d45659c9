"""Google connections: a user's link to a Google account, its encrypted tokens and health."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from . import webhook_events
from .base import utcnow
from .models import CalendarBinding, EventLink, GoogleConnection
from .statuses import AuthMode, ConnectionStatus


async def get(session: AsyncSession, connection_id: uuid.UUID) -> GoogleConnection | None:
    return await session.get(GoogleConnection, connection_id)


async def for_user(session: AsyncSession, user_id: uuid.UUID) -> GoogleConnection | None:
    return await session.scalar(select(GoogleConnection).where(GoogleConnection.user_id == user_id))


async def create(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    google_email: str,
    auth_mode: str = AuthMode.OAUTH,
    refresh_token: str | None = None,
    access_token: str | None = None,
    access_token_expires_at: datetime | None = None,
    scopes: Sequence[str] = (),
) -> GoogleConnection:
    conn = GoogleConnection(
        tenant_id=tenant_id,
        user_id=user_id,
        google_email=google_email.strip().lower(),
        auth_mode=auth_mode,
        refresh_token=refresh_token,
        access_token=access_token,
        access_token_expires_at=access_token_expires_at,
        scopes=list(scopes),
        status=ConnectionStatus.CONNECTED,
        connected_at=utcnow(),
        linked_at=utcnow(),
    )
    session.add(conn)
    await session.flush()
    return conn


async def grant_in_use(
    session: AsyncSession, google_email: str, *, besides: uuid.UUID | None = None
) -> bool:
    """Does any connection (of any tenant) sign in to this Google account with calsync's OAuth
    client (`besides` one)? Revoking a token at Google ends the whole grant, so a refused
    sign-in's token, or a replaced account's, is revoked only when no connection relies on it."""
    query = select(GoogleConnection.id).where(
        GoogleConnection.google_email == google_email.strip().lower(),
        GoogleConnection.auth_mode == AuthMode.OAUTH,
        GoogleConnection.refresh_token.is_not(None),
    )
    if besides is not None:
        query = query.where(GoogleConnection.id != besides)
    found = await session.scalar(query.limit(1))
    return found is not None


async def store_access_token(
    session: AsyncSession,
    connection_id: uuid.UUID,
    access_token: str,
    expires_at: float | None,
    refresh_token: str | None = None,
) -> None:
    """Persist a refreshed access token (encrypted by the column type)."""
    values: dict[str, object] = {
        "access_token": access_token,
        "access_token_expires_at": (
            datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None
        ),
        "updated_at": utcnow(),
    }
    if refresh_token:
        values["refresh_token"] = refresh_token
    await session.execute(
        update(GoogleConnection).where(GoogleConnection.id == connection_id).values(**values)
    )


async def mark_needs_reauth(
    session: AsyncSession, connection_id: uuid.UUID, *, code: str, message: str
) -> None:
    """Google refused the connection's grant: the user must reconnect. The one writer of this
    status (the engine, the push channels, the connection page and the doctor all land here),
    so every place that reads it sees the same error fields, set together."""
    await webhook_events.needs_reauth(session, connection_id, code=code, message=message)
    await session.execute(
        update(GoogleConnection)
        .where(GoogleConnection.id == connection_id)
        .values(
            status=ConnectionStatus.NEEDS_REAUTH,
            last_error_code=code,
            last_error_message=message,
            last_error_at=utcnow(),
            updated_at=utcnow(),
        )
    )


async def reconnect(
    session: AsyncSession,
    connection: GoogleConnection,
    *,
    google_email: str,
    refresh_token: str | None,
    access_token: str | None,
    access_token_expires_at: datetime | None,
    scopes: Sequence[str] = (),
) -> bool:
    """Store new credentials; returns True when the Google account changed, in which case the
    connection's bindings and links were reset (a clean first sync, DESIGN rule 10). The same
    account keeps links and sync state, so nothing is duplicated."""
    email = google_email.strip().lower()
    changed = connection.google_email is not None and connection.google_email != email
    previous_status = connection.status
    if changed:
        await reset_bindings(session, connection.id)
    if changed or connection.linked_at is None:
        connection.linked_at = utcnow()
    connection.google_email = email
    connection.refresh_token = refresh_token or connection.refresh_token
    connection.access_token = access_token
    connection.access_token_expires_at = access_token_expires_at
    if scopes:
        connection.scopes = list(scopes)
    connection.status = ConnectionStatus.CONNECTED
    connection.last_error_code = None
    connection.last_error_message = None
    connection.connected_at = utcnow()
    await session.flush()
    if previous_status != ConnectionStatus.CONNECTED or changed:
        webhook_events.reconnected(
            session, connection, previous_status=previous_status, account_changed=changed
        )
    return changed


async def reset_bindings(session: AsyncSession, connection_id: uuid.UUID) -> None:
    """Remove the connection's bindings with their links, runs and issues: they name the old
    account's calendars. The user chooses calendars again and the first sync matches existing
    entries instead of duplicating them; CRM activities are untouched."""
    ids = select(CalendarBinding.id).where(CalendarBinding.connection_id == connection_id)
    await session.execute(delete(EventLink).where(EventLink.binding_id.in_(ids)))
    await session.execute(
        delete(CalendarBinding).where(CalendarBinding.connection_id == connection_id)
    )
