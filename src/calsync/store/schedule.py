"""Queries the job runners need: bindings due for polling, claims, stuck locks, export targets.

Kept apart from store/bindings.py (the engine's repository): these rows are read and written by
schedulers, never by a sync.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.direction import Direction

from .models import CalendarBinding, Change, GoogleConnection, SyncRun, Tenant
from .statuses import BindingRole, BindingStage, ChangeOrigin, Code, ConnectionStatus, RunOutcome


@dataclass(frozen=True)
class PollCandidate:
    """What polling needs to know about one binding to decide whether it is due."""

    binding_id: uuid.UUID
    next_sync_at: datetime | None
    last_sync_at: datetime | None
    failure_count: int
    channel_id: str | None
    channel_expires_at: datetime | None
    tenant_poll_interval: int
    #: a poll found changes the channel did not announce; no notification since (migration 0017)
    channel_suspect: bool = False
    #: Google-side changes a day, decayed over a week, as of `google_rate_at` (migration 0019)
    google_change_rate: float | None = None
    google_rate_at: datetime | None = None
    #: the calendar's second channel (migration 0020): either twin working keeps it healthy
    twin_channel_id: str | None = None
    twin_channel_expires_at: datetime | None = None
    twin_suspect: bool = False


def _live() -> list[ColumnElement[bool]]:
    return [
        CalendarBinding.enabled.is_(True),
        CalendarBinding.stage.not_in((BindingStage.PAUSED, BindingStage.DISABLED)),
        GoogleConnection.status == ConnectionStatus.CONNECTED,
        Tenant.calendar_module_enabled.is_(True),
    ]


async def poll_candidates(
    session: AsyncSession,
    now: datetime,
    *,
    floor: timedelta,
    healthy_floor: timedelta,
    busy: Sequence[tuple[float, timedelta]] = (),
    limit: int = 1000,
) -> Sequence[PollCandidate]:
    """Bindings that may be due: a past `next_sync_at`, never synced, or synced longer ago than
    the shortest interval that could apply (`floor`, `healthy_floor` with a working channel;
    for each `(rate, interval)` of `busy`, `interval` for a binding with at least `rate`
    Google-side changes a day, as last stored). The caller decides exactly (intervals per
    tenant, the decayed rate, jitter)."""
    b = CalendarBinding
    unhealthy = and_(
        or_(
            b.channel_id.is_(None),
            b.channel_expires_at.is_(None),
            b.channel_expires_at <= now,
            b.channel_suspect_since.is_not(None),
        ),
        or_(
            b.twin_channel_id.is_(None),
            b.twin_channel_expires_at.is_(None),
            b.twin_channel_expires_at <= now,
            b.twin_channel_suspect_since.is_not(None),
        ),
    )
    stale = or_(
        CalendarBinding.last_sync_at.is_(None),
        and_(unhealthy, CalendarBinding.last_sync_at <= now - floor),
        CalendarBinding.last_sync_at <= now - healthy_floor,
        *(
            and_(
                CalendarBinding.google_change_rate >= rate,
                CalendarBinding.last_sync_at <= now - every,
            )
            for rate, every in busy
        ),
    )
    rows = await session.execute(
        select(
            CalendarBinding.id,
            CalendarBinding.next_sync_at,
            CalendarBinding.last_sync_at,
            CalendarBinding.failure_count,
            CalendarBinding.channel_id,
            CalendarBinding.channel_expires_at,
            Tenant.poll_interval_seconds,
            CalendarBinding.channel_suspect_since,
            CalendarBinding.google_change_rate,
            CalendarBinding.google_rate_at,
            b.twin_channel_id,
            b.twin_channel_expires_at,
            b.twin_channel_suspect_since,
        )
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .join(Tenant, Tenant.id == CalendarBinding.tenant_id)
        .where(
            *_live(),
            or_(
                CalendarBinding.next_sync_at <= now,
                and_(CalendarBinding.next_sync_at.is_(None), stale),
            ),
        )
        .order_by(CalendarBinding.last_sync_at.asc().nulls_first())
        .limit(limit)
    )
    return [
        PollCandidate(
            binding_id,
            next_sync_at,
            last_sync_at,
            int(failure_count or 0),
            channel_id,
            channel_expires_at,
            int(poll_interval or 300),
            suspect is not None,
            rate,
            rate_at,
            twin_id,
            twin_expires_at,
            twin_suspect is not None,
        )
        for (
            binding_id,
            next_sync_at,
            last_sync_at,
            failure_count,
            channel_id,
            channel_expires_at,
            poll_interval,
            suspect,
            rate,
            rate_at,
            twin_id,
            twin_expires_at,
            twin_suspect,
        ) in rows.all()
    ]


async def claim(
    session: AsyncSession, binding_id: uuid.UUID, seen: datetime | None, until: datetime
) -> bool:
    """Take a due binding for one poller (compare-and-set on `next_sync_at`), so several
    processes polling one database enqueue it once; the run itself resets `next_sync_at`."""
    condition = (
        CalendarBinding.next_sync_at.is_(None)
        if seen is None
        else CalendarBinding.next_sync_at == seen
    )
    result = await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id, condition)
        .values(next_sync_at=until)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def held_locks(session: AsyncSession, limit: int = 500) -> Sequence[tuple[uuid.UUID, str]]:
    """Every held binding lock and its holder (a few per worker: the caller judges them)."""
    rows = await session.execute(
        select(CalendarBinding.id, CalendarBinding.locked_by)
        .where(CalendarBinding.locked_by.is_not(None))
        .limit(limit)
    )
    return [(binding_id, str(holder)) for binding_id, holder in rows.all()]


async def release_expired(
    session: AsyncSession,
    binding_id: uuid.UUID,
    owner: str,
    now: datetime,
    *,
    dead: bool = False,
) -> bool:
    """Free a binding whose lock ran out (still held by the same dead owner), or at once with
    `dead` (its holder is known dead), and close the runs it left open as abandoned. True if
    this call released it."""
    conditions = [CalendarBinding.id == binding_id, CalendarBinding.locked_by == owner]
    if not dead:
        conditions.append(CalendarBinding.locked_until < now)
    result = await session.execute(
        update(CalendarBinding)
        .where(*conditions)
        .values(locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    await abandon_runs(session, binding_id, now)
    return True


async def abandon_runs(
    session: AsyncSession,
    binding_id: uuid.UUID,
    now: datetime,
    since: datetime | None = None,
    before: datetime | None = None,
) -> None:
    """Close a binding's runs still marked running (their worker died or was stopped)."""
    conditions = [SyncRun.binding_id == binding_id, SyncRun.outcome == RunOutcome.RUNNING]
    if since is not None:
        conditions.append(SyncRun.started_at >= since)
    if before is not None:
        conditions.append(SyncRun.started_at < before)
    await session.execute(
        update(SyncRun)
        .where(*conditions)
        .values(
            outcome=RunOutcome.ABANDONED,
            finished_at=now,
            error_code=Code.RUN_ABANDONED,
            error_message="The worker running this sync stopped; another run finished it.",
        )
        .execution_options(synchronize_session=False)
    )


