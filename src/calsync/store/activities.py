"""Activities: create, read, list by time range (optionally expanded), update, soft delete.

Every write records a change in the same transaction (numbered in commit order: see
store/changes.py); an edit locks its activity's row before it checks the version; the caller
commits.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from calsync.domain import recurrence as rec
from calsync.domain.activity import ActivityDraft, ActivityValues, Attendee, validate

from . import activity_statements as statements
from . import changes, webhooks
from .activity_statements import Viewer as Viewer  # re-exported: the readers name it here
from .base import new_id, utcnow
from .errors import AlreadyExists, Deleted, VersionMismatch
from .models import Activity, ActivityAttendee
from .statuses import ActivitySource, ChangeKind, ChangeOrigin

CANCELLED = "cancelled"  # an exception with this status removes its occurrence


@dataclass(frozen=True)
class Instance:
    """One entry of an expanded listing: a stored activity, or an occurrence of a master."""

    activity: Activity
    occurrence: rec.Occurrence | None = None
    #: set on a series listed as its stored row because it could not be expanded (a rule
    #: stored before it was validated, or one too costly for this range): says why
    problem: str | None = None


def series(activity: Activity) -> rec.Series:
    return rec.Series(
        activity.all_day,
        ZoneInfo(activity.time_zone),
        activity.start_local,
        activity.end_local,
        tuple(activity.recurrence or ()),
    )


def _apply(activity: Activity, values: ActivityValues) -> None:
    timing = values.timing
    activity.subject = values.subject
    activity.description = values.description
    activity.location = values.location
    activity.all_day = timing.all_day
    activity.time_zone = timing.time_zone
    activity.start_local, activity.end_local = timing.start_local, timing.end_local
    activity.start_utc, activity.end_utc = timing.start_utc, timing.end_utc
    activity.range_start_utc = values.range_start_utc
    activity.range_end_utc = values.range_end_utc
    activity.visibility = values.visibility
    activity.transparency = values.transparency
    activity.status = values.status
    activity.recurrence = list(values.recurrence) if values.recurrence else None
    activity.original_start_local = values.original_start_local
    _set_attendees(activity, values.attendees)


def _set_attendees(activity: Activity, attendees: Sequence[Attendee]) -> None:
    """Update rows in place by e-mail (delete + insert of one key in a flush would collide)."""
    existing = {row.email: row for row in activity.attendees}
    keep = []
    for position, item in enumerate(attendees):
        row = existing.pop(item.email, None) or ActivityAttendee(
            email=item.email, tenant_id=activity.tenant_id
        )
        row.display_name = item.display_name
        row.response_status = item.response_status
        row.optional = item.optional
        row.position = position
        keep.append(row)
    activity.attendees = keep


@dataclass(frozen=True)
class Source:
    """The Google calendar (of which account) an imported activity came from."""

    calendar_id: str
    account: str | None = None


def source_of(activity: Activity) -> Source | None:
    """Where an activity came from: None when it was made in the CRM."""
    if activity.source != ActivitySource.GOOGLE:
        return None
    return Source(activity.source_calendar_id or "", activity.source_account)


def made_in_crm(activity: Activity) -> bool:
    return activity.source != ActivitySource.GOOGLE


@dataclass(frozen=True)
class NewActivity:
    """One activity to create with `create_many` (`source` None: made in the CRM)."""

    type_key: str
    owner_id: uuid.UUID
    values: ActivityValues
    recurring_parent_id: uuid.UUID | None = None
    organizer_email: str | None = None
    source: Source | None = None


async def create(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    type_key: str,
    owner_id: uuid.UUID,
    values: ActivityValues,
    recurring_parent_id: uuid.UUID | None = None,
    organizer_email: str | None = None,
    origin: str = ChangeOrigin.API,
    source: Source | None = None,
) -> Activity:
    item = NewActivity(type_key, owner_id, values, recurring_parent_id, organizer_email, source)
    return (await create_many(session, tenant_id, [item], origin=origin))[0]


async def create_many(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    items: Sequence[NewActivity],
    *,
    origin: str = ChangeOrigin.API,
) -> list[Activity]:
    """Create activities and their changes with one sequence reservation and one flush.

    Ids are assigned here rather than at flush, so the changes (and any links the caller adds)
    can point at the activities before they are written: a first import of thousands of events
    costs a few statements per chunk instead of several round trips per event."""
    if not items:
        return []
    last = await changes.reserve(session, tenant_id, len(items))
    created: list[Activity] = []
    for item in items:
        activity = Activity(
            id=new_id(),
            tenant_id=tenant_id,
            type_key=item.type_key,
            owner_id=item.owner_id,
            recurring_parent_id=item.recurring_parent_id,
            organizer_email=item.organizer_email,
            source=ActivitySource.GOOGLE if item.source is not None else ActivitySource.CRM,
            source_calendar_id=item.source.calendar_id if item.source is not None else None,
            source_account=item.source.account if item.source is not None else None,
            version=1,
            attendees=[],
        )
        _apply(activity, item.values)
        created.append(activity)
    session.add_all(created)
    for seq, activity in enumerate(created, start=last - len(created) + 1):
        changes.record(session, seq, activity, ChangeKind.CREATED, origin)
    try:
        await session.flush()
    except IntegrityError as exc:  # the live-exception-per-occurrence index
        raise AlreadyExists("this occurrence already has an exception") from exc
    return created


@dataclass(frozen=True)
class References:
    """What a new activity names, as the tenant has it (`references`)."""

    type_known: bool
    owner_known: bool


async def references(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    type_key: str | None,
    owner_id: uuid.UUID | None,
) -> References:
    """Whether the tenant has the activity type `type_key` and the live user `owner_id` (each
    false when None), in one statement that also learns whether the tenant has enabled outbound-webhook
    endpoints — on PostgreSQL, whose feed is numbered at commit, so that the commit need not
    read them again (SQLite learns them under its write lock, with the feed's number)."""
    params = {"tenant_id": tenant_id, "type_key": type_key, "owner_id": owner_id}
    type_known, owner_known, enabled = (
        await session.execute(statements.references(), params)
    ).one()
    if changes.numbered_at_commit(session):
        webhooks.note_endpoints(session, tenant_id, bool(enabled))
    return References(bool(type_known), bool(owner_known))


async def get(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    activity_id: uuid.UUID,
    viewer: Viewer | None = None,
) -> Activity | None:
    """One activity (tombstones included) if it belongs to the tenant and the viewer sees it."""
    if viewer is None:  # the sync's read: the statement built once
        found = await session.scalars(
            statements.activity_with_attendees(),
            {"activity_id": activity_id, "tenant_id": tenant_id},
        )
        return found.unique().first()
    query = statements.visible(
        select(Activity).where(Activity.id == activity_id, Activity.tenant_id == tenant_id),
        tenant_id,
        viewer,
    )
    query = query.options(joinedload(Activity.attendees))
    return (await session.scalars(query)).unique().first()


async def list_(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    viewer: Viewer | None = None,
    owner_id: uuid.UUID | None = None,
    type_key: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    include_deleted: bool = False,
    limit: int = 500,
    offset: int = 0,
) -> Sequence[Activity]:
    """Stored rows (singles, masters, exceptions) overlapping [start, end), oldest first."""
    query = statements.filtered(tenant_id, viewer, owner_id, type_key, start, end, include_deleted)
    query = query.order_by(Activity.range_start_utc, Activity.id).limit(limit).offset(offset)
    return (await session.scalars(query)).unique().all()


async def list_expanded(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    viewer: Viewer | None = None,
    owner_id: uuid.UUID | None = None,
    type_key: str | None = None,
    limit: int = 5_000,
) -> list[Instance]:
    """What happens in [start, end): singles, generated occurrences and exceptions, by start."""
    rows = (
        (
            await session.scalars(
                statements.filtered(
                    tenant_id, viewer, owner_id, type_key, start, end, include_deleted=False
                )
            )
        )
        .unique()
        .all()
    )
    masters = [row for row in rows if row.recurrence and row.recurring_parent_id is None]
    overridden: dict[uuid.UUID, set[datetime]] = {m.id: set() for m in masters}
    if masters:
        exceptions = await session.execute(
            select(Activity.recurring_parent_id, Activity.original_start_local).where(
                Activity.recurring_parent_id.in_([m.id for m in masters]),
                Activity.deleted_at.is_(None),
            )
        )
        for parent_id, original in exceptions.all():
            if parent_id is not None and original is not None:
                overridden[parent_id].add(original)
    specs = [(row.id, _series_or_none(row), overridden[row.id]) for row in masters]
    # pure work on a bounded budget, off the event loop: no request can stall the others
    expanded = await asyncio.to_thread(_expand_all, specs, start, end, limit)
    out: list[Instance] = []
    for row in rows:
        if row in masters:
            result = expanded[row.id]
            if isinstance(result, str):
                out.append(Instance(row, problem=result))
            else:
                out.extend(Instance(row, occurrence) for occurrence in result)
        elif row.status == "cancelled" and row.recurring_parent_id is not None:
            continue  # a cancelled occurrence: it only hides the generated one
        elif row.start_utc < end and row.end_utc > start:
            out.append(Instance(row))
        if len(out) > limit:
            raise rec.TooManyOccurrences(f"more than {limit} entries in the requested range")
    out.sort(
        key=lambda item: (
            item.occurrence.start_utc if item.occurrence else item.activity.start_utc,
            str(item.activity.id),
        )
    )
    return out


def _series_or_none(row: Activity) -> rec.Series | None:
    try:
        return series(row)
    except (ValueError, KeyError):  # a zone this system does not know
        return None


def _expand_all(
    specs: list[tuple[uuid.UUID, rec.Series | None, set[datetime]]],
    start: datetime,
    end: datetime,
    limit: int,
) -> dict[uuid.UUID, list[rec.Occurrence] | str]:
    """Each series' occurrences in [start, end), or why it has none: every series on its own
    budget, all of them on the request's (TooManyOccurrences when that runs out)."""
    request = rec.Budget(rec.REQUEST_UNITS)
    out: dict[uuid.UUID, list[rec.Occurrence] | str] = {}
    for ident, shape, skip in specs:
        if shape is None:
            out[ident] = "the series' time zone is unknown: it cannot be expanded"
            continue
        budget = request.child(rec.SERIES_UNITS)
        try:
            out[ident] = rec.expand(shape, start, end, skip=skip, limit=limit, budget=budget)
        except rec.RecurrenceError as exc:
            if request.spent > request.units:
                raise rec.TooManyOccurrences(
                    "the series in the requested range take too much work to expand"
                ) from exc
            out[ident] = f"the series cannot be expanded: {exc}"
    return out


async def exceptions_of(session: AsyncSession, master: Activity) -> Sequence[Activity]:
    result = await session.scalars(
        select(Activity).where(
            Activity.recurring_parent_id == master.id, Activity.deleted_at.is_(None)
        )
    )
    return result.all()


async def _lock_and_reload(
    session: AsyncSession, activity: Activity, expected_version: int | None
) -> int:
    # the row lock keeps two edits of one activity apart (PostgreSQL; SQLite's write lock,
    # taken by the feed-number UPDATE, already does). Every write of an activity bumps its
    # version, so the object as read is current iff the locked row's version is the one it
    # holds: it is reloaded (its attendees too) only when someone wrote the row since (or it
    # is expired). The tenant's outbound-webhook endpoints are read with it: none → the commit
    # reads none
    held = inspect(activity).dict.get("version")
    current: int | None
    # Core statements (built on the tables) skip the ORM's autoflush: what the session holds
    # unwritten is flushed first, in the same order as before
    if session.new or session.dirty or session.deleted:
        await session.flush()
    if changes.numbered_at_commit(session):
        seq = await changes.next_seq(session, activity.tenant_id)  # provisional: no statement
        row = (
            await session.execute(statements.locked_version(), {"activity_id": activity.id})
        ).first()
        current, enabled = row if row is not None else (None, True)
    else:  # one statement: the number, the write lock, then the version and endpoints under it
        params = {"tenant_id": activity.tenant_id, "activity_id": activity.id}
        seq, enabled, current = (await session.execute(statements.numbered_version(), params)).one()
    if current is not None:
        webhooks.note_endpoints(session, activity.tenant_id, bool(enabled))
    if held is None or current != held:
        await session.refresh(activity)
    if activity.deleted_at is not None:
        raise Deleted(f"activity {activity.id} is deleted")
    if expected_version is not None and activity.version != expected_version:
        raise VersionMismatch(activity.version)
    return seq


async def update(
    session: AsyncSession,
    activity: Activity,
    values: ActivityValues,
    *,
    type_key: str | None = None,
    owner_id: uuid.UUID | None = None,
    expected_version: int | None = None,
    origin: str = ChangeOrigin.API,
) -> Activity:
    """Replace the activity's fields with `values` (bumps the version, records a change)."""
    seq = await _lock_and_reload(session, activity, expected_version)
    master = bool(activity.recurrence) and activity.recurring_parent_id is None
    before, content = (series(activity), _content(activity)) if master else (None, ())
    _apply(activity, values)
    if type_key is not None:
        activity.type_key = type_key
    if owner_id is not None:
        activity.owner_id = owner_id
    activity.version += 1
    activity.updated_at = utcnow()
    # one flush writes the activity and its change row (the change after it: the unit of work
    # orders the change, which refers to the activity, after the activity's UPDATE)
    changes.record(session, seq, activity, ChangeKind.UPDATED, origin)
    await session.flush()
    if before is not None:
        await _follow_series(session, activity, before, content, origin)
    return activity


def _content(activity: Activity) -> tuple[object, ...]:
    """What an exception can say besides its time (compared with its series')."""
    return (
        activity.subject,
        activity.description,
        activity.location,
        activity.visibility,
        activity.transparency,
    )


def _timing_key(recurring: rec.Series) -> tuple[object, ...]:
    return (recurring.all_day, recurring.zone.key, recurring.start_local, recurring.recurrence)


async def _follow_series(
    session: AsyncSession,
    master: Activity,
    before: rec.Series,
    content: tuple[object, ...],
    origin: str,
) -> None:
    """A series whose occurrences moved (new start, rule, zone) takes its exceptions along,
    so none is left at an original start the series no longer generates: an exception still
    generated stays; one that says more than its time (cancelled, its own title, notes,
    location ...) moves to the same occurrence of the moved series and takes the series' new
    time; the rest (only a time of their own, or an occurrence the series lost) are deleted."""
    after = series(master)
    if _timing_key(after) == _timing_key(before):
        return
    staying: set[datetime] = set()
    moving: list[tuple[Activity, datetime]] = []
    dropping: list[Activity] = []
    for exc in await exceptions_of(session, master):
        original = exc.original_start_local
        slot = rec.follow(before, after, original) if master.recurrence and original else None
        if slot is not None and slot == original:
            staying.add(slot)
        elif slot is not None and (exc.status == "cancelled" or _content(exc) != content):
            moving.append((exc, slot))
        else:
            dropping.append(exc)
    targets: set[datetime] = set()
    keep: list[tuple[Activity, datetime]] = []
    for exc, slot in moving:
        if slot in staying or slot in targets:
            dropping.append(exc)  # that occurrence has an exception already
        else:
            targets.add(slot)
            keep.append((exc, slot))
    for exc in dropping:
        await delete(session, exc, origin=origin)
    # free each target before it is taken: a one-week move puts week 2's exception on week 3
    later_first = after.start_local >= before.start_local
    keep.sort(key=lambda item: item[0].original_start_local or item[1], reverse=later_first)
    for exc, slot in keep:
        await update(session, exc, validate(_moved(exc, after, slot), after), origin=origin)


def _moved(exc: Activity, after: rec.Series, slot: datetime) -> ActivityDraft:
    end = slot + after.duration
    return ActivityDraft(
        start=slot.date() if after.all_day else slot,
        end=end.date() if after.all_day else end,
        subject=exc.subject,
        description=exc.description,
        location=exc.location,
        all_day=after.all_day,
        time_zone=after.zone.key,
        visibility=exc.visibility,
        transparency=exc.transparency,
        status=exc.status,
        attendees=tuple(
            Attendee(a.email, a.display_name, a.response_status, a.optional) for a in exc.attendees
        ),
        original_start=slot.date() if after.all_day else slot,
    )


async def delete(
    session: AsyncSession,
    activity: Activity,
    *,
    expected_version: int | None = None,
    origin: str = ChangeOrigin.API,
) -> None:
    """Tombstone the activity (and a master's exceptions); each gets a `deleted` change."""
    seq = await _lock_and_reload(session, activity, expected_version)
    targets = [activity]
    if activity.recurrence and activity.recurring_parent_id is None:
        targets += list(await exceptions_of(session, activity))
    now = utcnow()
    for index, target in enumerate(targets):
        if index:
            seq = await changes.next_seq(session, activity.tenant_id)
        target.deleted_at = now
        target.version += 1
        target.updated_at = now
        changes.record(session, seq, target, ChangeKind.DELETED, origin)
    await session.flush()


async def delete_exception(
    session: AsyncSession,
    exception: Activity,
    *,
    expected_version: int | None = None,
    origin: str = ChangeOrigin.API,
) -> Activity | None:
    """Delete one occurrence's exception as deleting an instance works in Google: the
    occurrence is cancelled, not put back at the series' time. A cancelled exception (the
    exception's content, at the series' time for that occurrence) takes its place in the same
    transaction, so listings never show the occurrence again, with or without a Google
    connection; the sync then cancels the instance in Google. Deleting a cancellation changes
    nothing (PATCH its status to confirmed to bring the occurrence back). Returns the exception
    that now holds the occurrence, or None when the series no longer has it."""
    assert exception.recurring_parent_id is not None
    if exception.status == CANCELLED:
        await session.refresh(exception)
        if expected_version is not None and exception.version != expected_version:
            raise VersionMismatch(exception.version)
        return exception
    await delete(session, exception, expected_version=expected_version, origin=origin)
    master = await session.get(Activity, exception.recurring_parent_id)
    original = exception.original_start_local
    if master is None or master.deleted_at is not None or not master.recurrence or not original:
        return None
    after = series(master)
    if not rec.is_occurrence(after, original):
        return None
    taken = await session.scalar(
        select(Activity.id).where(
            Activity.recurring_parent_id == master.id,
            Activity.original_start_local == original,
            Activity.deleted_at.is_(None),
        )
    )
    if taken is not None:
        return None
    draft = replace(_moved(exception, after, original), status=CANCELLED)
    return await create(
        session,
        exception.tenant_id,
        type_key=exception.type_key,
        owner_id=exception.owner_id,
        values=validate(draft, after),
        recurring_parent_id=master.id,
        organizer_email=exception.organizer_email,
        origin=origin,
    )
