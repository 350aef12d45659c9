"""What the connection API changes and reads about a user's Google sync: calendar choices,
switching sync on and off, disconnecting, and the runs and issues of all of a user's calendars.
(The engine's own bookkeeping lives in connections, bindings, links and runs.)"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .models import CalendarBinding, GoogleConnection, SyncIssue, SyncRun
from .statuses import AuthMode, BindingRole, ConnectionStatus


async def configure_binding(
    session: AsyncSession,
    binding: CalendarBinding,
    *,
    role: str,
    direction: str,
    enabled: bool,
    summary: str | None = None,
    access_role: str | None = None,
    time_zone: str | None = None,
) -> None:
    """Change what a binding does; its links and sync token stay (nothing is relinked)."""
    binding.role = role
    binding.direction = direction
    binding.enabled = enabled
    if summary is not None:
        binding.summary = summary
    if access_role is not None:
        binding.access_role = access_role
    if time_zone is not None and binding.time_zone is None:
        binding.time_zone = time_zone
    binding.updated_at = utcnow()
    await session.flush()


async def unselect_binding(session: AsyncSession, binding: CalendarBinding) -> None:
    """A calendar the user unticked: it stops syncing, but keeps its links and runs — its
    entries stay in the CRM as the user's history (never deleted, never copied elsewhere), and
    ticking it again relinks them. Its open issues no longer apply."""
    binding.role = BindingRole.UNSELECTED
    binding.enabled = False
    binding.updated_at = utcnow()
    await session.execute(
        update(SyncIssue)
        .where(SyncIssue.binding_id == binding.id, SyncIssue.resolved_at.is_(None))
        .values(resolved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.flush()


async def set_enabled(session: AsyncSession, connection: GoogleConnection, enabled: bool) -> None:
    """Sync on or off for all of the connection's chosen calendars (the engine skips disabled
    ones; unticked calendars stay off)."""
    connection.sync_enabled = enabled
    connection.updated_at = utcnow()
    await session.execute(
        update(CalendarBinding)
        .where(
            CalendarBinding.connection_id == connection.id,
            CalendarBinding.role != BindingRole.UNSELECTED,
        )
        .values(enabled=enabled, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.flush()


async def clear_channel(session: AsyncSession, binding_id: uuid.UUID) -> None:
    await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id)
        .values(
            channel_id=None,
            channel_resource_id=None,
            channel_token=None,
            channel_expires_at=None,
            twin_channel_id=None,
            twin_channel_resource_id=None,
            twin_channel_token=None,
            twin_channel_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )


async def disconnect(session: AsyncSession, connection: GoogleConnection) -> None:
    """Forget the tokens; bindings and links stay so reconnecting the same account relinks."""
    connection.refresh_token = None
    connection.access_token = None
    connection.access_token_expires_at = None
    connection.status = ConnectionStatus.REVOKED
    connection.last_error_code = None
    connection.last_error_message = None
    connection.last_error_at = None
    connection.updated_at = utcnow()
    await session.flush()


async def switch_to_service_account(
    session: AsyncSession, connection: GoogleConnection, email: str
) -> None:
    """The company's service account acts as the user: no user tokens are kept."""
    connection.auth_mode = AuthMode.SERVICE_ACCOUNT
    if connection.google_email != email.strip().lower() or connection.linked_at is None:
        connection.linked_at = utcnow()
    connection.google_email = email.strip().lower()
    connection.refresh_token = None
    connection.access_token = None
    connection.access_token_expires_at = None
    connection.status = ConnectionStatus.CONNECTED
    connection.last_error_code = None
    connection.last_error_message = None
    connection.last_error_at = None
    connection.connected_at = utcnow()
    await session.flush()


async def recent_runs(
    session: AsyncSession, binding_ids: Collection[uuid.UUID], limit: int = 50
) -> Sequence[SyncRun]:
    if not binding_ids:
        return []
    result = await session.scalars(
        select(SyncRun)
        .where(SyncRun.binding_id.in_(list(binding_ids)))
        .order_by(SyncRun.started_at.desc())
        .limit(limit)
    )
    return result.all()


async def open_issues(
    session: AsyncSession, binding_ids: Collection[uuid.UUID], limit: int = 500
) -> Sequence[SyncIssue]:
    if not binding_ids:
        return []
    result = await session.scalars(
        select(SyncIssue)
        .where(SyncIssue.binding_id.in_(list(binding_ids)), SyncIssue.resolved_at.is_(None))
        .order_by(SyncIssue.last_seen_at.desc())
        .limit(limit)
    )
    return result.all()
