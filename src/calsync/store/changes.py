"""The change feed: a per-tenant sequence that is monotonic in commit order, without gaps.

A reader that has seen number N must never miss a later commit with a smaller number, so a
number is given out only to a transaction that commits before anyone gets the next one:

- PostgreSQL: a write records its changes under provisional negative numbers (`reserve`,
  no lock, no round trip). At COMMIT a deferred constraint trigger (migration
  0018_feed_order, `change_number`) bumps `tenant.change_seq` and gives each of the
  transaction's changes its number, in the order they were inserted. The tenant's row lock
  is therefore held only while the commit itself runs, inside the server — not for the
  transaction's whole life, during which its process may be busy with other work — so one
  tenant's API writes and syncs no longer run one at a time. A rollback (or a commit that
  fails) takes its numbers back with it. Concurrent edits of one activity are kept apart by
  that activity's row lock (`activities`: SELECT ... FOR UPDATE before the version check).
- SQLite: the database has one writer at a time anyway, so a write takes the next number
  first with an UPDATE of `tenant.change_seq` (which takes the write lock) and holds it until
  commit.

Changes are only read after their commit (`after`, the push's `sync_rows.push_reads`, the API): the provisional
numbers of an open transaction are never seen by anyone else.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate

from .base import table_of
from .models import Activity, ActivityAttendee, Change, Tenant
from .statuses import ChangeKind
from .webhooks import activity_changed, endpoints_enabled, note_endpoints

#: where a session's provisional numbers start (PostgreSQL): far below zero, at random, so two
#: open transactions of one tenant never insert the same (tenant_id, seq) key
_PROVISIONAL_SPAN = 2**62
_PROVISIONAL_KEY = "calsync.change_provisional"


def numbered_at_commit(session: AsyncSession) -> bool:
    """True when this database numbers the feed at commit (PostgreSQL's trigger)."""
    return session.get_bind().dialect.name == "postgresql"


async def next_seq(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """The number for the next change of this write (provisional on PostgreSQL)."""
    return await reserve(session, tenant_id, 1)


async def reserve(session: AsyncSession, tenant_id: uuid.UUID, count: int) -> int:
    """`count` consecutive numbers for this write's next changes; returns the last of them.

    PostgreSQL: provisional negative numbers, ascending within the session, that the commit
    replaces by the feed's (in insertion order); no lock is taken. SQLite: one UPDATE takes the
    tenant's write lock and the range, the transaction's until it commits or rolls back."""
    if count < 1:
        raise ValueError("reserve at least one sequence number")
    if numbered_at_commit(session):
        start = session.info.get(_PROVISIONAL_KEY)
        if start is None:
            start = -_PROVISIONAL_SPAN - secrets.randbelow(_PROVISIONAL_SPAN)
        session.info[_PROVISIONAL_KEY] = start + count
        return int(start + count - 1)
    # a Core statement skips the ORM's autoflush: what the session holds unwritten goes first,
    # in the same order as before
    if session.new or session.dirty or session.deleted:
        await session.flush()
    result = await session.execute(_reserve_statement(), {"tenant_id": tenant_id, "count": count})
    last, enabled = result.one()
    # learnt under the write lock this UPDATE took: the commit reads no endpoints when none
    note_endpoints(session, tenant_id, bool(enabled))
    return int(last)


@functools.cache
def _reserve_statement() -> ReturningUpdate[int, bool]:
    """Built once (SQLite: every write of an activity runs it). UPDATE ... RETURNING (SQLite
    3.35+): the new counter and whether the tenant has an enabled outbound-webhook endpoint,
    in the one round trip that takes the write lock."""
    tenant = table_of(Tenant)  # on the table: a Core UPDATE, not the
    # ORM's bulk-update path (the same SQL; `reserve` flushes first, as the autoflush did)
    tenant_id = bindparam("tenant_id", type_=tenant.c.id.type)
    # the EXISTS names the tenant by the parameter, not by correlation: SQLite's RETURNING
    # renders columns unqualified, and a bare `id` inside the subquery is the endpoint's
    return (
        update(tenant)
        .where(tenant.c.id == tenant_id)
        .values(
            change_seq=tenant.c.change_seq + bindparam("count", type_=tenant.c.change_seq.type),
            updated_at=tenant.c.updated_at,
        )
        .returning(tenant.c.change_seq, endpoints_enabled(tenant_id))
    )


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
