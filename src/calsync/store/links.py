"""Event links (activity ↔ Google event per binding) and the activity queries the engine needs.

A link is `pending` from just before calsync inserts the event until Google confirmed it,
`linked` after, `parked` when it waits for a person (an ambiguous match, an event Google refuses),
`moving` while the export calendar's sync moves the event out of this calendar (the CRM's entries
follow a changed export calendar): this binding's sync leaves a moving link alone; `detached`
when neither side is written any more (see sync.transitions).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from . import changes
from .base import chunked, unindexed, utcnow
from .models import OWED_WRITE, Activity, CalendarBinding, EventLink
from .sqlite_driver import ON_LOOP_IDS, reads_on_loop
from .statuses import ActivitySource, BindingRole, ChangeKind, ChangeOrigin, LinkState


async def by_event(
    session: AsyncSession, binding_id: uuid.UUID, google_event_id: str
) -> EventLink | None:
    return await session.scalar(
        _by_event_statement(), {"binding_id": binding_id, "google_event_id": google_event_id}
    )


@functools.cache
def _by_event_statement() -> Select[EventLink]:
    """Built once (every changed event a pull applies reads its link): a reused statement
    keeps its cache key, so it is neither built nor keyed again."""
    return select(EventLink).where(
        EventLink.binding_id == bindparam("binding_id"),
        EventLink.google_event_id == bindparam("google_event_id"),
    )


async def with_activities(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    google_event_ids: Collection[str],
) -> dict[str, tuple[EventLink, Activity | None]]:
    """The links these events have in the binding, each with its activity (the tenant's; None
    when the link names none) and the activity's attendees: what reconciling a listed event
    reads, in one statement (a chunk of ids each), not three per event."""
    out: dict[str, tuple[EventLink, Activity | None]] = {}
    for chunk in chunked(google_event_ids):
        with reads_on_loop(len(chunk) <= ON_LOOP_IDS):  # store/sqlite_driver.py
            rows = await session.execute(
                _with_activities_statement(),
                {"binding_id": binding_id, "tenant_id": tenant_id, "google_event_ids": chunk},
            )
        out.update({link.google_event_id: (link, activity) for link, activity in rows.unique()})
    return out


@functools.cache
def _with_activities_statement() -> Select[EventLink, Activity]:
    """Built once (see `_by_event_statement`); the ids an expanding parameter. The activity
    and its attendees come as store.activities.get reads them (a LEFT JOIN each)."""
    return (
        select(EventLink, Activity)
        .outerjoin(
            Activity,
            and_(
                Activity.id == EventLink.activity_id,
                Activity.tenant_id == bindparam("tenant_id"),
            ),
        )
        .where(
            EventLink.binding_id == bindparam("binding_id"),
            EventLink.google_event_id.in_(bindparam("google_event_ids", expanding=True)),
        )
        .options(joinedload(Activity.attendees))
    )


async def by_activity(
    session: AsyncSession, binding_id: uuid.UUID, activity_id: uuid.UUID
) -> EventLink | None:
    return await session.scalar(
        select(EventLink).where(
            EventLink.binding_id == binding_id, EventLink.activity_id == activity_id
        )
    )


async def by_activities(
    session: AsyncSession, binding_id: uuid.UUID, activity_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, EventLink]:
    out: dict[uuid.UUID, EventLink] = {}
    for chunk in chunked(activity_ids):
        rows = await session.scalars(
            select(EventLink).where(
                unindexed(EventLink.binding_id) == binding_id,  # found by activity (base.unindexed)
                EventLink.activity_id.in_(chunk),
            )
        )
        out.update({row.activity_id: row for row in rows if row.activity_id is not None})
    return out


async def linked_in_other_bindings(
    session: AsyncSession,
    connection_id: uuid.UUID,
    binding_id: uuid.UUID,
    activity_ids: Collection[uuid.UUID],
) -> set[uuid.UUID]:
    """Activities already represented in another calendar of the same connection."""
    if not activity_ids:
        return set()
    others = select(CalendarBinding.id).where(
        CalendarBinding.connection_id == connection_id, CalendarBinding.id != binding_id
    )
    out: set[uuid.UUID] = set()
    for chunk in chunked(activity_ids):
        rows = await session.scalars(
            select(EventLink.activity_id).where(
                EventLink.binding_id.in_(others), EventLink.activity_id.in_(chunk)
            )
        )
        out.update(r for r in rows if r is not None)
    return out


async def links_elsewhere(
    session: AsyncSession,
    connection_id: uuid.UUID,
    binding_id: uuid.UUID,
    activity_ids: Collection[uuid.UUID],
) -> dict[uuid.UUID, tuple[EventLink, CalendarBinding]]:
    """Each activity's link in another calendar of the same connection, with that calendar."""
    out: dict[uuid.UUID, tuple[EventLink, CalendarBinding]] = {}
    for chunk in chunked(activity_ids):
        rows = await session.execute(
            select(EventLink, CalendarBinding)
            .join(CalendarBinding, CalendarBinding.id == EventLink.binding_id)
            .where(
                CalendarBinding.connection_id == connection_id,
                CalendarBinding.id != binding_id,
                EventLink.activity_id.in_(chunk),
            )
            .order_by(EventLink.created_at)
        )
        for link, binding in rows.all():
            if link.activity_id is not None:
                out.setdefault(link.activity_id, (link, binding))
    return out


