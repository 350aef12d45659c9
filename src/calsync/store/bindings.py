"""Calendar bindings: which Google calendar of a connection syncs how, and who is syncing it.

The lock is a compare-and-set UPDATE on `locked_by`/`locked_until`: it succeeds for one worker
only, on both databases, and a crashed worker's lock simply runs out.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.direction import Direction

from . import webhook_events
from .base import utcnow
from .models import CalendarBinding, SyncIssue
from .statuses import BindingRole, BindingStage, Code


async def create(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    connection_id: uuid.UUID,
    google_calendar_id: str,
    *,
    role: str = BindingRole.BOTH,
    direction: str = Direction.TWO_WAY,
    summary: str | None = None,
    time_zone: str | None = None,
    access_role: str | None = None,
) -> CalendarBinding:
    binding = CalendarBinding(
        tenant_id=tenant_id,
        connection_id=connection_id,
        google_calendar_id=google_calendar_id,
        role=role,
        direction=direction,
        summary=summary,
        time_zone=time_zone,
        access_role=access_role,
        enabled=True,
        stage=BindingStage.INITIAL,
        failure_count=0,
        push_seq=0,
    )
    session.add(binding)
    await session.flush()
    return binding


async def get(session: AsyncSession, binding_id: uuid.UUID) -> CalendarBinding | None:
    return await session.get(CalendarBinding, binding_id)


async def for_connection(
    session: AsyncSession, connection_id: uuid.UUID
) -> Sequence[CalendarBinding]:
    result = await session.scalars(
        select(CalendarBinding).where(CalendarBinding.connection_id == connection_id)
    )
    return result.all()


async def try_lock(
    session: AsyncSession, binding_id: uuid.UUID, owner: str, ttl: timedelta
) -> bool:
    """Take the binding for `owner` unless someone else holds an unexpired lock."""
    now = utcnow()
    result = await session.execute(
        update(CalendarBinding)
        .where(
            CalendarBinding.id == binding_id,
            or_(
                CalendarBinding.locked_by.is_(None),
                CalendarBinding.locked_until.is_(None),
                CalendarBinding.locked_until < now,
                CalendarBinding.locked_by == owner,
            ),
        )
        .values(locked_by=owner, locked_until=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def take_over(
    session: AsyncSession, binding_id: uuid.UUID, owner: str, dead: str, ttl: timedelta
) -> bool:
    """Take the lock from `dead`, a holder known to be dead (sync.owner.holder_dead)."""
    result = await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id, CalendarBinding.locked_by == dead)
        .values(locked_by=owner, locked_until=utcnow() + ttl)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def _set(session: AsyncSession, binding_id: uuid.UUID, **values: object) -> None:
    """Change columns of one binding (the caller commits)."""
    await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def mark_owed(session: AsyncSession, binding_id: uuid.UUID, at: datetime) -> None:
    await _set(session, binding_id, sync_owed_at=at)


async def extend_lock(
    session: AsyncSession, binding_id: uuid.UUID, owner: str, ttl: timedelta
) -> bool:
    """Keep a long sync's lock alive; False if it expired and someone else took it."""
    result = await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id, CalendarBinding.locked_by == owner)
        .values(locked_until=utcnow() + ttl)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def release(session: AsyncSession, binding_id: uuid.UUID, owner: str) -> None:
    await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id, CalendarBinding.locked_by == owner)
        .values(locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )


async def drop_sync_token(session: AsyncSession, binding_id: uuid.UUID) -> None:
    await _set(session, binding_id, sync_token=None)


async def set_stage(
    session: AsyncSession, binding_id: uuid.UUID, stage: str, reason: str | None
) -> None:
    """Pause or disable a binding with the message users see (or clear it)."""
    await _set(session, binding_id, stage=stage, paused_reason=reason, updated_at=utcnow())


async def pause_for_guard(
    session: AsyncSession, binding_id: uuid.UUID, reason: str, held_back: int
) -> None:
    """The mass-delete guard's pause: why, when, and how many deletions it held back."""
    await _set(
        session,
        binding_id,
        stage=BindingStage.PAUSED,
        paused_reason=reason,
        paused_at=utcnow(),
        guarded_deletions=held_back,
        deletions_confirmed=False,
        updated_at=utcnow(),
    )
    await webhook_events.calendar_paused(session, binding_id, reason=reason, held_back=held_back)


async def resume(
    session: AsyncSession, binding_id: uuid.UUID, *, confirm_deletions: bool = False
) -> CalendarBinding | None:
    """Lift a pause. With `confirm_deletions` the next run applies the deletions the guard held
    back; without, the next run lists Google again (the user restored the entries) and pauses
    again if they are still missing."""
    binding = await get(session, binding_id)
    if binding is None:
        return None
    stage = BindingStage.INCREMENTAL if binding.sync_token else BindingStage.INITIAL
    await _set(
        session,
        binding_id,
        stage=stage,
        paused_reason=None,
        paused_at=None,
        deletions_confirmed=confirm_deletions,
        updated_at=utcnow(),
    )
    # the user acted on the guard's issue; if the entries are still missing, it comes back
    await session.execute(
        update(SyncIssue)
        .where(
            SyncIssue.binding_id == binding_id,
            SyncIssue.code == Code.MASS_DELETE_GUARD,
            SyncIssue.resolved_at.is_(None),
        )
        .values(resolved_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.refresh(binding)
    return binding
