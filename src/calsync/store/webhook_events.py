"""The non-activity outbound webhook events, each built from the rows it reports and emitted
in the writer's transaction (`webhooks.emit`). The one writer of each state calls these:
`connections.mark_needs_reauth`, `connections.reconnect`, `bindings.pause_for_guard`,
`runs.report_issue`."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CalendarBinding, GoogleConnection, SyncIssue
from .webhooks import (
    CALENDAR_PAUSED,
    CONNECTION_NEEDS_REAUTH,
    CONNECTION_RECONNECTED,
    SYNC_ISSUE,
    emit,
)


def _connection(conn: GoogleConnection) -> dict[str, object]:
    return {
        "connection_id": str(conn.id),
        "user_id": str(conn.user_id),
        "google_email": conn.google_email,
    }


async def needs_reauth(
    session: AsyncSession, connection_id: uuid.UUID, *, code: str, message: str
) -> None:
    """Only when the status turns to needs_reauth (not each time a sync meets it again)."""
    conn = await session.get(GoogleConnection, connection_id)
    if conn is None or conn.status == "needs_reauth":
        return
    emit(
        session,
        conn.tenant_id,
        CONNECTION_NEEDS_REAUTH,
        {**_connection(conn), "code": code, "message": message},
    )


def reconnected(
    session: AsyncSession, conn: GoogleConnection, *, previous_status: str, account_changed: bool
) -> None:
    emit(
        session,
        conn.tenant_id,
        CONNECTION_RECONNECTED,
        {
            **_connection(conn),
            "previous_status": previous_status,
            "account_changed": account_changed,
        },
    )


async def calendar_paused(
    session: AsyncSession, binding_id: uuid.UUID, *, reason: str, held_back: int
) -> None:
    row = (
        await session.execute(
            select(CalendarBinding, GoogleConnection)
            .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
            .where(CalendarBinding.id == binding_id)
        )
    ).first()
    if row is None:
        return
    binding, conn = row
    emit(
        session,
        binding.tenant_id,
        CALENDAR_PAUSED,
        {
            **_connection(conn),
            "binding_id": str(binding.id),
            "google_calendar_id": binding.google_calendar_id,
            "calendar_summary": binding.summary,
            "reason": reason,
            "held_back_deletions": held_back,
        },
    )


async def sync_issue(session: AsyncSession, issue: SyncIssue) -> None:
    """A new open issue (a repeat of an open one only counts occurrences: no message)."""
    binding = await session.get(CalendarBinding, issue.binding_id)
    conn = await session.get(GoogleConnection, binding.connection_id) if binding else None
    emit(
        session,
        issue.tenant_id,
        SYNC_ISSUE,
        {
            **(_connection(conn) if conn is not None else {}),
            "binding_id": str(issue.binding_id),
            "google_calendar_id": binding.google_calendar_id if binding else None,
            "code": issue.code,
            "message": issue.message,
            "remedy": issue.remedy,
            "activity_id": str(issue.activity_id) if issue.activity_id else None,
            "google_event_id": issue.google_event_id,
        },
    )
