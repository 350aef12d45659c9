"""What the doctor's checks ask the database beyond a user's own connection, bindings, runs and
issues (those come from connections, bindings and google_settings): counts over the last day,
and other users' connections and calendars that collide with this one's."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CalendarBinding, EventLink, GoogleConnection, SyncIssue, SyncRun
from .statuses import BindingRole, ConnectionStatus, LinkState


async def count_errors_since(
    session: AsyncSession,
    binding_ids: Collection[uuid.UUID],
    since: datetime,
    codes: Collection[str],
) -> int:
    """Runs that ended with, plus issues last seen with, one of `codes` since `since`."""
    if not binding_ids:
        return 0
    ids, wanted = list(binding_ids), list(codes)
    runs = await session.scalar(
        select(func.count())
        .select_from(SyncRun)
        .where(
            SyncRun.binding_id.in_(ids), SyncRun.started_at >= since, SyncRun.error_code.in_(wanted)
        )
    )
    issues = await session.scalar(
        select(func.count())
        .select_from(SyncIssue)
        .where(
            SyncIssue.binding_id.in_(ids),
            SyncIssue.last_seen_at >= since,
            SyncIssue.code.in_(wanted),
        )
    )
    return int(runs or 0) + int(issues or 0)


async def count_parked(session: AsyncSession, binding_ids: Collection[uuid.UUID]) -> int:
    """Links parked (an entry that could not sync) in these calendars."""
    if not binding_ids:
        return 0
    found = await session.scalar(
        select(func.count())
        .select_from(EventLink)
        .where(EventLink.binding_id.in_(list(binding_ids)), EventLink.state == LinkState.PARKED)
    )
    return int(found or 0)


async def same_account_elsewhere(
    session: AsyncSession, tenant_id: uuid.UUID, google_email: str, besides: uuid.UUID
) -> Sequence[GoogleConnection]:
    """The tenant's other live connections to the same Google account (entries would be
    duplicated: one Google account syncs with one CRM user)."""
    result = await session.scalars(
        select(GoogleConnection).where(
            GoogleConnection.tenant_id == tenant_id,
            GoogleConnection.google_email == google_email,
            GoogleConnection.id != besides,
            GoogleConnection.status != ConnectionStatus.REVOKED,
        )
    )
    return result.all()


async def imported_elsewhere(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    calendar_ids: Collection[str],
    besides: uuid.UUID,
) -> Sequence[CalendarBinding]:
    """Enabled bindings of the tenant's other connections (`besides` this one) that import one
    of these Google calendars."""
    if not calendar_ids:
        return []
    result = await session.scalars(
        select(CalendarBinding).where(
            CalendarBinding.tenant_id == tenant_id,
            CalendarBinding.google_calendar_id.in_(list(calendar_ids)),
            CalendarBinding.connection_id != besides,
            CalendarBinding.role.in_((BindingRole.IMPORT, BindingRole.BOTH)),
            CalendarBinding.enabled.is_(True),
        )
    )
    return result.all()