def _writable_entry() -> Any:
    """A link calsync may still write, of a top-level activity (a series once)."""
    return and_(
        EventLink.state.in_((LinkState.LINKED, LinkState.PENDING)),
        EventLink.read_only.is_(None),
        Activity.recurring_parent_id.is_(None),
    )


def _no_longer_exported(type_keys: Collection[str], never: str) -> Any:
    """Of the `never` type (project tasks) whatever its source, or made in the CRM with a type
    that is not exported."""
    return or_(
        Activity.type_key == never,
        (Activity.source == ActivitySource.CRM) & Activity.type_key.not_in(list(type_keys)),
    )


async def unexported(
    session: AsyncSession, binding_id: uuid.UUID, type_keys: Collection[str], never: str
) -> list[uuid.UUID]:
    """Live top-level activities linked here that stopped being exported."""
    rows = await session.scalars(
        select(EventLink.activity_id)
        .join(Activity, Activity.id == EventLink.activity_id)
        .where(
            EventLink.binding_id == binding_id,
            _writable_entry(),
            Activity.deleted_at.is_(None),
            _no_longer_exported(type_keys, never),
        )
    )
    return [r for r in rows if r is not None]


async def unexported_unselected(
    session: AsyncSession, connection_id: uuid.UUID, type_keys: Collection[str], never: str
) -> list[uuid.UUID]:
    """CRM-made activities linked in an unticked calendar of the connection that were deleted
    in the CRM or stopped being exported: that calendar never syncs, so the export calendar's
    sync withdraws them."""
    rows = await session.scalars(
        select(EventLink.activity_id)
        .join(Activity, Activity.id == EventLink.activity_id)
        .join(CalendarBinding, CalendarBinding.id == EventLink.binding_id)
        .where(
            CalendarBinding.connection_id == connection_id,
            CalendarBinding.role == BindingRole.UNSELECTED,
            Activity.source == ActivitySource.CRM,
            _writable_entry(),
            or_(Activity.deleted_at.is_not(None), _no_longer_exported(type_keys, never)),
        )
    )
    return [r for r in rows if r is not None]


def new(
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    activity_id: uuid.UUID | None,
    google_event_id: str,
    *,
    state: str,
    snapshot: dict[str, Any] | None = None,
    crm_hash: str | None = None,
    google_hash: str | None = None,
    google_etag: str | None = None,
    google_updated: datetime | None = None,
    ical_uid: str | None = None,
) -> EventLink:
    return EventLink(
        tenant_id=tenant_id,
        binding_id=binding_id,
        activity_id=activity_id,
        google_event_id=google_event_id,
        state=state,
        snapshot=snapshot,
        crm_hash=crm_hash,
        google_hash=google_hash,
        google_etag=google_etag,
        google_updated=google_updated,
        ical_uid=ical_uid,
    )


async def move_to(
    session: AsyncSession, from_binding: uuid.UUID, to_binding: uuid.UUID, link: EventLink
) -> None:
    """The event moved to another calendar of the account: its link follows, with the links of
    its series' occurrences (their instance ids do not change)."""
    link.binding_id = to_binding
    if link.activity_id is None:
        return
    occurrences = select(Activity.id).where(Activity.recurring_parent_id == link.activity_id)
    await session.execute(
        update(EventLink)
        .where(EventLink.binding_id == from_binding, EventLink.activity_id.in_(occurrences))
        .values(binding_id=to_binding)
        .execution_options(synchronize_session=False)
    )


async def remove(session: AsyncSession, link: EventLink) -> None:
    await session.delete(link)


