"""What the calendar resources share: per-method scopes as the discovery document lists them,
role ranks, Google's error shapes, resolving `primary`, and the calendar a caller may see.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import errors
from ..auth import CALENDARS_READ, CALENDARS_WRITE
from ..errors import GoogleError
from ..state import SCOPE_CALENDAR, Calendar, CalendarListEntry, World

_A = "https://www.googleapis.com/auth/"
# per-method scopes, as the discovery document lists them
LIST_READ = CALENDARS_READ | {f"{_A}calendar.calendarlist", f"{_A}calendar.calendarlist.readonly"}
LIST_WRITE = CALENDARS_WRITE | {f"{_A}calendar.calendarlist"}
CAL_READ = CALENDARS_READ | {f"{_A}calendar.calendars", f"{_A}calendar.calendars.readonly"}
CAL_WRITE = CALENDARS_WRITE | {f"{_A}calendar.calendars"}
ACL_READ = frozenset({SCOPE_CALENDAR, f"{_A}calendar.acls", f"{_A}calendar.acls.readonly"})
ACL_WRITE = frozenset({SCOPE_CALENDAR, f"{_A}calendar.acls"})
COLORS_READ = CALENDARS_READ | LIST_READ | {f"{_A}calendar.events.owned"}

ROLE_RANK = {
    "freeBusyReader": 0,
    "reader": 1,
    "writerWithoutPrivateAccess": 2,
    "writer": 3,
    "owner": 4,
}
CONFERENCE = {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}


def bad(message: str) -> GoogleError:
    return GoogleError(400, "invalid", message)


def bad_param(name: str, value: str) -> GoogleError:
    return errors.invalid(f"Invalid value '{value}' for parameter {name}.", name)


def json_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    headers = {"ETag": body["etag"]} if "etag" in body else {}
    return JSONResponse(body, status_code=status, headers=headers)


def flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise bad_param(name, raw)
    return raw.lower() == "true"


def resolve(world: World, email: str, calendar_id: str) -> str:
    if calendar_id == "primary":
        account = world.accounts.get(email)
        if account is not None:
            return account.primary_calendar_id
    return calendar_id


def is_someones_primary(world: World, cal: Calendar) -> bool:
    owner = world.accounts.get(cal.owner)
    return owner is not None and owner.primary_calendar_id == cal.id


def visible_calendar(world: World, email: str, calendar_id: str) -> tuple[Calendar, str]:
    cal = world.calendars.get(calendar_id)
    role = world.role(email, calendar_id)
    if cal is None or role is None:
        raise errors.not_found()
    return cal, role


def touch(world: World, email: str, entry: CalendarListEntry) -> None:
    """A calendar list entry changed: a new sequence (what sync tokens compare) and listeners told."""
    entry.seq = world.next_seq()
    world.changed("calendarList", email)
