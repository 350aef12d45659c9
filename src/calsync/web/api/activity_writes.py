"""/api/v1/activities, writing: create, patch and delete, with If-Match.

A request body becomes a draft (the stored fields with the sent ones over them), which
domain/activity.py validates; the store then writes it and records the change. An entry Google
manages is refused (409 read_only), since the next sync would undo the write."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Request, Response

from calsync.domain import activity as rules
from calsync.domain import recurrence as rec
from calsync.store import activities
from calsync.store.errors import AlreadyExists, Deleted, VersionMismatch
from calsync.store.models import Activity, ActivityAttendee

from ..deps import Caller, Principal, Session
from ..errors import ApiError, FieldProblem
from ..schemas import ActivityIn, ActivityOut, ActivityPatch, AttendeeIn
from .activities import activity_out, etag, in_range, load, read_only_states

router = APIRouter(tags=["activities"])

IF_MATCH = Header(
    default=None,
    alias="If-Match",
    description="The version you edited (from GET's ETag); 412 when it is no longer current",
)


async def _writable(session: Session, row: Activity) -> None:
    """409 read_only when Google manages the activity (or its series): the owner may not change
    it through calsync, and neither may an admin, since the next sync would undo the write."""
    state = (await read_only_states(session, [row])).get(row.id)
    if state is not None:
        raise ApiError(409, "read_only", f"{state.message}.", state.remedy)


def _changed(request: Request, tenant_id: uuid.UUID, *owners: uuid.UUID) -> None:
    """A committed write: queue a (debounced) push to each owner's export calendar."""
    changes = getattr(request.app.state, "changes", None)
    if changes is not None:
        for owner in owners:
            changes.touch(tenant_id, owner)


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


def _unknown_type(key: str) -> ApiError:
    return ApiError(
        422,
        "unknown_type",
        f"no activity type {key!r}",
        "use a key from GET /api/v1/activity-types",
        [FieldProblem(field="type", code="unknown_type", message=f"no activity type {key!r}")],
    )


def _unknown_owner() -> ApiError:
    return ApiError(
        422,
        "unknown_owner",
        "owner_id is not a user of this company",
        "use an id from GET /api/v1/users",
        [FieldProblem(field="owner_id", code="unknown", message="no such user")],
    )


def _owner_named(caller: Principal, owner_id: uuid.UUID | None) -> uuid.UUID | None:
    """What needs no database of the owner a create names: a user key acts for its own user
    (None: nothing to look up), an admin key must name one (returned, to be looked up)."""
    if not caller.is_admin:
        assert caller.user is not None
        if owner_id is not None and owner_id != caller.user.id:
            raise ApiError(
                403, "not_allowed", "a user key can only act for its own user", "omit owner_id"
            )
        return None
    if owner_id is None:
        raise ApiError(
            422,
            "owner_required",
            "owner_id is required with an admin key",
            "set owner_id to one of GET /api/v1/users",
            [FieldProblem(field="owner_id", code="required", message="required")],
        )
    return owner_id


async def _check_references(
    caller: Principal,
    session: Session,
    type_key: str | None,
    owner_id: uuid.UUID | None,
    *,
    owner_first: bool = True,
) -> None:
    """The activity type `type_key` and the user `owner_id` (each when not None) are the
    tenant's: one statement for both."""
    found = await activities.references(session, caller.tenant_id, type_key, owner_id)
    problems = [
        (owner_id is not None and not found.owner_known, _unknown_owner),
        (type_key is not None and not found.type_known, lambda: _unknown_type(type_key or "")),
    ]
    for failed, error in problems if owner_first else problems[::-1]:
        if failed:
            raise error()


def _own_user(caller: Principal) -> uuid.UUID:
    assert caller.user is not None
    return caller.user.id


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


def _gone(row: Activity) -> ApiError:
    return ApiError(
        410, "deleted", f"activity {row.id} is deleted", "create a new activity instead"
    )


# routes


