"""/api/v1/activities: CRUD, time-range listing with expanded occurrences, If-Match."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Query, Request, Response

from calsync.domain import activity as rules
from calsync.domain import recurrence as rec
from calsync.store import activities, links, tenants, users
from calsync.store.activities import Instance
from calsync.store.errors import AlreadyExists, Deleted, VersionMismatch
from calsync.store.models import Activity, ActivityAttendee
from calsync.sync import filters

from ..deps import Caller, Principal, Session
from ..errors import ApiError, FieldProblem, not_found
from ..schemas import (
    ActivityIn,
    ActivityList,
    ActivityOut,
    ActivityPatch,
    AttendeeIn,
    AttendeeOut,
    ReadOnlyOut,
)

router = APIRouter(tags=["activities"])

IF_MATCH = Header(
    default=None,
    alias="If-Match",
    description="The version you edited (from GET's ETag); 412 when it is no longer current",
)


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


async def _read_only(s: Session, rows: list[Activity]) -> dict[uuid.UUID, ReadOnlyOut]:
    """The read-only state of each row that has one (one query for a whole page)."""
    reasons = await links.read_only_reasons(s, rows)
    out: dict[uuid.UUID, ReadOnlyOut] = {}
    for activity_id, found in reasons.items():
        state = _read_only_out(found)
        if state is not None:
            out[activity_id] = state
    return out


async def _writable(s: Session, row: Activity) -> None:
    """409 read_only when Google manages the activity (or its series): the owner may not change
    it through calsync, and neither may an admin, since the next sync would undo the write."""
    state = (await _read_only(s, [row])).get(row.id)
    if state is not None:
        raise ApiError(409, "read_only", f"{state.message}.", state.remedy)


# rendering


def _when(local: datetime, all_day: bool, zone: str) -> str:
    if all_day:
        return local.date().isoformat()
    return local.replace(tzinfo=ZoneInfo(zone)).isoformat()


def activity_out(
    row: Activity,
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


def _changed(request: Request, tenant_id: uuid.UUID, *owners: uuid.UUID) -> None:
    """A committed write: queue a (debounced) push to each owner's export calendar."""
    changes = getattr(request.app.state, "changes", None)
    if changes is not None:
        for owner in owners:
            changes.touch(tenant_id, owner)


def _etag(row: Activity) -> dict[str, str]:
    return {"ETag": f'"{row.version}"'}


# drafts


#: the draft fields a request body carries as they are (attendees are converted first)
DRAFT_FIELDS = (
    "subject",
    "description",
    "location",
    "start",
    "end",
    "all_day",
    "time_zone",
    "visibility",
    "transparency",
    "status",
    "recurrence",
)


def _attendees(items: Iterable[AttendeeIn | ActivityAttendee]) -> list[rules.Attendee]:
    """Sent or stored attendees as draft attendees."""
    return [rules.Attendee(a.email, a.display_name, a.response_status, a.optional) for a in items]


def _stored_fields(row: Activity) -> dict[str, Any]:
    """The row as draft fields (wall clock, or dates for all-day entries)."""
    start: date | datetime = row.start_local
    end: date | datetime = row.end_local
    if row.all_day:
        start, end = row.start_local.date(), row.end_local.date()
    return {
        "start": start,
        "end": end,
        "subject": row.subject,
        "description": row.description,
        "location": row.location,
        "all_day": row.all_day,
        "time_zone": row.time_zone,
        "visibility": row.visibility,
        "transparency": row.transparency,
        "status": row.status,
        "attendees": _attendees(row.attendees),
        "recurrence": list(row.recurrence) if row.recurrence else None,
    }


def _validate(fields: dict[str, Any], parent: rec.Series | None) -> rules.ActivityValues:
    try:
        return rules.validate(rules.ActivityDraft(**fields), parent)
    except rules.ActivityInvalid as exc:
        problems = [FieldProblem(field=e.field, code=e.code, message=e.message) for e in exc.errors]
        summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
        raise ApiError(
            422,
            "validation_failed",
            f"invalid activity: {summary}",
            "fix the listed fields",
            problems,
        ) from exc


async def _check_type(caller: Principal, s: Session, key: str) -> None:
    if await tenants.activity_type(s, caller.tenant_id, key) is None:
        raise ApiError(
            422,
            "unknown_type",
            f"no activity type {key!r}",
            "use a key from GET /api/v1/activity-types",
            [FieldProblem(field="type", code="unknown_type", message=f"no activity type {key!r}")],
        )