async def any_in(session: AsyncSession, binding_id: uuid.UUID) -> bool:
    """Whether the binding has any link at all (false: its first sync is still to come)."""
    found = await session.scalar(
        select(EventLink.id).where(EventLink.binding_id == binding_id).limit(1)
    )
    return found is not None


async def count_live(
    session: AsyncSession, binding_id: uuid.UUID, *, crm_made: bool = False
) -> int:
    """Linked activities of the binding that are not deleted (the mass-delete guard's base);
    with `crm_made`, only entries made in the CRM, a series once (what a change of the export
    calendar moves to the new one)."""
    conditions = [
        EventLink.binding_id == binding_id,
        EventLink.state == LinkState.LINKED,
        Activity.deleted_at.is_(None),
    ]
    if crm_made:
        conditions += [
            Activity.source != ActivitySource.GOOGLE,
            Activity.recurring_parent_id.is_(None),
        ]
    value = await session.scalar(
        select(func.count())
        .select_from(EventLink)
        .join(Activity, Activity.id == EventLink.activity_id)
        .where(*conditions)
    )
    return int(value or 0)


def _linked_here(binding_id: uuid.UUID, activity: Any = None) -> Any:
    """The activities that have a link in the binding (an activity parked before it ever
    reached Google does not: it may still be matched). With `activity` (a column of the
    outer query), that activity's link there: looked up by the activity, not by walking
    the binding's links (base.unindexed)."""
    counts = or_(EventLink.state != LinkState.PARKED, EventLink.google_etag.is_not(None))
    if activity is not None:
        return select(EventLink.id).where(
            EventLink.activity_id == activity, unindexed(EventLink.binding_id) == binding_id, counts
        )
    return select(EventLink.activity_id).where(
        EventLink.binding_id == binding_id, EventLink.activity_id.is_not(None), counts
    )


async def still_unlinked(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    owner_id: uuid.UUID,
    binding_id: uuid.UUID,
    activity_ids: Collection[uuid.UUID],
) -> set[uuid.UUID]:
    """Which of these entries `unlinked_activities` returned are still the owner's, live and
    without a link in the binding (ids only: a streamed pull keeps what it read)."""
    out: set[uuid.UUID] = set()
    for chunk in chunked(activity_ids):
        rows = await session.scalars(
            select(Activity.id).where(
                unindexed(Activity.tenant_id) == tenant_id,  # found by id (base.unindexed)
                unindexed(Activity.owner_id) == owner_id,
                Activity.deleted_at.is_(None),
                Activity.id.in_(chunk),
                ~_linked_here(binding_id, Activity.id).exists(),
            )
        )
        out.update(rows)
    return out


async def unlinked_activities(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    owner_id: uuid.UUID,
    binding_id: uuid.UUID,
    *,
    since: datetime,
    type_keys: Collection[str] | None = None,
    from_calendar: tuple[str, str | None] | None = None,
    starting: tuple[datetime, datetime] | None = None,
) -> Sequence[Activity]:
    """The owner's live top-level activities from `since` on without a link in this binding:
    those made in the CRM, and those imported from `from_calendar` (calendar id, account) —
    never an entry another Google calendar brought, which belongs to that calendar alone.
    With `starting`, only those whose first start falls in that range (matching a few new
    events reads the entries around them, not the calendar)."""
    query = select(Activity).where(
        Activity.tenant_id == tenant_id,
        Activity.owner_id == owner_id,
        Activity.deleted_at.is_(None),
        Activity.recurring_parent_id.is_(None),
        or_(Activity.range_end_utc.is_(None), Activity.range_end_utc > since),
        Activity.id.not_in(_linked_here(binding_id)),
    )
    if from_calendar is None:
        query = query.where(Activity.source == ActivitySource.CRM)
    else:
        calendar_id, account = from_calendar
        query = query.where(
            or_(
                Activity.source == ActivitySource.CRM,
                (Activity.source_calendar_id == calendar_id)
                & or_(Activity.source_account.is_(None), Activity.source_account == account),
            )
        )
    if type_keys is not None:
        query = query.where(Activity.type_key.in_(list(type_keys)))
    if starting is not None:
        query = query.where(Activity.range_start_utc.between(*starting))
    result = await session.scalars(query.order_by(Activity.range_start_utc, Activity.id))
    return result.all()


async def activities(
    session: AsyncSession, tenant_id: uuid.UUID, activity_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Activity]:
    out: dict[uuid.UUID, Activity] = {}
    for chunk in chunked(activity_ids):
        rows = await session.scalars(
            select(Activity).where(
                unindexed(Activity.tenant_id) == tenant_id,  # found by id (base.unindexed)
                Activity.id.in_(chunk),
            )
        )
        out.update({row.id: row for row in rows})
    return out