@router.post("/activities", response_model=ActivityOut, status_code=201)
async def create_activity(
    body: ActivityIn, caller: Caller, session: Session, response: Response, request: Request
) -> ActivityOut:
    """Create an activity, a recurring master (recurrence), or an exception of a master
    (recurring_parent_id + original_start; status=cancelled removes that occurrence)."""
    sent = body.model_fields_set
    parent_series: rec.Series | None = None
    fields: dict[str, Any] = {}
    if body.recurring_parent_id is not None:
        parent = await activities.get(
            session, caller.tenant_id, body.recurring_parent_id, caller.viewer
        )
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
        await _writable(session, parent)
        owner_id, type_key = parent.owner_id, body.type if "type" in sent else parent.type_key
        named = None  # the series' owner
        parent_series = activities.series(parent)
        fields = _stored_fields(parent)
        fields["recurrence"] = None
        if body.original_start is not None:
            in_range(body.original_start, "original_start")
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
        named = _owner_named(caller, body.owner_id)
        owner_id = named if named is not None else _own_user(caller)
        type_key = body.type
    await _check_references(caller, session, type_key, named)
    for name in DRAFT_FIELDS:
        if name in sent or parent_series is None:
            fields[name] = getattr(body, name)
    if "attendees" in sent or parent_series is None:
        fields["attendees"] = _attendees(body.attendees)
    values = _validate(fields, parent_series)
    try:
        row = await activities.create(
            session,
            caller.tenant_id,
            type_key=type_key,
            owner_id=owner_id,
            values=values,
            recurring_parent_id=body.recurring_parent_id,
        )
        await session.commit()
    except AlreadyExists as exc:
        raise ApiError(
            409,
            "exception_exists",
            "this occurrence already has an exception",
            "PATCH the existing exception",
        ) from exc
    _changed(request, caller.tenant_id, row.owner_id)
    response.headers["Location"] = f"/api/v1/activities/{row.id}"
    response.headers.update(etag(row))
    return activity_out(row)


@router.patch("/activities/{activity_id}", response_model=ActivityOut)
async def patch_activity(
    activity_id: str,
    body: ActivityPatch,
    caller: Caller,
    session: Session,
    response: Response,
    request: Request,
    if_match: str | None = IF_MATCH,
) -> ActivityOut:
    """Change the fields sent. With If-Match, only if the activity is still at that version."""
    row = await load(caller, session, activity_id)
    if row.deleted_at is not None:
        raise _gone(row)
    _may_edit(caller, row)
    await _writable(session, row)
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
        parent = await activities.get(session, caller.tenant_id, row.recurring_parent_id)
        if parent is not None:
            parent_series = activities.series(parent)
            fields["recurrence"] = None
            original = row.original_start_local
            fields["original_start"] = original.date() if parent.all_day and original else original
    type_key = body.type if "type" in sent and body.type is not None else None
    owner_id = None
    if "owner_id" in sent and body.owner_id is not None and body.owner_id != row.owner_id:
        if not caller.is_admin:
            if type_key is not None:  # an unknown type is said first
                await _check_references(caller, session, type_key, None)
            raise ApiError(
                403,
                "not_allowed",
                "only an admin can hand an activity to another user",
                "use an admin key",
            )
        owner_id = body.owner_id
    if type_key is not None or owner_id is not None:
        await _check_references(caller, session, type_key, owner_id, owner_first=False)
    values = _validate(fields, parent_series)
    previous_owner = row.owner_id
    try:
        await activities.update(
            session,
            row,
            values,
            type_key=type_key,
            owner_id=owner_id,
            expected_version=_if_match(if_match),
        )
        await session.commit()
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
    response.headers.update(etag(row))
    return activity_out(row)


@router.delete("/activities/{activity_id}", status_code=204)
async def delete_activity(
    activity_id: str,
    caller: Caller,
    session: Session,
    request: Request,
    if_match: str | None = IF_MATCH,
) -> Response:
    """Soft delete: the activity becomes a tombstone and a `deleted` change is recorded;
    deleting a series deletes its exceptions. Deleting an exception cancels its occurrence (a
    cancelled exception takes its place, as deleting an instance does in Google); deleting a
    cancelled exception or a tombstone again is a no-op."""
    row = await load(caller, session, activity_id)
    _may_edit(caller, row)
    if row.deleted_at is not None:
        return Response(status_code=204)
    await _writable(session, row)
    try:
        if row.recurring_parent_id is not None:
            # as in Google: deleting an occurrence cancels it (it does not reappear at the
            # series' time); deleting a cancellation changes nothing
            await activities.delete_exception(session, row, expected_version=_if_match(if_match))
        else:
            await activities.delete(session, row, expected_version=_if_match(if_match))
        await session.commit()
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
