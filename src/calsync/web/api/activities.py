"""/api/v1/activities, reading: time-range listing with expanded occurrences, one activity,
and how both are rendered (with the read-only state of entries Google manages).

The writes (create, patch, delete) are in activity_writes.py; they render their answers with
`activity_out` and load with `load` from here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response

from calsync.domain import activity as rules
from calsync.domain import recurrence as rec
from calsync.store import activities, activity_reads
from calsync.store.activities import Instance
from calsync.store.activity_reads import ActivityRow
from calsync.store.models import Activity
from calsync.sync import filters

from ..deps import Caller, Principal, Session
from ..errors import ApiError, FieldProblem, not_found
from ..schemas import ActivityList, ActivityOut, AttendeeOut, ReadOnlyOut

router = APIRouter(tags=["activities"])


# read-only entries (Google manages them; the sync would undo a CRM write)

#: each reason in the user's terms, with what to do instead; first the one a person would
#: act on when an entry has several
READ_ONLY: dict[str, tuple[str, str]] = {
    filters.EVENT_TYPE: (
        "Focus time and out-of-office entries are managed in Google Calendar",
        "change or delete it in Google Calendar; the CRM follows at the next sync",
    ),
    filters.BUSY_BLOCK: (
        "This private Google event is shown as Busy; its details stay in Google",
        "change it in Google Calendar, or set the owner's private events to `import` "
        "(PATCH /api/v1/users/{id}/google/settings) to edit it in the CRM",
    ),
    filters.NOT_ORGANIZER: (
        "This is another organiser's meeting in Google: only the organiser can change it",
        "ask the organiser to change it in Google Calendar",
    ),
    filters.RECURRENCE: (
        "Google describes this series in a way calsync cannot edit",
        "change the series in Google Calendar (e.g. to a daily, weekly, monthly or yearly "
        "rule), or keep editing it there",
    ),
}


def _read_only_out(reasons: set[str] | None) -> ReadOnlyOut | None:
    for reason, (message, remedy) in READ_ONLY.items():
        if reasons and reason in reasons:
            return ReadOnlyOut.model_validate(
                {"reason": reason, "message": message, "remedy": remedy}
            )
    return None


async def read_only_states(
    session: Session, rows: Sequence[Activity | ActivityRow]
) -> dict[uuid.UUID, ReadOnlyOut]:
    """The read-only state of each row that has one (one query for a whole page)."""
    reasons = await activity_reads.read_only_reasons(session, rows)
    out: dict[uuid.UUID, ReadOnlyOut] = {}
    for activity_id, found in reasons.items():
        state = _read_only_out(found)
        if state is not None:
            out[activity_id] = state
    return out


# rendering


def _when(local: datetime, all_day: bool, zone: str) -> str:
    if all_day:
        return local.date().isoformat()
    return local.replace(tzinfo=ZoneInfo(zone)).isoformat()


def activity_out(
    row: Activity | ActivityRow,
    occurrence: rec.Occurrence | None = None,
    read_only: ReadOnlyOut | None = None,
    problem: str | None = None,
) -> ActivityOut:
    start, end = row.start_local, row.end_local
    ident = str(row.id)
    recurring_parent_id = row.recurring_parent_id
    original = row.original_start_local
    if occurrence is not None:
        start, end = occurrence.start_local, occurrence.end_local
        ident = f"{row.id}_{rec.instance_suffix(row.all_day, occurrence.start_utc, start)}"
        recurring_parent_id, original = row.id, start
    return ActivityOut(
        id=ident,
        type=row.type_key,
        owner_id=row.owner_id,
        subject=row.subject,
        description=row.description,
        location=row.location,
        all_day=row.all_day,
        time_zone=row.time_zone,
        start=_when(start, row.all_day, row.time_zone),
        end=_when(end, row.all_day, row.time_zone),
        visibility=row.visibility,
        transparency=row.transparency,
        status=row.status,
        attendees=[
            AttendeeOut(
                email=a.email,
                display_name=a.display_name,
                response_status=a.response_status,
                optional=a.optional,
            )
            for a in row.attendees
        ],
        recurrence=None if occurrence else (list(row.recurrence) if row.recurrence else None),
        recurring_parent_id=recurring_parent_id,
        original_start=_when(original, row.all_day, row.time_zone) if original else None,
        organizer_email=row.organizer_email,
        occurrence=occurrence is not None,
        read_only=read_only,
        problem=problem,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def etag(row: Activity) -> dict[str, str]:
    return {"ETag": f'"{row.version}"'}


def in_range(value: date | datetime, name: str) -> None:
    """Refuse a year the rules do not take before anything computes with it (9999-12-31T23:00
    plus an hour overflows)."""
    if not rules.MIN_YEAR <= value.year <= rules.MAX_YEAR:
        raise ApiError(
            422,
            "validation_failed",
            f"{name} must be between the years {rules.MIN_YEAR} and {rules.MAX_YEAR}",
            "ask for a realistic range",
            [FieldProblem(field=name, code="out_of_range", message="year out of range")],
        )


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    in_range(value, name)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def load(caller: Principal, session: Session, activity_id: str) -> Activity:
    try:
        ident = uuid.UUID(activity_id)
    except ValueError:
        raise not_found("activity") from None
    row = await activities.get(session, caller.tenant_id, ident, caller.viewer)
    if row is None:
        raise not_found("activity")
    return row


# routes


@router.get("/activities", response_model=ActivityList)
async def list_activities(
    caller: Caller,
    session: Session,
    owner: Annotated[uuid.UUID | None, Query(description="Only this owner's activities")] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="Range start (inclusive)")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Range end (exclusive)")] = None,
    type: Annotated[
        str | None, Query(pattern=rules.TYPE_KEY.pattern, description="Activity type key")
    ] = None,
    expand: Annotated[
        bool, Query(description="Expand series into occurrences (needs from and to)")
    ] = False,
    include_deleted: Annotated[
        bool, Query(description="Include tombstones (not with expand)")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ActivityList:
    """Activities overlapping [from, to), by start. A user key sees the activities it owns or
    attends. With expand=true each series becomes its occurrences in the series' own time zone,
    with moved and cancelled occurrences (exceptions) in place of the generated ones."""
    lo, hi = _aware(start, "from"), _aware(end, "to")
    if lo is not None and hi is not None and hi <= lo:
        raise ApiError(422, "validation_failed", "`to` must be after `from`", "swap them")
    if expand:
        if lo is None or hi is None:
            raise ApiError(
                422, "range_required", "expand=true needs both from and to", "add from and to"
            )
        try:
            items: list[Instance] = await activities.list_expanded(
                session,
                caller.tenant_id,
                start=lo,
                end=hi,
                viewer=caller.viewer,
                owner_id=owner,
                type_key=type,
            )
        except rec.TooManyOccurrences as exc:
            raise ApiError(422, "range_too_large", str(exc), "ask for a shorter range") from exc
        page = items[offset : offset + limit]
        states = await read_only_states(session, [i.activity for i in page])
        return ActivityList(
            activities=[
                activity_out(i.activity, i.occurrence, states.get(i.activity.id), i.problem)
                for i in page
            ]
        )
    rows = await activity_reads.listing(
        session,
        caller.tenant_id,
        viewer=caller.viewer,
        owner_id=owner,
        type_key=type,
        start=lo,
        end=hi,
        include_deleted=include_deleted,
        limit=limit,
        offset=offset,
    )
    states = await read_only_states(session, rows)
    return ActivityList(activities=[activity_out(r, read_only=states.get(r.id)) for r in rows])


@router.get("/activities/{activity_id}", response_model=ActivityOut)
async def get_activity(
    activity_id: str, caller: Caller, session: Session, response: Response
) -> ActivityOut:
    """One activity; a deleted one is returned as a tombstone (deleted_at set)."""
    row = await load(caller, session, activity_id)
    response.headers.update(etag(row))
    return activity_out(row, read_only=(await read_only_states(session, [row])).get(row.id))
