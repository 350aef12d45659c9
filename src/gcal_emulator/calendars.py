"""Calendar v3 calendarList, calendars, acl and colors, as Google serves them.

A person's calendar list is a set of `CalendarListEntry` rows in the world; every change stamps
the row with the world sequence, which is what sync tokens compare against. Pages are cut by key
(primary first, then calendar id), so entries added or removed while a client pages never make
it skip or repeat one.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import errors
from .auth import CALENDARS_READ, CALENDARS_WRITE, authenticate, json_body, world_of
from .errors import GoogleError
from .state import SCOPE_CALENDAR, Calendar, CalendarListEntry, World

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
DEFAULT_PAGE = 100
MAX_PAGE = 250
MAX_REMINDERS = 5
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
CONFERENCE = {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}
PRIMARY_REMINDERS = [{"method": "popup", "minutes": 10}]
PRIMARY_NOTIFICATIONS = {
    "notifications": [
        {"type": "eventCreation", "method": "email"},
        {"type": "eventChange", "method": "email"},
        {"type": "eventCancellation", "method": "email"},
        {"type": "eventResponse", "method": "email"},
    ]
}

# Google's fixed palettes (colors.get); calendar entries show the background with black text
CALENDAR_COLORS = {
    "1": "#ac725e", "2": "#d06b64", "3": "#f83a22", "4": "#fa573c", "5": "#ff7537",
    "6": "#ffad46", "7": "#42d692", "8": "#16a765", "9": "#7bd148", "10": "#b3dc6c",
    "11": "#fbe983", "12": "#fad165", "13": "#92e1c0", "14": "#9fe1e7", "15": "#9fc6e7",
    "16": "#4986e7", "17": "#9a9cff", "18": "#b99aff", "19": "#c2c2c2", "20": "#cabdbf",
    "21": "#cca6ac", "22": "#f691b2", "23": "#cd74e6", "24": "#a47ae2",
}  # fmt: skip
EVENT_COLORS = {
    "1": "#a4bdfc", "2": "#7ae7bf", "3": "#dbadff", "4": "#ff887c", "5": "#fbd75b",
    "6": "#ffb878", "7": "#46d6db", "8": "#e1e1e1", "9": "#5484ed", "10": "#51b749",
    "11": "#dc2127",
}  # fmt: skip


# -- errors Google gives for these resources ---------------------------------------------------


def _bad(message: str) -> GoogleError:
    return GoogleError(400, "invalid", message)


def _bad_param(name: str, value: str) -> GoogleError:
    return errors.invalid(f"Invalid value '{value}' for parameter {name}.", name)


def cannot_change_own_acl() -> GoogleError:
    return GoogleError(403, "cannotChangeOwnAcl", "Cannot change your own access level.")


def cannot_change_primary_subscription() -> GoogleError:
    return GoogleError(
        403, "cannotChangeOwnPrimarySubscription", "Cannot change own primary subscription."
    )


def cannot_delete_primary() -> GoogleError:
    return GoogleError(400, "cannotDeletePrimaryCalendar", "Cannot delete primary calendar.")


# -- shared helpers --------------------------------------------------------------------------


def _json_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    headers = {"ETag": body["etag"]} if "etag" in body else {}
    return JSONResponse(body, status_code=status, headers=headers)


def _flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise _bad_param(name, raw)
    return raw.lower() == "true"


def _resolve(world: World, email: str, calendar_id: str) -> str:
    if calendar_id == "primary":
        account = world.accounts.get(email)
        if account is not None:
            return account.primary_calendar_id
    return calendar_id


def _is_someones_primary(world: World, cal: Calendar) -> bool:
    owner = world.accounts.get(cal.owner)
    return owner is not None and owner.primary_calendar_id == cal.id


def _visible_calendar(world: World, email: str, calendar_id: str) -> tuple[Calendar, str]:
    cal = world.calendars.get(calendar_id)
    role = world.role(email, calendar_id)
    if cal is None or role is None:
        raise errors.not_found()
    return cal, role


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _unb64(token: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# -- calendarList ---------------------------------------------------------------------------


def _entry_json(world: World, email: str, entry: CalendarListEntry) -> dict[str, Any]:
    cal = world.calendars.get(entry.calendar_id)
    role = world.role(email, entry.calendar_id)
    if entry.deleted or cal is None or role is None:
        return {
            "kind": "calendar#calendarListEntry",
            "etag": world.etag(entry.seq),
            "id": entry.calendar_id,
            "deleted": True,
        }
    account = world.accounts.get(email)
    primary = account is not None and account.primary_calendar_id == cal.id
    out: dict[str, Any] = {
        "kind": "calendar#calendarListEntry",
        "etag": world.etag(max(entry.seq, cal.etag_seq)),
        "id": cal.id,
        "summary": cal.summary,
    }
    if cal.description:
        out["description"] = cal.description
    if cal.location:
        out["location"] = cal.location
    out["timeZone"] = cal.time_zone
    if not _is_someones_primary(world, cal):
        out["dataOwner"] = cal.owner
    if entry.summary_override:
        out["summaryOverride"] = entry.summary_override
    out["colorId"] = entry.color_id
    out["backgroundColor"] = entry.background_color or CALENDAR_COLORS.get(
        entry.color_id, "#9fe1e7"
    )
    out["foregroundColor"] = entry.foreground_color or "#000000"
    if entry.hidden:
        out["hidden"] = True
    if entry.selected:
        out["selected"] = True
    out["accessRole"] = role
    reminders = entry.default_reminders
    out["defaultReminders"] = (
        reminders if reminders is not None else (list(PRIMARY_REMINDERS) if primary else [])
    )
    if primary or entry.notification_settings is not None:
        out["notificationSettings"] = entry.notification_settings or PRIMARY_NOTIFICATIONS
    if primary:
        out["primary"] = True
    out["conferenceProperties"] = CONFERENCE
    return out


def _sort_key(world: World, email: str, calendar_id: str) -> list[Any]:
    account = world.accounts.get(email)
    primary = account is not None and account.primary_calendar_id == calendar_id
    return [0 if primary else 1, calendar_id]


def _entry_role_ok(world: World, email: str, entry: CalendarListEntry, min_rank: int) -> bool:
    role = world.role(email, entry.calendar_id)
    return role is not None and ROLE_RANK.get(role, 0) >= min_rank


def _live(world: World, email: str, entry: CalendarListEntry) -> bool:
    return not entry.deleted and world.role(email, entry.calendar_id) is not None


async def calendar_list(request: Request) -> Response:
    tok = authenticate(request, LIST_READ)
    world = world_of(request)
    q = request.query_params
    email = tok.email
    raw_max = q.get("maxResults")
    try:
        max_results = int(raw_max) if raw_max is not None else DEFAULT_PAGE
    except ValueError as exc:
        raise _bad_param("maxResults", str(raw_max)) from exc
    if max_results < 1:
        raise _bad_param("maxResults", str(raw_max))
    max_results = min(max_results, MAX_PAGE)
    min_role = q.get("minAccessRole")
    if min_role is not None and min_role not in ROLE_RANK:
        raise _bad_param("minAccessRole", min_role)
    show_deleted = _flag(request, "showDeleted")
    show_hidden = _flag(request, "showHidden")
    sync_token = q.get("syncToken")
    page_token = q.get("pageToken")
    with world.lock:
        since: int | None = None
        if sync_token is not None:
            if min_role is not None:
                raise errors.invalid(
                    "The minAccessRole parameter cannot be used together with syncToken.",
                    "minAccessRole",
                )
            if show_deleted is False or show_hidden is False:
                raise errors.invalid(
                    "showDeleted and showHidden cannot be false when a syncToken is given.",
                    "syncToken",
                )
            decoded = _unb64(sync_token)
            floor = world.calendar_list_floor.get(email, 0)
            if (
                decoded is None
                or decoded.get("kind") != "cl"
                or decoded.get("e") != email
                or not isinstance(decoded.get("s"), int)
                or decoded["s"] < floor
                or decoded["s"] > world.seq
            ):
                raise errors.full_sync_required()
            since = decoded["s"]
        fingerprint = [sync_token, min_role, show_deleted, show_hidden]
        after: list[Any] | None = None
        snapshot = world.seq
        if page_token is not None:
            page = _unb64(page_token)
            if page is None or page.get("f") != fingerprint or not isinstance(page.get("s"), int):
                raise _bad_param("pageToken", page_token)
            after, snapshot = page.get("a"), page["s"]
        min_rank = ROLE_RANK[min_role] if min_role else 0
        chosen: list[tuple[list[Any], CalendarListEntry]] = []
        for entry in world.calendar_list.get(email, {}).values():
            if since is not None:
                if entry.seq <= since:
                    continue
            else:
                live = _live(world, email, entry)
                if not live and not show_deleted:
                    continue
                if live and entry.hidden and not show_hidden:
                    continue
                if live and not _entry_role_ok(world, email, entry, min_rank):
                    continue
            key = _sort_key(world, email, entry.calendar_id)
            if after is not None and key <= after:
                continue
            chosen.append((key, entry))
        chosen.sort(key=lambda pair: pair[0])
        page_items = chosen[:max_results]
        body: dict[str, Any] = {"kind": "calendar#calendarList", "etag": world.etag(snapshot)}
        if len(chosen) > max_results:
            body["nextPageToken"] = _b64({"a": page_items[-1][0], "s": snapshot, "f": fingerprint})
        else:
            body["nextSyncToken"] = _b64({"kind": "cl", "e": email, "s": snapshot})
        body["items"] = [_entry_json(world, email, entry) for _, entry in page_items]
    return JSONResponse(body)


def _apply_entry_fields(
    entry: CalendarListEntry, data: dict[str, Any], *, rgb: bool, replace: bool
) -> None:
    """Write the writable fields of a CalendarListEntry; `replace` (update) resets the rest."""

    def given(name: str) -> bool:
        return name in data and data[name] is not None

    if given("colorId"):
        color = str(data["colorId"])
        if color not in CALENDAR_COLORS:
            raise _bad(f"Invalid value for colorId: {color}")
        entry.color_id = color
        entry.background_color = entry.foreground_color = None
    if rgb:
        for name in ("backgroundColor", "foregroundColor"):
            if given(name):
                value = str(data[name])
                if not HEX_COLOR.match(value):
                    raise _bad(f"Invalid value for {name}: {value}")
                setattr(entry, "background_color" if name[0] == "b" else "foreground_color", value)
        if given("backgroundColor") and not given("foregroundColor"):
            entry.foreground_color = entry.foreground_color or "#000000"
    elif replace:
        entry.background_color = entry.foreground_color = None
    if given("hidden"):
        entry.hidden = bool(data["hidden"])
    elif replace:
        entry.hidden = False
    if given("selected"):
        entry.selected = bool(data["selected"])
    elif replace:
        entry.selected = False
    if "summaryOverride" in data or replace:
        override = data.get("summaryOverride")
        entry.summary_override = str(override) if override else None
    if given("defaultReminders"):
        entry.default_reminders = _reminders(data["defaultReminders"])
    elif replace:
        entry.default_reminders = []
    if given("notificationSettings"):
        entry.notification_settings = _notifications(data["notificationSettings"])


def _reminders(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _bad("Invalid value for defaultReminders.")
    if len(value) > MAX_REMINDERS:
        raise _bad("Too many default reminders.")
    out = []
    for item in value:
        if not isinstance(item, dict) or item.get("method") not in ("email", "popup"):
            raise _bad("Invalid reminder method.")
        minutes = item.get("minutes")
        if not isinstance(minutes, int) or not 0 <= minutes <= 40320:
            raise _bad("Invalid reminder minutes.")
        out.append({"method": item["method"], "minutes": minutes})
    return out


def _notifications(value: Any) -> dict[str, Any]:
    kinds = {"eventCreation", "eventChange", "eventCancellation", "eventResponse", "agenda"}
    items = value.get("notifications") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise _bad("Invalid value for notificationSettings.")
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") not in kinds:
            raise _bad("Invalid notification type.")
        if item.get("method", "email") != "email":
            raise _bad("Invalid notification method.")
        out.append({"type": item["type"], "method": "email"})
    return {"notifications": out}


def _touch(world: World, email: str, entry: CalendarListEntry) -> None:
    entry.seq = world.next_seq()
    world.changed("calendarList", email)


def _own_entry(world: World, email: str, calendar_id: str) -> CalendarListEntry:
    entry = world.calendar_list.get(email, {}).get(calendar_id)
    if entry is None or not _live(world, email, entry):
        raise errors.not_found()
    return entry


async def calendar_list_entry(request: Request) -> Response:
    world = world_of(request)
    method = request.method
    tok = authenticate(request, LIST_READ if method == "GET" else LIST_WRITE)
    data = await json_body(request) if method in ("PUT", "PATCH") else {}
    rgb = _flag(request, "colorRgbFormat") is True
    email = tok.email
    with world.lock:
        cal_id = _resolve(world, email, request.path_params["calendarId"])
        entry = _own_entry(world, email, cal_id)
        if method == "GET":
            return _json_response(_entry_json(world, email, entry))
        if method == "DELETE":
            account = world.accounts.get(email)
            if account is not None and account.primary_calendar_id == cal_id:
                raise cannot_change_primary_subscription()
            entry.deleted = True
            _touch(world, email, entry)
            return Response(status_code=204)
        _apply_entry_fields(entry, data, rgb=rgb, replace=method == "PUT")
        _touch(world, email, entry)
        return _json_response(_entry_json(world, email, entry))


async def calendar_list_insert(request: Request) -> Response:
    tok = authenticate(request, LIST_WRITE)
    world = world_of(request)
    data = await json_body(request)
    rgb = _flag(request, "colorRgbFormat") is True
    email = tok.email
    with world.lock:
        cal_id = str(data.get("id") or "")
        if not cal_id:
            raise errors.required("Required")
        cal_id = _resolve(world, email, cal_id)
        _visible_calendar(world, email, cal_id)
        world.list_calendar_for(email, cal_id)
        entry = world.calendar_list[email][cal_id]
        _apply_entry_fields(entry, data, rgb=rgb, replace=False)
        _touch(world, email, entry)
        return _json_response(_entry_json(world, email, entry))


# -- calendars ------------------------------------------------------------------------------


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
    if not _is_someones_primary(world, cal):
        out["dataOwner"] = cal.owner
    out["conferenceProperties"] = CONFERENCE
    return out


def _time_zone(value: Any) -> str:
    zone = str(value)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _bad(f"Invalid time zone definition: {zone}") from exc
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
        return _json_response(_calendar_json(world, cal))


async def calendar(request: Request) -> Response:
    world = world_of(request)
    method = request.method
    tok = authenticate(request, CAL_READ if method == "GET" else CAL_WRITE)
    data = await json_body(request) if method in ("PUT", "PATCH") else {}
    email = tok.email
    with world.lock:
        cal_id = _resolve(world, email, request.path_params["calendarId"])
        cal, role = _visible_calendar(world, email, cal_id)
        if method == "GET":
            return _json_response(_calendar_json(world, cal))
        if role != "owner":
            raise errors.forbidden()
        if method == "DELETE":
            if _is_someones_primary(world, cal):
                raise cannot_delete_primary()
            cal.deleted = True
            for person, entries in world.calendar_list.items():
                entry = entries.get(cal.id)
                if entry is not None and not entry.deleted:
                    entry.deleted = True
                    _touch(world, person, entry)
            world.changed("events", cal.id)
            return Response(status_code=204)
        _apply_calendar_fields(cal, data, replace=method == "PUT")
        cal.etag_seq = world.next_seq()
        return _json_response(_calendar_json(world, cal))


# -- acl ------------------------------------------------------------------------------------


def _rule_json(world: World, cal: Calendar, email: str, role: str) -> dict[str, Any]:
    return {
        "kind": "calendar#aclRule",
        "etag": world.etag(cal.etag_seq),
        "id": f"user:{email}",
        "scope": {"type": "user", "value": email},
        "role": role,
    }


def _acl_calendar(world: World, email: str, request: Request, write: bool) -> Calendar:
    cal_id = _resolve(world, email, request.path_params["calendarId"])
    cal, role = _visible_calendar(world, email, cal_id)
    needed = ROLE_RANK["owner"] if write else ROLE_RANK["writer"]  # writers may read the ACL
    if ROLE_RANK.get(role, 0) < needed:
        raise errors.forbidden()
    return cal


def _set_rule(world: World, cal: Calendar, caller: str, email: str, role: str) -> None:
    if email == caller:
        raise cannot_change_own_acl()
    if role == "none":
        cal.acl.pop(email, None)
        entry = world.calendar_list.get(email, {}).get(cal.id)
        if entry is not None and not entry.deleted:
            entry.deleted = True
            _touch(world, email, entry)
        return
    previous = cal.acl.get(email)
    cal.acl[email] = role
    if email in world.accounts:
        before = world.calendar_list.get(email, {}).get(cal.id)
        world.list_calendar_for(email, cal.id)
        if before is None or before.deleted:
            world.changed("calendarList", email)
        elif previous != role:  # the entry's accessRole changed: a list change, as in Google
            _touch(world, email, before)


def _role(value: Any) -> str:
    if value not in (*ROLE_RANK, "none"):
        raise _bad(f"Invalid role: {value}")
    return str(value)


async def acl_collection(request: Request) -> Response:
    write = request.method == "POST"
    caller = authenticate(request, ACL_WRITE if write else ACL_READ).email
    data = await json_body(request) if write else {}
    world = world_of(request)
    with world.lock:
        cal = _acl_calendar(world, caller, request, write)
        if not write:
            items = [_rule_json(world, cal, e, r) for e, r in sorted(cal.acl.items())]
            return _json_response(
                {"kind": "calendar#acl", "etag": world.etag(cal.etag_seq), "items": items}
            )
        scope = data.get("scope")
        if not isinstance(scope, dict) or not scope.get("type"):
            raise errors.required("Missing scope type.")
        if scope["type"] != "user":
            raise _bad("The emulator supports ACL rules of scope type 'user' only.")
        email = str(scope.get("value") or "").lower()
        if "@" not in email:
            raise errors.required("Missing scope value.")
        if data.get("role") is None:
            raise errors.required("Missing role.")
        role = _role(data["role"])
        _set_rule(world, cal, caller, email, role)
        cal.etag_seq = world.next_seq()
        return _json_response(_rule_json(world, cal, email, role))


async def acl_rule(request: Request) -> Response:
    method = request.method
    write = method != "GET"
    caller = authenticate(request, ACL_WRITE if write else ACL_READ).email
    data = await json_body(request) if method in ("PUT", "PATCH") else {}
    world = world_of(request)
    with world.lock:
        cal = _acl_calendar(world, caller, request, write)
        rule_id = request.path_params["ruleId"]
        kind, _, value = rule_id.partition(":")
        email = value.lower()
        if kind != "user" or email not in cal.acl:
            raise errors.not_found()
        if method == "GET":
            return _json_response(_rule_json(world, cal, email, cal.acl[email]))
        if method == "DELETE":
            _set_rule(world, cal, caller, email, "none")
            cal.etag_seq = world.next_seq()
            return Response(status_code=204)
        if data.get("role") is None:
            if method == "PUT":
                raise errors.required("Missing role.")
            return _json_response(_rule_json(world, cal, email, cal.acl[email]))
        role = _role(data["role"])
        _set_rule(world, cal, caller, email, role)
        cal.etag_seq = world.next_seq()
        return _json_response(_rule_json(world, cal, email, role))


# -- colors ---------------------------------------------------------------------------------


async def colors(request: Request) -> Response:
    authenticate(request, COLORS_READ)
    return JSONResponse(
        {
            "kind": "calendar#colors",
            "updated": "2012-02-14T00:00:00.000Z",
            "calendar": {
                k: {"background": v, "foreground": "#1d1d1d"} for k, v in CALENDAR_COLORS.items()
            },
            "event": {
                k: {"background": v, "foreground": "#1d1d1d"} for k, v in EVENT_COLORS.items()
            },
        }
    )


_V3 = "/calendar/v3"
routes: list[BaseRoute] = [
    Route(f"{_V3}/users/me/calendarList", calendar_list, methods=["GET"]),
    Route(f"{_V3}/users/me/calendarList", calendar_list_insert, methods=["POST"]),
    Route(
        f"{_V3}/users/me/calendarList/{{calendarId}}",
        calendar_list_entry,
        methods=["GET", "PUT", "PATCH", "DELETE"],
    ),
    Route(f"{_V3}/calendars", calendars_insert, methods=["POST"]),
    Route(f"{_V3}/calendars/{{calendarId}}", calendar, methods=["GET", "PUT", "PATCH", "DELETE"]),
    Route(f"{_V3}/calendars/{{calendarId}}/acl", acl_collection, methods=["GET", "POST"]),
    Route(
        f"{_V3}/calendars/{{calendarId}}/acl/{{ruleId}}",
        acl_rule,
        methods=["GET", "PUT", "PATCH", "DELETE"],
    ),
    Route(f"{_V3}/colors", colors, methods=["GET"]),
]