async def _check_owner(caller: Principal, s: Session, owner_id: uuid.UUID | None) -> uuid.UUID:
    if not caller.is_admin:
        assert caller.user is not None
        if owner_id is not None and owner_id != caller.user.id:
            raise ApiError(
                403, "not_allowed", "a user key can only act for its own user", "omit owner_id"
            )
        return caller.user.id
    if owner_id is None:
        raise ApiError(
            422,
            "owner_required",
            "owner_id is required with an admin key",
            "set owner_id to one of GET /api/v1/users",
            [FieldProblem(field="owner_id", code="required", message="required")],
        )
    if await users.get(s, caller.tenant_id, owner_id) is None:
        raise ApiError(
            422,
            "unknown_owner",
            "owner_id is not a user of this company",
            "use an id from GET /api/v1/users",
            [FieldProblem(field="owner_id", code="unknown", message="no such user")],
        )
    return owner_id


def _may_edit(caller: Principal, row: Activity) -> None:
    if caller.is_admin:
        return
    assert caller.user is not None
    if row.owner_id != caller.user.id:
        raise ApiError(
            403,
            "read_only",
            "only the owner can change this activity; attendees see it read-only",
            "ask the owner or an admin",
        )


def _if_match(value: str | None) -> int | None:
    """`If-Match: 3`, `"3"` or `W/"3"`; `*` matches any; anything else never matches."""
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    return int(tag) if tag.isdigit() and len(tag) < 10 else -1


def _in_range(value: date | datetime, name: str) -> None:
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
    _in_range(value, name)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _load(caller: Principal, s: Session, activity_id: str) -> Activity:
    try:
        ident = uuid.UUID(activity_id)
    except ValueError:
        raise not_found("activity") from None
    row = await activities.get(s, caller.tenant_id, ident, caller.viewer)
    if row is None:
        raise not_found("activity")
    return row


def _gone(row: Activity) -> ApiError:
    return ApiError(
        410, "deleted", f"activity {row.id} is deleted", "create a new activity instead"
    )


# routes


