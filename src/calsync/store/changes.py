"""The change feed: a per-tenant sequence that is monotonic in commit order.

Every writing transaction first bumps `tenant.change_seq` with an UPDATE. The row lock that
UPDATE takes is held until commit, so the tenant's writers queue up on it: whoever gets number
N commits (or rolls back, releasing N) before anyone gets N+1. A reader that has seen N can
therefore never miss a later commit with a smaller number, and there are no gaps.
(On SQLite the database-wide write lock gives the same order.)
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import NOT_FROM_SYNC, Activity, ActivityAttendee, Change, Tenant
from .statuses import ChangeKind
from .webhooks import activity_changed


async def next_seq(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Take the tenant's write lock and the next sequence number (call first in a write)."""
    return await reserve(session, tenant_id, 1)


async def reserve(session: AsyncSession, tenant_id: uuid.UUID, count: int) -> int:
    """Take the tenant's write lock and `count` consecutive numbers; returns the last of them.

    One UPDATE for a whole batch keeps the feed's order-and-no-gaps guarantee: the range is the
    transaction's until it commits, or released as a whole if it rolls back."""
    if count < 1:
        raise ValueError("reserve at least one sequence number")
    result = await session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(change_seq=Tenant.change_seq + count, updated_at=Tenant.updated_at)
        .returning(Tenant.change_seq)
        .execution_options(synchronize_session=False)
    )
    return int(result.scalar_one())


def record(session: AsyncSession, seq: int, activity: Activity, kind: str, origin: str) -> Change:
    change = Change(
        tenant_id=activity.tenant_id,
        seq=seq,
        activity_id=activity.id,
        owner_id=activity.owner_id,
        kind=kind,
        version=activity.version,
        origin=origin,
    )
    session.add(change)
    activity_changed(session, activity, kind, origin)  # the outbox, in this transaction
    return change


async def after(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    seq: int,
    limit: int,
    *,
    user_id: uuid.UUID | None = None,
    user_email: str | None = None,
) -> Sequence[Change]:
    """Changes after `seq` in order; for a user, only activities it owns or attends."""
    query = select(Change).where(Change.tenant_id == tenant_id, Change.seq > seq)
    if user_id is not None:
        attends = select(ActivityAttendee.activity_id).where(
            ActivityAttendee.tenant_id == tenant_id, ActivityAttendee.email == (user_email or "")
        )
        query = query.where(or_(Change.owner_id == user_id, and_(Change.activity_id.in_(attends))))
    result = await session.scalars(query.order_by(Change.seq).limit(limit))
    return result.all()


async def pushable(
    session: AsyncSession, tenant_id: uuid.UUID, owner_id: uuid.UUID, after: int, upto: int
) -> Sequence[tuple[uuid.UUID, int]]:
    """(activity, seq) of the owner's changes in (after, upto] the push writes to Google (not
    the sync's own), in order. Read through the partial index
    ix_change_tenant_id_owner_id_seq_pushable (its condition word for word, the value inline):
    the owner's new changes only, not the tenant's nor the imports'."""
    rows = await session.execute(
        select(Change.activity_id, Change.seq)
        .where(
            Change.tenant_id == tenant_id,
            Change.owner_id == owner_id,
            NOT_FROM_SYNC,
            Change.seq > after,
            Change.seq <= upto,
        )
        .order_by(Change.seq)
    )
    return [(activity_id, seq) for activity_id, seq in rows.all()]


async def last_seq(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    value = await session.scalar(select(Tenant.change_seq).where(Tenant.id == tenant_id))
    return int(value or 0)


async def creation_origins(
    session: AsyncSession, activity_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Who made each of these activities (the `created` change's origin: api / sync / cli),
    so the calendar page can tell entries imported from Google from those made in the CRM."""
    if not activity_ids:
        return {}
    rows = await session.execute(
        select(Change.activity_id, Change.origin).where(
            Change.activity_id.in_(list(activity_ids)), Change.kind == ChangeKind.CREATED
        )
    )
    return {activity_id: origin for activity_id, origin in rows.all()}