async def hand_back(session: AsyncSession, binding_ids: Sequence[uuid.UUID], now: datetime) -> None:
    """Make bindings due now for whichever process polls next (a stopping runner's queue)."""
    if not binding_ids:
        return
    await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id.in_(list(binding_ids)), CalendarBinding.next_sync_at.is_(None))
        .values(next_sync_at=now)
        .execution_options(synchronize_session=False)
    )


async def export_bindings(
    session: AsyncSession, tenant_id: uuid.UUID, owner_id: uuid.UUID
) -> Sequence[uuid.UUID]:
    """The bindings a CRM change of this owner is pushed to (the export calendar)."""
    rows = await session.scalars(
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .where(
            CalendarBinding.tenant_id == tenant_id,
            GoogleConnection.user_id == owner_id,
            CalendarBinding.role.in_((BindingRole.EXPORT, BindingRole.BOTH)),
            CalendarBinding.enabled.is_(True),
            CalendarBinding.stage.not_in((BindingStage.PAUSED, BindingStage.DISABLED)),
            GoogleConnection.status == ConnectionStatus.CONNECTED,
        )
    )
    return list(rows.all())


async def lock_holder(session: AsyncSession, binding_id: uuid.UUID) -> str | None:
    return await session.scalar(
        select(CalendarBinding.locked_by).where(CalendarBinding.id == binding_id)
    )


