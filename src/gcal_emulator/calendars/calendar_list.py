"""calendarList: the calendars a person has on their list, with their own colours, reminders
and visibility, as Google serves them.

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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import errors
from ..auth import authenticate, json_body, world_of
from ..errors import GoogleError
from ..state import CalendarListEntry, World
from .colors import CALENDAR_COLORS
from .common import (
    CONFERENCE,
    LIST_READ,
    LIST_WRITE,
    ROLE_RANK,
    bad,
    bad_param,
    flag,
    is_someones_primary,
    json_response,
    resolve,
    touch,
    visible_calendar,
)

DEFAULT_PAGE = 100
MAX_PAGE = 250
MAX_REMINDERS = 5
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
PRIMARY_REMINDERS = [{"method": "popup", "minutes": 10}]
PRIMARY_NOTIFICATIONS = {
    "notifications": [
        {"type": "eventCreation", "method": "email"},
        {"type": "eventChange", "method": "email"},
        {"type": "eventCancellation", "method": "email"},
        {"type": "eventResponse", "method": "email"},
    ]
}


def cannot_change_primary_subscription() -> GoogleError:
    return GoogleError(
        403, "cannotChangeOwnPrimarySubscription", "Cannot change own primary subscription."
    )


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _unb64(token: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


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
    if not is_someones_primary(world, cal):
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


def _live(world: World, email: str, entry: CalendarListEntry) -> bool:
    return not entry.deleted and world.role(email, entry.calendar_id) is not None


def _entry_role_ok(world: World, email: str, entry: CalendarListEntry, min_rank: int) -> bool:
    role = world.role(email, entry.calendar_id)
    return role is not None and ROLE_RANK.get(role, 0) >= min_rank


async def calendar_list(request: Request) -> Response:
    tok = authenticate(request, LIST_READ)
    world = world_of(request)
    q = request.query_params
    email = tok.email
    raw_max = q.get("maxResults")
    try:
        max_results = int(raw_max) if raw_max is not None else DEFAULT_PAGE
    except ValueError as exc:
        raise bad_param("maxResults", str(raw_max)) from exc
    if max_results < 1:
        raise bad_param("maxResults", str(raw_max))
    max_results = min(max_results, MAX_PAGE)
    min_role = q.get("minAccessRole")
    if min_role is not None and min_role not in ROLE_RANK:
        raise bad_param("minAccessRole", min_role)
    show_deleted = flag(request, "showDeleted")
    show_hidden = flag(request, "showHidden")
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
                raise bad_param("pageToken", page_token)
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
            raise bad(f"Invalid value for colorId: {color}")
        entry.color_id = color
        entry.background_color = entry.foreground_color = None
    if rgb:
        for name in ("backgroundColor", "foregroundColor"):
            if given(name):
                value = str(data[name])
                if not HEX_COLOR.match(value):
                    raise bad(f"Invalid value for {name}: {value}")
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
        raise bad("Invalid value for defaultReminders.")
    if len(value) > MAX_REMINDERS:
        raise bad("Too many default reminders.")
    out = []
    for item in value:
        if not isinstance(item, dict) or item.get("method") not in ("email", "popup"):
            raise bad("Invalid reminder method.")
        minutes = item.get("minutes")
        if not isinstance(minutes, int) or not 0 <= minutes <= 40320:
            raise bad("Invalid reminder minutes.")
        out.append({"method": item["method"], "minutes": minutes})
    return out


def _notifications(value: Any) -> dict[str, Any]:
    kinds = {"eventCreation", "eventChange", "eventCancellation", "eventResponse", "agenda"}
    items = value.get("notifications") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise bad("Invalid value for notificationSettings.")
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") not in kinds:
            raise bad("Invalid notification type.")
        if item.get("method", "email") != "email":
            raise bad("Invalid notification method.")
        out.append({"type": item["type"], "method": "email"})
    return {"notifications": out}


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
    rgb = flag(request, "colorRgbFormat") is True
    email = tok.email
    with world.lock:
        cal_id = resolve(world, email, request.path_params["calendarId"])
        entry = _own_entry(world, email, cal_id)
        if method == "GET":
            return json_response(_entry_json(world, email, entry))
        if method == "DELETE":
            account = world.accounts.get(email)
            if account is not None and account.primary_calendar_id == cal_id:
                raise cannot_change_primary_subscription()
            entry.deleted = True
            touch(world, email, entry)
            return Response(status_code=204)
        _apply_entry_fields(entry, data, rgb=rgb, replace=method == "PUT")
        touch(world, email, entry)
        return json_response(_entry_json(world, email, entry))


async def calendar_list_insert(request: Request) -> Response:
    tok = authenticate(request, LIST_WRITE)
    world = world_of(request)
    data = await json_body(request)
    rgb = flag(request, "colorRgbFormat") is True
    email = tok.email
    with world.lock:
        cal_id = str(data.get("id") or "")
        if not cal_id:
            raise errors.required("Required")
        cal_id = resolve(world, email, cal_id)
        visible_calendar(world, email, cal_id)
        world.list_calendar_for(email, cal_id)
        entry = world.calendar_list[email][cal_id]
        _apply_entry_fields(entry, data, rgb=rgb, replace=False)
        touch(world, email, entry)
        return json_response(_entry_json(world, email, entry))
