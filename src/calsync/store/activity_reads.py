"""The API's listing of stored activities (GET /api/v1/activities without expand) as plain
rows, not ORM objects: the activity columns an answer shows and their attendees, in one
statement built once per shape of the filters.

Why: the listing was the API's most frequent read, and loading its page as ORM objects (an
identity map, instance state and an attendee collection per row) and building its statement
anew each call took about a third of the call's CPU (docs/deploy.md "Capacity"). Nothing here
is written back, so nothing needs the unit of work. Apart from store/activities.py, whose
readers and writers the sync shares."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import activity_statements as statements
from .activity_statements import Viewer
from .base import chunked
from .models import Activity, ActivityAttendee, CalendarBinding, EventLink, GoogleConnection


@dataclass(frozen=True, slots=True)
class AttendeeRow:
    email: str
    display_name: str | None
    response_status: str
    optional: bool


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """What the API shows of a stored activity (the attribute names of `models.Activity`)."""

    id: uuid.UUID
    type_key: str
    owner_id: uuid.UUID
    subject: str
    description: str | None
    location: str | None
    all_day: bool
    time_zone: str
    start_local: datetime
    end_local: datetime
    visibility: str
    transparency: str
    status: str
    recurrence: list[str] | None
    recurring_parent_id: uuid.UUID | None
    original_start_local: datetime | None
    organizer_email: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    attendees: list[AttendeeRow]


#: the activity columns of an ActivityRow, in its field order (attendees come from the join)
COLUMNS = tuple(
    getattr(Activity, name) for name in ActivityRow.__dataclass_fields__ if name != "attendees"
)
ATTENDEE_COLUMNS = (
    ActivityAttendee.email,
    ActivityAttendee.display_name,
    ActivityAttendee.response_status,
    ActivityAttendee.optional,
)


@functools.cache
def _listing(
    viewer: bool, owner: bool, type_key: bool, start: bool, end: bool, include_deleted: bool
) -> Select[Any]:
    """The page of activities (by range start, then id) with their attendees (by position)
    joined to it, as the ORM's joined eager load of a LIMITed query renders it; every value is
    a parameter, so each shape is built and compiled once."""

    def param(name: str, column: Any) -> Any:
        return bindparam(name, type_=column.type)

    tenant_id = param("tenant_id", Activity.tenant_id)
    page = statements.listing_filters(
        select(Activity),
        tenant_id,
        (param("viewer_id", Activity.owner_id), param("viewer_email", ActivityAttendee.email))
        if viewer
        else None,
        param("owner_id", Activity.owner_id) if owner else None,
        param("type_key", Activity.type_key) if type_key else None,
        param("start", Activity.range_end_utc) if start else None,
        param("end", Activity.range_start_utc) if end else None,
        include_deleted,
    )
    paged = (
        page.order_by(Activity.range_start_utc, Activity.id)
        .limit(bindparam("limit", type_=Activity.version.type))
        .offset(bindparam("offset", type_=Activity.version.type))
        .subquery()
    )
    columns = [paged.c[column.key] for column in COLUMNS]
    return (
        select(*columns, *ATTENDEE_COLUMNS)
        .select_from(paged.outerjoin(ActivityAttendee, ActivityAttendee.activity_id == paged.c.id))
        .order_by(paged.c.range_start_utc, paged.c.id, ActivityAttendee.position)
    )


async def listing(
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
) -> Sequence[ActivityRow]:
    """Stored rows (singles, masters, exceptions) overlapping [start, end), oldest first, as
    `store.activities.list_` finds them."""
    statement = _listing(
        viewer is not None,
        owner_id is not None,
        type_key is not None,
        start is not None,
        end is not None,
        include_deleted,
    )
    params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit, "offset": offset}
    if viewer is not None:
        params["viewer_id"], params["viewer_email"] = viewer.user_id, viewer.email
    if owner_id is not None:
        params["owner_id"] = owner_id
    if type_key is not None:
        params["type_key"] = type_key
    if start is not None:
        params["start"] = start
    if end is not None:
        params["end"] = end
    out: list[ActivityRow] = []
    current: ActivityRow | None = None
    width = len(COLUMNS)
    for row in await (await session.connection()).execute(statement, params):
        if current is None or current.id != row[0]:
            current = ActivityRow(*row[:width], [])  # type: ignore[call-arg]
            out.append(current)
        if row[width] is not None:  # an attendee (the LEFT JOIN's NULLs: none)
            current.attendees.append(AttendeeRow(*row[width:]))
    return out


@functools.cache
def _read_only_links(size: int) -> Select[uuid.UUID | None, str | None, uuid.UUID]:
    """The read-only reasons of the links of `size` activities, with the user whose connection
    each link's calendar belongs to: built and compiled once per size. Sizes are powers of two
    (the ids padded by repeating the last): an expanding IN would be rendered anew at every
    execution, which cost a listing of 20 more CPU than the rest of this read."""
    ids = [bindparam(f"id{i}", type_=EventLink.activity_id.type) for i in range(size)]
    return (
        select(EventLink.activity_id, EventLink.read_only, GoogleConnection.user_id)
        .join(CalendarBinding, CalendarBinding.id == EventLink.binding_id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .where(EventLink.activity_id.in_(ids), EventLink.read_only.is_not(None))
    )


def _padded(ids: list[uuid.UUID]) -> tuple[int, dict[str, uuid.UUID]]:
    size = 1 << (len(ids) - 1).bit_length()
    params = {f"id{i}": ident for i, ident in enumerate(ids)}
    for i in range(len(ids), size):
        params[f"id{i}"] = ids[-1]
    return size, params


async def read_only_reasons(
    session: AsyncSession, items: Sequence[Activity | ActivityRow]
) -> dict[uuid.UUID, set[str]]:
    """Why the sync would undo a CRM write of each activity: the read-only reasons of its links,
    and of its series' links for an exception, in a calendar of its owner's connection (an
    attendee's read-only copy of a meeting its organiser syncs does not count); on the
    session's connection, one statement for up to 2,048 ids."""
    wanted: dict[uuid.UUID, list[Activity | ActivityRow]] = {}
    for item in items:
        wanted.setdefault(item.id, []).append(item)
        if item.recurring_parent_id is not None:
            wanted.setdefault(item.recurring_parent_id, []).append(item)
    out: dict[uuid.UUID, set[str]] = {}
    if not wanted:
        return out
    connection = await session.connection()
    for chunk in chunked(wanted, 2048):
        size, params = _padded(chunk)
        rows = await connection.execute(_read_only_links(size), params)
        for activity_id, reason, user_id in rows:
            if activity_id is None or reason is None:
                continue
            for item in wanted.get(activity_id, ()):
                if item.owner_id == user_id:
                    out.setdefault(item.id, set()).add(reason)
    return out