def _free_and_not_backing_off(now: datetime) -> list[ColumnElement[bool]]:
    return [
        CalendarBinding.locked_by.is_(None),  # a holder's run covers it (or its lock is freed)
        or_(
            CalendarBinding.failure_count == 0,
            CalendarBinding.next_sync_at.is_(None),
            CalendarBinding.next_sync_at <= now,
        ),
    ]


async def owed_syncs(
    session: AsyncSession, now: datetime, *, before: datetime, limit: int = 1000
) -> Sequence[uuid.UUID]:
    """Live bindings a webhook marked owed (before `before`) and no run has covered yet."""
    rows = await session.scalars(
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .join(Tenant, Tenant.id == CalendarBinding.tenant_id)
        .where(
            *_live(),
            CalendarBinding.sync_owed_at.is_not(None),
            CalendarBinding.sync_owed_at <= before,
            *_free_and_not_backing_off(now),
        )
        .limit(limit)
    )
    return list(rows.all())


async def behind_feed(
    session: AsyncSession, now: datetime, *, before: datetime, limit: int = 1000
) -> Sequence[uuid.UUID]:
    """Live export bindings whose push cursor is behind a CRM change of their owner made before
    `before` (its debounced push was lost, e.g. the process died)."""
    pending = (
        select(Change.seq)
        .where(
            Change.tenant_id == CalendarBinding.tenant_id,
            Change.seq > CalendarBinding.push_seq,
            Change.owner_id == GoogleConnection.user_id,
            Change.origin != ChangeOrigin.SYNC,
            Change.created_at <= before,
        )
        .exists()
    )
    rows = await session.scalars(
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .join(Tenant, Tenant.id == CalendarBinding.tenant_id)
        .where(
            *_live(),
            CalendarBinding.role.in_((BindingRole.EXPORT, BindingRole.BOTH)),
            CalendarBinding.direction != Direction.GOOGLE_TO_CRM,
            *_free_and_not_backing_off(now),
            pending,
        )
        .limit(limit)
    )
    return list(rows.all())


# -- a channel judged by evidence -------------------------------------------------------------


@dataclass(frozen=True)
class ChannelEvidence:
    """What a binding's push channel has shown before a sync (read by the sync's start, under
    its lock): whether it has one, and whether a notification owed this sync (a poll with
    changes and no notification is evidence the channel stopped delivering)."""

    channel_id: str | None
    twin_channel_id: str | None  # the second channel (issue 16's twins), or the only one
    notified: bool  # a notification owed a sync (sync_owed_at) when the run started
    incremental: bool  # the run lists changes since a sync token (a full list finds all)

    @property
    def watched(self) -> bool:
        """The calendar had a channel (either twin) that should have announced a change."""
        return self.channel_id is not None or self.twin_channel_id is not None


async def mark_suspect(
    session: AsyncSession, binding_id: uuid.UUID, evidence: ChannelEvidence, at: datetime
) -> bool:
    """The calendar's channels missed a change: each one the run found, and still the
    binding's, is not trusted (tenant-interval polls) until a notification arrives
    (store.channels' `owed` clears it) — both twins, since a change no notification announced
    was missed by both, and the twin alone when it is the only channel (the first one's watch
    failed). False when neither is the binding's any more (new channels by now)."""
    b = CalendarBinding
    found = [
        (column, suspect, channel_id)
        for column, suspect, channel_id in (
            (b.channel_id, b.channel_suspect_since, evidence.channel_id),
            (b.twin_channel_id, b.twin_channel_suspect_since, evidence.twin_channel_id),
        )
        if channel_id is not None
    ]
    if not found:
        return False
    result = await session.execute(
        update(b)
        .where(b.id == binding_id, or_(*(column == cid for column, _, cid in found)))
        .values(
            {suspect: case((column == cid, at), else_=suspect) for column, suspect, cid in found}
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def suspect_channels(session: AsyncSession) -> int:
    """Bindings with a channel (either twin) that missed a change or an echo and has not
    notified since (/metrics)."""
    found = await session.scalar(
        select(func.count())
        .select_from(CalendarBinding)
        .where(
            or_(
                CalendarBinding.channel_suspect_since.is_not(None),
                CalendarBinding.twin_channel_suspect_since.is_not(None),
            )
        )
    )
    return int(found or 0)
