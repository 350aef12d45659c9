"""Read models for operators: the counts /metrics reads at scrape time (so every web process
and worker reports the same numbers) and the admin page's overview of each user's connection.
Counted in SQL, so a read costs a few small queries however many rows there are."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import budget, channels, schedule
from .models import CalendarBinding, GoogleConnection, SyncIssue, SyncRun

CHANNEL_STATES = ("active", "expiring", "expired")
RUNS_CHUNK = 500  # binding ids per IN (...) list


async def syncs_by_outcome(session: AsyncSession) -> dict[str, int]:
    """Sync runs recorded, by outcome."""
    rows = await session.execute(select(SyncRun.outcome, func.count()).group_by(SyncRun.outcome))
    return {str(outcome): int(n) for outcome, n in rows.all()}


async def bindings_by_state(session: AsyncSession, now: datetime) -> dict[str, int]:
    """Bindings counted by stage, and those switched off (`off`)."""
    counts: dict[str, int] = {}
    rows = await session.execute(
        select(CalendarBinding.stage, CalendarBinding.enabled, func.count()).group_by(
            CalendarBinding.stage, CalendarBinding.enabled
        )
    )
    for stage, enabled, n in rows.all():
        key = stage if enabled else "off"
        counts[key] = counts.get(key, 0) + int(n)
    return counts


async def channels_by_state(
    session: AsyncSession, now: datetime, soon: datetime
) -> dict[tuple[str, str], int]:
    """(kind, state) → count, kind `events` (a binding's) or `calendar_list` (a connection's),
    state active, expiring (expires before `soon`: renewal due) or expired; one query a kind."""
    counts = {(holder.kind, state): 0 for holder in channels.HOLDERS for state in CHANNEL_STATES}
    for holder in channels.HOLDERS:
        expires = holder.expires_at
        state = case(
            (or_(expires.is_(None), expires <= now), "expired"),
            (expires < soon, "expiring"),
            else_="active",
        )
        rows = await session.execute(
            select(state, func.count()).where(holder.channel_id.is_not(None)).group_by(state)
        )
        for name, n in rows.all():
            counts[(holder.kind, str(name))] = int(n)
    return counts


async def enabled_bindings(session: AsyncSession) -> int:
    found = await session.scalar(
        select(func.count()).select_from(CalendarBinding).where(CalendarBinding.enabled.is_(True))
    )
    return int(found or 0)


async def google_requests_by_trigger(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Google requests of the sync runs started since `since`, by what triggered the run (each
    run stores its own count)."""
    rows = await session.execute(
        select(SyncRun.trigger, func.coalesce(func.sum(SyncRun.google_requests), 0))
        .where(SyncRun.started_at >= since)
        .group_by(SyncRun.trigger)
    )
    return {str(trigger): int(n) for trigger, n in rows.all()}


@dataclass(frozen=True)
class BudgetUse:
    """Google requests of every process in the current UTC minute and the last 24 hours, and
    the push channels a poll caught silent (not trusted until they notify again)."""

    minute: int
    day: int
    suspect_channels: int


async def budget_use(session: AsyncSession, now: datetime) -> BudgetUse:
    return BudgetUse(
        minute=await budget.used(session, now),
        day=await budget.used(session, now - timedelta(days=1)),
        suspect_channels=await schedule.suspect_channels(session),
    )


async def finished_runs(
    session: AsyncSession, binding_ids: Sequence[uuid.UUID], since: datetime
) -> list[tuple[uuid.UUID, datetime, datetime]]:
    """(binding, started, finished) of the bindings' runs started since `since` that finished."""
    out: list[tuple[uuid.UUID, datetime, datetime]] = []
    for i in range(0, len(binding_ids), RUNS_CHUNK):
        rows = await session.execute(
            select(SyncRun.binding_id, SyncRun.started_at, SyncRun.finished_at).where(
                SyncRun.binding_id.in_(binding_ids[i : i + RUNS_CHUNK]),
                SyncRun.finished_at.is_not(None),
                SyncRun.started_at >= since,
            )
        )
        out.extend((b, started, finished) for b, started, finished in rows.all() if finished)
    return out


@dataclass(frozen=True)
class ConnectionOverview:
    """The company's connections at a glance (Admin → Integrations): each user's connection,
    and per connection its last sync and its open issues."""

    by_user: dict[uuid.UUID, GoogleConnection]
    last_sync: dict[uuid.UUID, datetime | None]
    open_issues: dict[uuid.UUID, int]


async def connection_overview(session: AsyncSession, tenant_id: uuid.UUID) -> ConnectionOverview:
    conns = await session.scalars(
        select(GoogleConnection).where(GoogleConnection.tenant_id == tenant_id)
    )
    last_sync = await session.execute(
        select(CalendarBinding.connection_id, func.max(CalendarBinding.last_sync_at))
        .where(CalendarBinding.tenant_id == tenant_id)
        .group_by(CalendarBinding.connection_id)
    )
    issues = await session.execute(
        select(CalendarBinding.connection_id, func.count(SyncIssue.id))
        .join(SyncIssue, SyncIssue.binding_id == CalendarBinding.id)
        .where(CalendarBinding.tenant_id == tenant_id, SyncIssue.resolved_at.is_(None))
        .group_by(CalendarBinding.connection_id)
    )
    return ConnectionOverview(
        by_user={c.user_id: c for c in conns.all()},
        last_sync={conn_id: when for conn_id, when in last_sync.all()},
        open_issues={conn_id: int(n) for conn_id, n in issues.all()},
    )