async def claim_instance(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    activity_id: uuid.UUID,
    event_id: str,
) -> EventLink:
    """The link of a series' instance `event_id`, made the exception `activity_id`'s and
    pending (owed until Google confirms the write): the link a deleted exception of the same
    occurrence left, if any, else a new one."""
    link = await by_event(session, binding_id, event_id)
    if link is None:
        link = new(tenant_id, binding_id, activity_id, event_id, state=LinkState.PENDING)
        session.add(link)
    link.activity_id = activity_id
    link.state = LinkState.PENDING
    return link


async def restore_activity(
    session: AsyncSession, activity: Activity, origin: str = ChangeOrigin.SYNC
) -> list[Activity]:
    """Undo a tombstone (an edit in Google beats a delete in the CRM); records a change. A
    series comes back as its delete took it: the exceptions tombstoned with it (in the same
    statement, so at the same instant) come back too, or the CRM would show occurrences
    Google keeps cancelled or moved. Returns those exceptions (the sync places each on its
    instance again)."""
    seq = await changes.next_seq(session, activity.tenant_id)
    # the row lock first, then the reload: a refresh repeats the loader options the activity
    # was read with (its attendees joined), and PostgreSQL refuses FOR UPDATE on an outer join
    await session.execute(select(Activity.id).where(Activity.id == activity.id).with_for_update())
    await session.refresh(activity)
    deleted_at, now = activity.deleted_at, utcnow()
    activity.deleted_at = None
    activity.version += 1
    activity.updated_at = now
    await session.flush()
    changes.record(session, seq, activity, ChangeKind.UPDATED, origin)
    along: list[Activity] = []
    if activity.recurrence and activity.recurring_parent_id is None and deleted_at is not None:
        along = list(
            await session.scalars(
                select(Activity).where(
                    Activity.tenant_id == activity.tenant_id,
                    Activity.recurring_parent_id == activity.id,
                    Activity.deleted_at == deleted_at,
                )
            )
        )
        for exception in along:
            exception.deleted_at = None
            exception.version += 1
            exception.updated_at = now
            await session.flush()
            seq = await changes.next_seq(session, activity.tenant_id)
            changes.record(session, seq, exception, ChangeKind.UPDATED, origin)
    await session.flush()
    return along


async def dirty(session: AsyncSession, binding_id: uuid.UUID) -> list[uuid.UUID]:
    """Activities whose Google side is owed a write: unconfirmed inserts, merges and restores
    the push has not finished (crm_hash cleared)."""
    # the condition of the partial index ix_event_link_binding_id_owed, word for word and with
    # its values inline (a bound parameter would keep the planner from using it): the few owed
    # links are read, not every link of the calendar
    rows = await session.scalars(
        select(EventLink.activity_id).where(
            EventLink.binding_id == binding_id, OWED_WRITE, EventLink.activity_id.is_not(None)
        )
    )
    return [r for r in rows if r is not None]


async def shared_activity(
    session: AsyncSession, tenant_id: uuid.UUID, binding_id: uuid.UUID, ical_uid: str
) -> Activity | None:
    """The live top-level activity another binding of the tenant links to a meeting's iCalUID
    (the same meeting in another CRM user's calendar)."""
    return await session.scalar(
        select(Activity)
        .join(EventLink, EventLink.activity_id == Activity.id)
        .where(
            EventLink.tenant_id == tenant_id,
            EventLink.binding_id != binding_id,
            EventLink.ical_uid == ical_uid,
            Activity.deleted_at.is_(None),
            Activity.recurring_parent_id.is_(None),
        )
        .order_by(EventLink.created_at)
        .limit(1)
    )


async def exception_at(
    session: AsyncSession, master_id: uuid.UUID, original_start_local: datetime
) -> Activity | None:
    """The live exception of a series for the occurrence that started at this wall clock."""
    return await session.scalar(
        select(Activity).where(
            Activity.recurring_parent_id == master_id,
            Activity.original_start_local == original_start_local,
            Activity.deleted_at.is_(None),
        )
    )


async def exceptions(session: AsyncSession, master_id: uuid.UUID) -> list[uuid.UUID]:
    """Ids of a series' live exceptions."""
    rows = await session.scalars(
        select(Activity.id).where(
            Activity.recurring_parent_id == master_id, Activity.deleted_at.is_(None)
        )
    )
    return list(rows)
