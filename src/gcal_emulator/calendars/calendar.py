"""calendars.insert/get/update/patch/delete: a calendar's own metadata (summary, zone, ...);
deleting one takes it off every calendar list it is on.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..auth import authenticate, json_body, world_of
from ..errors import GoogleError
from ..state import Calendar, World
from .common import (
    CAL_READ,
    CAL_WRITE,
    CONFERENCE,
    bad,
    is_someones_primary,
    json_response,
    resolve,
    touch,
    visible_calendar,
)


def cannot_delete_primary() -> GoogleError:
    return GoogleError(400, "cannotDeletePrimaryCalendar", "Cannot delete primary calendar.")


def _calendar_json(world: World, cal: Calendar) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "calendar#calendar",
        "etag": world.etag(cal.etag_seq),
        "id": cal.id,
        "summary": cal.summary,
    }
    if cal.description:
        out["description"] = cal.description
    if cal.location:
        out["location"] = cal.location
    out["timeZone"] = cal.time_zone
    if not is_someones_primary(world, cal):
        out["dataOwner"] = cal.owner
    out["conferenceProperties"] = CONFERENCE
    return out


def _time_zone(value: Any) -> str:
    zone = str(value)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise bad(f"Invalid time zone definition: {zone}") from exc
    return zone


def _apply_calendar_fields(cal: Calendar, data: dict[str, Any], *, replace: bool) -> None:
    if data.get("summary") is not None:
        cal.summary = str(data["summary"])
    elif replace:
        raise errors.required("Missing title.")
    for field in ("description", "location"):
        if field in data or replace:
            setattr(cal, field, str(data.get(field) or ""))
    if data.get("timeZone"):
        cal.time_zone = _time_zone(data["timeZone"])


async def calendars_insert(request: Request) -> Response:
    tok = authenticate(request, CAL_WRITE)
    world = world_of(request)
    data = await json_body(request)
    summary = data.get("summary")
    if not summary:
        raise errors.required("Missing title.")
    with world.lock:
        account = world.accounts.get(tok.email)
        default_zone = "UTC"
        if account is not None and account.primary_calendar_id in world.calendars:
            default_zone = world.calendars[account.primary_calendar_id].time_zone
        zone = _time_zone(data["timeZone"]) if data.get("timeZone") else default_zone
        cal = world.add_calendar(
            tok.email, str(summary), time_zone=zone, description=str(data.get("description") or "")
        )
        cal.location = str(data.get("location") or "")
        world.changed("calendarList", tok.email)
        return json_response(_calendar_json(world, cal))


async def calendar(request: Request) -> Response:
    world = world_of(request)
    method = request.method
    tok = authenticate(request, CAL_READ if method == "GET" else CAL_WRITE)
    data = await json_body(request) if method in ("PUT", "PATCH") else {}
    email = tok.email
    with world.lock:
        cal_id = resolve(world, email, request.path_params["calendarId"])
        cal, role = visible_calendar(world, email, cal_id)
        if method == "GET":
            return json_response(_calendar_json(world, cal))
        if role != "owner":
            raise errors.forbidden()
        if method == "DELETE":
            if is_someones_primary(world, cal):
                raise cannot_delete_primary()
            cal.deleted = True
            for person, entries in world.calendar_list.items():
                entry = entries.get(cal.id)
                if entry is not None and not entry.deleted:
                    entry.deleted = True
                    touch(world, person, entry)
            world.changed("events", cal.id)
            return Response(status_code=204)
        _apply_calendar_fields(cal, data, replace=method == "PUT")
        cal.etag_seq = world.next_seq()
        return json_response(_calendar_json(world, cal))