@router.get("/activities", response_model=ActivityList)
async def list_activities(
    caller: Caller,
    s: Session,
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
                s,
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
        states = await _read_only(s, [i.activity for i in page])
        return ActivityList(
            activities=[
                activity_out(i.activity, i.occurrence, states.get(i.activity.id), i.problem)
                for i in page
            ]
        )
    rows = await activities.list_(
        s,
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
    states = await _read_only(s, list(rows))
    return ActivityList(activities=[activity_out(r, read_only=states.get(r.id)) for r in rows])


@router.post("/activities", response_model=ActivityOut, status_code=201)
async def create_activity(
    body: ActivityIn, caller: Caller, s: Session, response: Response, request: Request
) -> ActivityOut:
    """Create an activity, a recurring master (recurrence), or an exception of a master
    (recurring_parent_id + original_start; status=cancelled removes that occurrence)."""
    sent = body.model_fields_set
    parent_series: rec.Series | None = None
    fields: dict[str, Any] = {}
    if body.recurring_parent_id is not None:
        parent = await activities.get(s, caller.tenant_id, body.recurring_parent_id, caller.viewer)
        if parent is None or parent.deleted_at is not None:
            raise ApiError(
                422,
                "unknown_parent",
                "recurring_parent_id is not a live activity",
                "use a series' id",
            )
        if not parent.recurrence or parent.recurring_parent_id is not None:
            raise ApiError(
                422,
                "not_a_series",
                "recurring_parent_id is not a recurring series",
                "use the master's id",
            )
        _may_edit(caller, parent)
        await _writable(s, parent)
        owner_id, type_key = parent.owner_id, body.type if "type" in sent else parent.type_key
        parent_series = activities.series(parent)
        fields = _stored_fields(parent)
        fields["recurrence"] = None
        if body.original_start is not None:
            _in_range(body.original_start, "original_start")
        # an exception starts as a copy of the occurrence it replaces
        if body.original_start is not None and not ({"start", "end"} & sent):
            original = body.original_start
            if isinstance(original, datetime) and not parent.all_day:
                local = (
                    original
                    if original.tzinfo is None
                    else original.astimezone(ZoneInfo(parent.time_zone)).replace(tzinfo=None)
                )
                fields["start"], fields["end"] = local, local + parent_series.duration
            elif not isinstance(original, datetime) and parent.all_day:
                fields["start"] = original
                fields["end"] = original + parent_series.duration
        fields["original_start"] = body.original_start
    else:
        if body.original_start is not None:
            raise ApiError(
                422,
                "validation_failed",
                "original_start needs recurring_parent_id",
                "set both or neither",
            )
        owner_id = await _check_owner(caller, s, body.owner_id)
        type_key = body.type
    await _check_type(caller, s, type_key)
    for name in DRAFT_FIELDS:
        if name in sent or parent_series is None:
            fields[name] = getattr(body, name)
    if "attendees" in sent or parent_series is None:
        fields["attendees"] = _attendees(body.attendees)
    values = _validate(fields, parent_series)
    try:
        row = await activities.create(
            s,
            caller.tenant_id,
            type_key=type_key,
            owner_id=owner_id,
            values=values,
            recurring_parent_id=body.recurring_parent_id,
        )
        await s.commit()
    except AlreadyExists as exc:
        raise ApiError(
            409,
            "exception_exists",
            "this occurrence already has an exception",
            "PATCH the existing exception",
        ) from exc
    _changed(request, caller.tenant_id, row.owner_id)
    response.headers["Location"] = f"/api/v1/activities/{row.id}"
    response.headers.update(_etag(row))
    return activity_out(row)


@router.get("/activities/{activity_id}", response_model=ActivityOut)
async def get_activity(
    activity_id: str, caller: Caller, s: Session, response: Response
) -> ActivityOut:
    """One activity; a deleted one is returned as a tombstone (deleted_at set)."""
    row = await _load(caller, s, activity_id)
    response.headers.update(_etag(row))
    return activity_out(row, read_only=(await _read_only(s, [row])).get(row.id))


@router.patch("/activities/{activity_id}", response_model=ActivityOut)
async def patch_activity(
    activity_id: str,
    body: ActivityPatch,
    caller: Caller,
    s: Session,
    response: Response,
    request: Request,
    if_match: str | None = IF_MATCH,
) -> ActivityOut:
    """Change the fields sent. With If-Match, only if the activity is still at that version."""
    row = await _load(caller, s, activity_id)
    if row.deleted_at is not None:
        raise _gone(row)
    _may_edit(caller, row)
    await _writable(s, row)
    sent = body.model_fields_set
    for name in (
        "subject",
        "start",
        "end",
        "time_zone",
        "visibility",
        "transparency",
        "status",
        "type",
        "attendees",
    ):
        if name in sent and getattr(body, name) is None:
            raise ApiError(
                422,
                "validation_failed",
                f"{name} cannot be null",
                "send a value or leave it out",
                [FieldProblem(field=name, code="null", message="must not be null")],
            )
    fields = _stored_fields(row)
    for name in DRAFT_FIELDS:
        if name in sent:
            fields[name] = getattr(body, name)
    if ({"start", "end"} & sent) and "all_day" not in sent:
        fields["all_day"] = None  # infer from the new values
    if "attendees" in sent and body.attendees is not None:
        fields["attendees"] = _attendees(body.attendees)
    parent_series = None
    if row.recurring_parent_id is not None:
        parent = await activities.get(s, caller.tenant_id, row.recurring_parent_id)
        if parent is not None:
            parent_series = activities.series(parent)
            fields["recurrence"] = None
            original = row.original_start_local
            fields["original_start"] = original.date() if parent.all_day and original else original
    type_key = None
    if "type" in sent and body.type is not None:
        await _check_type(caller, s, body.type)
        type_key = body.type
    owner_id = None
    if "owner_id" in sent and body.owner_id is not None and body.owner_id != row.owner_id:
        if not caller.is_admin:
            raise ApiError(
                403,
                "not_allowed",
                "only an admin can hand an activity to another user",
                "use an admin key",
            )
        owner_id = await _check_owner(caller, s, body.owner_id)
    values = _validate(fields, parent_series)
    previous_owner = row.owner_id
    try:
        await activities.update(
            s,
            row,
            values,
            type_key=type_key,
            owner_id=owner_id,
            expected_version=_if_match(if_match),
        )
        await s.commit()
    except VersionMismatch as exc:
        raise ApiError(
            412,
            "version_mismatch",
            f"the activity changed meanwhile (now version {exc.current})",
            "GET it again, reapply your change and send the new version in If-Match",
        ) from exc
    except Deleted as exc:
        raise _gone(row) from exc
    _changed(request, caller.tenant_id, *{previous_owner, row.owner_id})
    response.headers.update(_etag(row))
    return activity_out(row)


@router.delete("/activities/{activity_id}", status_code=204)
async def delete_activity(
    activity_id: str,
    caller: Caller,
    s: Session,
    request: Request,
    if_match: str | None = IF_MATCH,
) -> Response:
    """Soft delete: the activity becomes a tombstone and a `deleted` change is recorded;
    deleting a series deletes its exceptions. Deleting an exception cancels its occurrence (a
    cancelled exception takes its place, as deleting an instance does in Google); deleting a
    cancelled exception or a tombstone again is a no-op."""
    row = await _load(caller, s, activity_id)
    _may_edit(caller, row)
    if row.deleted_at is not None:
        return Response(status_code=204)
    await _writable(s, row)
    try:
        if row.recurring_parent_id is not None:
            # as in Google: deleting an occurrence cancels it (it does not reappear at the
            # series' time); deleting a cancellation changes nothing
            await activities.delete_exception(s, row, expected_version=_if_match(if_match))
        else:
            await activities.delete(s, row, expected_version=_if_match(if_match))
        await s.commit()
        _changed(request, caller.tenant_id, row.owner_id)
    except VersionMismatch as exc:
        raise ApiError(
            412,
            "version_mismatch",
            f"the activity changed meanwhile (now version {exc.current})",
            "GET it again and send the current version in If-Match",
        ) from exc
    except Deleted:
        pass
    return Response(status_code=204)
