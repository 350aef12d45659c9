"""Calendar v3 events: list (sync tokens, paging, expansion), get, insert, update, patch, delete,
instances, move, import and quickAdd, with Google's validation, error bodies, ETags and the
copies that attendees with an emulator account see in their own primary calendar.

Events are stored in Google's wire format (`StoredEvent.data`); keys starting with "_" are
bookkeeping and never leave the emulator:
- `_gone` on a recurring master: instance ids (or the master's own id) that a `singleEvents=true`
  client may hold but that no longer exist after a change of start/end/recurrence, with the
  sequence of that change, so incremental syncs can report them cancelled.
- `_orphan` on an exception whose original start stopped being an occurrence of its master.

Choices where Google documents no number: `updatedMin` older than 28 days answers 410
updatedMinTooLongAgo; deleted events are kept for ever (Google purges them eventually).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import errors, recurrence
from .auth import EVENTS_READ, EVENTS_WRITE, authenticate, json_body, world_of
from .clock import rfc3339
from .state import AccessToken, Calendar, StoredEvent, World

BASE = "/calendar/v3/calendars/{calendarId}/events"

DEFAULT_PAGE = 250
MAX_PAGE = 2500
UPDATED_MIN_WINDOW = timedelta(days=28)

_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
EVENT_TYPES = frozenset(
    {"default", "birthday", "focusTime", "outOfOffice", "workingLocation", "fromGmail"}
)
SYNC_FORBIDDEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
# a change to one of these is "significant": the event's sequence goes up, as in iCalendar
SIGNIFICANT = ("start", "end", "recurrence", "summary", "location")
TIMING = ("start", "end", "recurrence")
# what an attendee may change on their own copy
PERSONAL = ("reminders", "colorId", "transparency")

_STRINGS = ("summary", "description", "location", "colorId", "hangoutLink")
_BOOLS = (
    "endTimeUnspecified",
    "guestsCanModify",
    "guestsCanInviteOthers",
    "guestsCanSeeOtherGuests",
    "anyoneCanAddSelf",
    "privateCopy",
    "attendeesOmitted",
)
_OBJECTS = (
    "conferenceData",
    "source",
    "gadget",
    "focusTimeProperties",
    "outOfOfficeProperties",
    "workingLocationProperties",
    "birthdayProperties",
)
_ATTENDEE_KEYS = (
    "id",
    "email",
    "displayName",
    "organizer",
    "self",
    "resource",
    "optional",
    "responseStatus",
    "comment",
    "additionalGuests",
)
_RESPONSES = frozenset({"needsAction", "declined", "tentative", "accepted"})
# fields the server owns: kept from the stored event on update/patch
_SERVER = (
    "kind",
    "etag",
    "id",
    "htmlLink",
    "created",
    "updated",
    "creator",
    "organizer",
    "iCalUID",
    "sequence",
    "recurringEventId",
    "originalStartTime",
    "locked",
)
_PRIVATE_PREFIX = "_"


# -- small helpers ----------------------------------------------------------------------------


def _public(data: dict[str, Any]) -> dict[str, Any]:
    """The event without bookkeeping keys; the same dict when it has none (callers copy before
    they change anything)."""
    if "_gone" in data or "_orphan" in data:
        return {k: v for k, v in data.items() if not k.startswith(_PRIVATE_PREFIX)}
    return data


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _valid_zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or name.startswith(("/", ".")):
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        return None


def _fmt(dt: datetime) -> str:
    """RFC 3339 as Google writes event times: seconds, offset, `Z` for UTC."""
    dt = dt.replace(microsecond=0)
    if dt.utcoffset() == timedelta(0):
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.isoformat()


def _parse_dt(raw: str) -> datetime | None:
    try:
        return datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except (ValueError, AttributeError):
        return None


def _parse_date(raw: Any) -> date | None:
    if not isinstance(raw, str) or len(raw) != 10:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _encode(obj: Any) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> Any:
    try:
        pad = "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(token + pad))
    except (ValueError, TypeError):
        return None


def _new_id() -> str:
    """26 base32hex characters, like the ids Google generates."""
    raw = base64.b32hexencode(secrets.token_bytes(16)).decode().lower().rstrip("=")
    return raw[:26]


def _html_link(event_id: str, calendar_id: str) -> str:
    eid = base64.urlsafe_b64encode(f"{event_id} {calendar_id}".encode()).decode().rstrip("=")
    return f"https://www.google.com/calendar/event?eid={eid}"


def _domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


# -- request parsing --------------------------------------------------------------------------


class _Params:
    """Query parameters with Google's validation."""

    def __init__(self, request: Request) -> None:
        self.q = request.query_params
        alt = self.q.get("alt")
        if alt is not None and alt != "json":
            raise errors.invalid(f"Invalid value for: alt ({alt})", "alt")

    def has(self, name: str) -> bool:
        return name in self.q

    def get_str(self, name: str) -> str | None:
        value = self.q.get(name)
        return value if value not in (None, "") else None

    def get_list(self, name: str) -> list[str]:
        return [v for v in self.q.getlist(name) if v != ""]

    def get_bool(self, name: str, default: bool = False) -> bool:
        raw = self.q.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() == "true":
            return True
        if raw.lower() == "false":
            return False
        raise errors.invalid(f"Invalid boolean value: '{raw}'.", name)

    def get_int(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.q.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise errors.invalid(f"Invalid value '{raw}'. Values must be integers.", name) from exc
        if value < lo:
            raise errors.invalid(
                f"Invalid value '{raw}'. Values must be within the range: [{lo}, {hi}]", name
            )
        return min(value, hi)

    def get_time(self, name: str) -> datetime | None:
        raw = self.get_str(name)
        if raw is None:
            return None
        dt = _parse_dt(raw)
        if dt is None or dt.tzinfo is None or "T" not in raw.upper():
            raise errors.bad_request()
        return dt.astimezone(UTC)

    def get_zone(self) -> ZoneInfo | None:
        raw = self.get_str("timeZone")
        if raw is None:
            return None
        zone = _valid_zone(raw)
        if zone is None:
            raise errors.invalid(f"Invalid time zone: {raw}", "timeZone")
        return zone

    def send_updates(self) -> str:
        raw = self.get_str("sendUpdates")
        if raw is None:
            return "all" if self.get_bool("sendNotifications") else "none"
        if raw not in ("all", "externalOnly", "none"):
            raise errors.invalid(f"Invalid value for: sendUpdates ({raw})", "sendUpdates")
        return raw


def _check_if_match(request: Request, etag: str) -> None:
    header = request.headers.get("if-match")
    if header is None:
        return
    wanted = [h.strip().removeprefix("W/") for h in header.split(",")]
    if "*" not in wanted and etag not in wanted:
        raise errors.condition_not_met()


# -- partial responses ------------------------------------------------------------------------
# A small parser for the `fields` parameter: `a,b/c,items(id,start(dateTime))`. It builds a tree
# of selected keys (None = the whole value) and keeps only those keys, descending into lists.

Tree = dict[str, "Tree | None"]


def _parse_fields(spec: str) -> Tree:
    pos = 0

    def parse_list(until: str | None) -> Tree:
        nonlocal pos
        tree: Tree = {}
        while pos < len(spec):
            if until and spec[pos] == until:
                pos += 1
                return tree
            start = pos
            while pos < len(spec) and spec[pos] not in ",()":
                pos += 1
            path = [p.strip() for p in spec[start:pos].split("/") if p.strip()]
            sub: Tree | None = None
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = parse_list(")")
            if path:
                node = tree
                for part in path[:-1]:
                    nxt = node.get(part)
                    if nxt is None:
                        nxt = {}
                        node[part] = nxt
                    node = nxt
                _merge_tree(node, path[-1], sub)
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
        if until:
            raise errors.invalid("Invalid field selection", "fields")
        return tree

    return parse_list(None)


def _merge_tree(node: Tree, key: str, sub: Tree | None) -> None:
    if key in node and node[key] is not None and sub is not None:
        existing = node[key]
        assert existing is not None
        for k, v in sub.items():
            _merge_tree(existing, k, v)
    elif key in node and (node[key] is None or sub is None):
        node[key] = None
    else:
        node[key] = sub


def _select(obj: Any, tree: Tree | None) -> Any:
    if tree is None:
        return obj
    if isinstance(obj, list):
        return [_select(x, tree) for x in obj]
    if isinstance(obj, dict):
        return {k: _select(obj[k], sub) for k, sub in tree.items() if k in obj}
    return obj


def _respond(
    request: Request, body: dict[str, Any], status: int = 200, etag: str | None = None
) -> Response:
    spec = request.query_params.get("fields")
    if spec:
        body = _select(body, _parse_fields(spec))
    headers = {"ETag": etag} if etag else None
    return JSONResponse(body, status_code=status, headers=headers)


# what a reader sees of a private or confidential event: when, not what
_READER_FIELDS = (
    "kind",
    "etag",
    "id",
    "status",
    "htmlLink",
    "created",
    "updated",
    "start",
    "end",
    "endTimeUnspecified",
    "recurrence",
    "recurringEventId",
    "originalStartTime",
    "transparency",
    "visibility",
    "iCalUID",
    "sequence",
    "eventType",
)


def _view(data: dict[str, Any], role: str, zone: ZoneInfo | None) -> dict[str, Any]:
    """An event as this reader sees it: private details hidden from readers, times written in
    the zone the `timeZone` parameter asked for."""
    out = data
    if role == "reader" and data.get("visibility") in ("private", "confidential"):
        out = {k: data[k] for k in _READER_FIELDS if k in data}
    if zone is not None:
        out = dict(out)
        for key in ("start", "end", "originalStartTime"):
            t = out.get(key)
            if isinstance(t, dict) and "dateTime" in t:
                dt = _parse_dt(t["dateTime"])
                if dt is not None and dt.tzinfo is not None:
                    out[key] = {**t, "dateTime": _fmt(dt.astimezone(zone))}
    return out


# -- access -----------------------------------------------------------------------------------


@dataclass
class _Ctx:
    world: World
    tok: AccessToken
    cal: Calendar
    role: str

    @property
    def store(self) -> dict[str, StoredEvent]:
        return self.world.events.setdefault(self.cal.id, {})

    @property
    def tz(self) -> ZoneInfo:
        return _zone(self.cal.time_zone)


def _calendar_for(world: World, tok: AccessToken, raw_id: str, write: bool) -> tuple[Calendar, str]:
    cal_id = raw_id
    if raw_id == "primary":
        account = world.accounts.get(tok.email)
        cal_id = account.primary_calendar_id if account else tok.email
    cal = world.calendars.get(cal_id)
    role = world.role(tok.email, cal_id) if cal else None
    if cal is None or cal.deleted or role in (None, "freeBusyReader"):
        raise errors.not_found()
    assert role is not None
    if write and role not in ("owner", "writer"):
        raise errors.required_access_level()
    return cal, role


def _ctx(request: Request, write: bool) -> _Ctx:
    world = world_of(request)
    with world.lock:
        tok = authenticate(request, EVENTS_WRITE if write else EVENTS_READ)
        cal, role = _calendar_for(world, tok, request.path_params["calendarId"], write)
    return _Ctx(world, tok, cal, role)


# -- event times ------------------------------------------------------------------------------

Start = recurrence.Start


def _start_value(t: dict[str, Any]) -> Start:
    """The start/end of a stored (normalised) EventDateTime: a date or an aware datetime."""
    if "date" in t:
        d = _parse_date(t["date"])
        assert d is not None
        return d
    dt = _parse_dt(t["dateTime"])
    assert dt is not None and dt.tzinfo is not None
    return dt


def _instant(value: Start, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time(), tz).astimezone(UTC)


def _norm_time(raw: Any, which: str, cal_tz: ZoneInfo) -> dict[str, Any]:
    if raw is None:
        raise errors.required(f"Missing {which} time.")
    if not isinstance(raw, dict):
        raise errors.invalid(f"Invalid {which} time.")
    if raw.get("date") is not None:
        d = _parse_date(raw["date"])
        if d is None:
            raise errors.invalid(f"Invalid {which} time.")
        out: dict[str, Any] = {"date": d.isoformat()}
        return out
    if raw.get("dateTime") is None:
        raise errors.required(f"Missing {which} time.")
    dt = _parse_dt(str(raw["dateTime"]))
    if dt is None:
        raise errors.invalid(f"Invalid {which} time.")
    tz_name = raw.get("timeZone")
    zone = None
    if tz_name is not None:
        zone = _valid_zone(tz_name)
        if zone is None:
            raise errors.invalid(f"Invalid time zone definition for {which} time.")
    if dt.tzinfo is None:
        if zone is None:
            raise errors.required(f"Missing time zone definition for {which} time.")
        dt = recurrence.localize(dt, zone)
    out = {"dateTime": _fmt(dt.astimezone(zone or cal_tz))}
    if tz_name is not None:
        out["timeZone"] = tz_name
    return out


def _span(data: dict[str, Any], tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = _instant(_start_value(data["start"]), tz)
    end = _instant(_start_value(data["end"]), tz) if "end" in data else start
    return start, end


# -- validation -------------------------------------------------------------------------------


def _clean_attendees(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise errors.invalid("Invalid attendees value.")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise errors.invalid("Invalid attendee.")
        email = item.get("email")
        if not isinstance(email, str) or not email.strip():
            raise errors.required("Missing attendee email.")
        if "@" not in email:
            raise errors.invalid("Invalid attendee email.")
        if email.lower() in seen:
            continue
        seen.add(email.lower())
        entry = {k: item[k] for k in _ATTENDEE_KEYS if item.get(k) is not None}
        status = entry.get("responseStatus", "needsAction")
        if status not in _RESPONSES:
            raise errors.invalid("Invalid attendee response status.")
        entry["responseStatus"] = status
        if "additionalGuests" in entry and not isinstance(entry["additionalGuests"], int):
            raise errors.invalid("Invalid attendee additionalGuests.")
        for flag in ("organizer", "self", "resource", "optional"):
            if flag in entry and not isinstance(entry[flag], bool):
                raise errors.invalid(f"Invalid attendee {flag}.")
        out.append(entry)
    return out


def _clean_ext(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise errors.invalid("Invalid extendedProperties value.")
    out: dict[str, Any] = {}
    for scope in ("private", "shared"):
        props = raw.get(scope)
        if props is None:
            continue
        if not isinstance(props, dict):
            raise errors.invalid(f"Invalid extendedProperties.{scope} value.")
        clean = {}
        for k, v in props.items():
            if v is None:
                continue
            if not isinstance(v, str | int | float | bool):
                raise errors.invalid(f"Invalid extendedProperties.{scope} value.")
            clean[str(k)] = v if isinstance(v, str) else json.dumps(v)
        out[scope] = clean
    return out


def _clean_reminders(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise errors.invalid("Invalid reminders value.")
    use_default = raw.get("useDefault", False)
    if not isinstance(use_default, bool):
        raise errors.invalid("Invalid reminders.useDefault value.")
    out: dict[str, Any] = {"useDefault": use_default}
    overrides = raw.get("overrides")
    if overrides is not None:
        if not isinstance(overrides, list) or len(overrides) > 5:
            raise errors.invalid("Invalid reminders.overrides value.")
        if use_default and overrides:
            raise errors.bad_request(
                "Cannot specify both default reminders and overrides at the same time."
            )
        clean = []
        for o in overrides:
            if (
                not isinstance(o, dict)
                or o.get("method") not in ("email", "popup")
                or not isinstance(o.get("minutes"), int)
                or not 0 <= o["minutes"] <= 40320
            ):
                raise errors.invalid("Invalid reminder override.")
            clean.append({"method": o["method"], "minutes": o["minutes"]})
        out["overrides"] = clean
    return out


def _build(body: dict[str, Any], cal: Calendar, *, instance: bool = False) -> dict[str, Any]:
    """The client-settable part of an event, validated and normalised as Google stores it."""
    tz = _zone(cal.time_zone)
    out: dict[str, Any] = {}
    for keys, kind in ((_STRINGS, str), (_BOOLS, bool), (_OBJECTS, dict)):
        for key in keys:
            value = body.get(key)
            if value is not None:
                if not isinstance(value, kind):
                    raise errors.invalid(f"Invalid value for: {key}")
                out[key] = copy.deepcopy(value) if kind is dict else value
    if body.get("attachments") is not None:
        if not isinstance(body["attachments"], list):
            raise errors.invalid("Invalid value for: attachments")
        out["attachments"] = copy.deepcopy(body["attachments"])

    status = body.get("status") or "confirmed"
    if status not in ("confirmed", "tentative", "cancelled"):
        raise errors.invalid("Invalid value for: status")
    out["status"] = status
    for key, allowed in (
        ("visibility", ("default", "public", "private", "confidential")),
        ("transparency", ("opaque", "transparent")),
    ):
        value = body.get(key)
        if value is not None:
            if value not in allowed:
                raise errors.invalid(f"Invalid value for: {key}")
            out[key] = value
    event_type = body.get("eventType") or "default"
    if event_type not in EVENT_TYPES:
        raise errors.invalid(f"Invalid event type: {event_type}")
    out["eventType"] = event_type

    start = _norm_time(body.get("start"), "start", tz)
    end = _norm_time(body.get("end"), "end", tz)
    if ("date" in start) != ("date" in end):
        raise errors.bad_request(
            "Start and end times must either both be date or both be dateTime."
        )
    s_val, e_val = _start_value(start), _start_value(end)
    if isinstance(s_val, datetime) and isinstance(e_val, datetime):
        if e_val < s_val:
            raise errors.time_range_empty("end")
    elif isinstance(s_val, date) and isinstance(e_val, date) and e_val <= s_val:
        raise errors.time_range_empty("end")
    out["start"], out["end"] = start, end

    rec = body.get("recurrence")
    if rec is not None and not instance:
        if not isinstance(rec, list) or not all(isinstance(x, str) for x in rec):
            raise errors.invalid("Invalid recurrence rule.")
        rec = [x.strip() for x in rec if x.strip()]
        if rec:
            if "dateTime" in start and "timeZone" not in start:
                raise errors.required("Missing time zone definition for start time.")
            try:
                recurrence.validate(rec, s_val, start.get("timeZone"))
            except ValueError as exc:
                raise errors.invalid("Invalid recurrence rule.") from exc
            out["recurrence"] = rec

    if body.get("attendees") is not None:
        attendees = _clean_attendees(body["attendees"])
        if attendees:
            out["attendees"] = attendees
    if body.get("extendedProperties") is not None:
        ext = _clean_ext(body["extendedProperties"])
        if ext:
            out["extendedProperties"] = ext
    out["reminders"] = (
        _clean_reminders(body["reminders"])
        if body.get("reminders") is not None
        else {"useDefault": True}
    )
    return out


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Patch semantics: given keys replace, objects merge, arrays and start/end replace whole,
    null clears."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in ("start", "end", "originalStartTime")
        ):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- recurrence -------------------------------------------------------------------------------


def _series(data: dict[str, Any]) -> recurrence.Series | None:
    rec = data.get("recurrence")
    if not rec:
        return None
    start = data["start"]
    return recurrence.series(tuple(rec), _start_value(start), start.get("timeZone"))


def _orig_time(master: dict[str, Any], orig: Start) -> dict[str, Any]:
    if isinstance(orig, datetime):
        out: dict[str, Any] = {"dateTime": _fmt(orig)}
        if "timeZone" in master["start"]:
            out["timeZone"] = master["start"]["timeZone"]
        return out
    return {"date": orig.isoformat()}


def _instance_id(master_id: str, orig: Start) -> str:
    return f"{master_id}_{recurrence.instance_suffix(orig)}"


def _instance_times(master: dict[str, Any], orig: Start) -> tuple[dict[str, Any], dict[str, Any]]:
    m_start, m_end = _start_value(master["start"]), _start_value(master["end"])
    if not isinstance(orig, datetime):
        assert not isinstance(m_start, datetime) and not isinstance(m_end, datetime)
        return {"date": orig.isoformat()}, {"date": (orig + (m_end - m_start)).isoformat()}
    assert isinstance(m_start, datetime) and isinstance(m_end, datetime)
    zone = _zone(master["start"].get("timeZone", "UTC"))
    # wall-clock duration: a 09:00-10:00 meeting stays 09:00-10:00 across DST
    dur = m_end.astimezone(zone).replace(tzinfo=None) - m_start.astimezone(zone).replace(
        tzinfo=None
    )
    end_wall = orig.astimezone(zone).replace(tzinfo=None) + dur
    end = recurrence.localize(end_wall, zone)
    start_out: dict[str, Any] = {"dateTime": _fmt(orig.astimezone(zone))}
    if "timeZone" in master["start"]:
        start_out["timeZone"] = master["start"]["timeZone"]
    end_tz = master["end"].get("timeZone")
    end_out: dict[str, Any] = {"dateTime": _fmt(end.astimezone(_zone(end_tz) if end_tz else zone))}
    if end_tz:
        end_out["timeZone"] = end_tz
    return start_out, end_out


def _virtual(master: dict[str, Any], orig: Start, calendar_id: str) -> dict[str, Any]:
    data = {k: copy.deepcopy(v) for k, v in _public(master).items() if k != "recurrence"}
    iid = _instance_id(master["id"], orig)
    data["id"] = iid
    data["htmlLink"] = _html_link(iid, calendar_id)
    data["recurringEventId"] = master["id"]
    data["originalStartTime"] = _orig_time(master, orig)
    data["start"], data["end"] = _instance_times(master, orig)
    return data


def _occurrences(
    world: World, master: dict[str, Any], lo: datetime | None = None, hi: datetime | None = None
) -> list[Start]:
    series = _series(master)
    if series is None:
        return []
    cap = world.config.max_instances
    if lo is None and hi is None:
        return series.first(cap)
    s, e = _start_value(master["start"]), _start_value(master["end"])
    slack = (e - s) if isinstance(s, datetime) and isinstance(e, datetime) else timedelta(0)
    if isinstance(s, date) and not isinstance(s, datetime):
        assert isinstance(e, date)
        slack = timedelta(days=(e - s).days)
    return series.window(lo, hi, slack, cap)


def _single_ids(world: World, data: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The ids a singleEvents=true list shows for this event (instance ids for a series)."""
    if not data.get("recurrence"):
        return {data["id"]: None}
    return {_instance_id(data["id"], o): _orig_time(data, o) for o in _occurrences(world, data)}


@dataclass
class _Instance:
    orig: Start
    id: str
    data: dict[str, Any]
    seq: int
    updated_ts: float
    stored: bool


def _instances(
    world: World,
    cal_id: str,
    master: StoredEvent,
    lo: datetime | None = None,
    hi: datetime | None = None,
) -> list[_Instance]:
    store = world.events[cal_id]
    out = []
    for orig in _occurrences(world, master.data, lo, hi):
        iid = _instance_id(master.data["id"], orig)
        exc = store.get(iid)
        if exc is not None and not exc.data.get("_orphan"):
            out.append(_Instance(orig, iid, exc.data, exc.seq, exc.updated_ts, True))
        else:
            data = _virtual(master.data, orig, cal_id)
            out.append(_Instance(orig, iid, data, master.seq, master.updated_ts, False))
    return out


# -- storing ----------------------------------------------------------------------------------


def _commit(
    world: World, cal_id: str, data: dict[str, Any], prev: StoredEvent | None
) -> StoredEvent:
    """Store a new version: new sequence, etag and `updated`; push channels are told later."""
    seq = world.next_seq()
    now = world.clock.now()
    data["etag"] = world.etag(seq)
    data["updated"] = rfc3339(now)
    if prev is not None:
        prev.data = data
        prev.seq = seq
        prev.updated_ts = now
        return prev
    ev = StoredEvent(calendar_id=cal_id, data=data, seq=seq, created_seq=seq, updated_ts=now)
    world.events.setdefault(cal_id, {})[data["id"]] = ev
    world.used_event_ids.setdefault(cal_id, set()).add(data["id"])
    return ev


def _exceptions_of(world: World, cal_id: str, master_id: str) -> list[StoredEvent]:
    return [
        ev
        for ev in world.events.get(cal_id, {}).values()
        if ev.data.get("recurringEventId") == master_id
    ]


def _save(world: World, cal_id: str, data: dict[str, Any], prev: StoredEvent | None) -> StoredEvent:
    """Commit an event and keep its series consistent: cancelling a master cancels its
    exceptions; moving or re-ruling a series records the instance ids that disappeared."""
    old = copy.deepcopy(prev.data) if prev is not None else None
    if old is not None and "_gone" in old:
        data["_gone"] = old["_gone"]
    data.pop("_orphan", None)
    ev = _commit(world, cal_id, data, prev)
    if old is None or "recurringEventId" in data:
        return ev
    was_cancelled = old.get("status") == "cancelled"
    if data["status"] == "cancelled" and not was_cancelled:
        for exc in _exceptions_of(world, cal_id, data["id"]):
            if exc.data.get("status") != "cancelled":
                exc_data = copy.deepcopy(exc.data)
                exc_data["status"] = "cancelled"
                _commit(world, cal_id, exc_data, exc)
    if any(old.get(k) != data.get(k) for k in TIMING):
        old_ids = _single_ids(world, old)
        new_ids = _single_ids(world, data)
        gone: dict[str, Any] = dict(data.get("_gone", {}))
        for iid, ost in old_ids.items():
            if iid not in new_ids:
                gone[iid] = {"seq": ev.seq, "originalStartTime": ost}
        for iid in new_ids:
            gone.pop(iid, None)
        if gone:
            data["_gone"] = gone
        else:
            data.pop("_gone", None)
        for exc in _exceptions_of(world, cal_id, data["id"]):
            if exc.data["id"] not in new_ids and not exc.data.get("_orphan"):
                exc_data = copy.deepcopy(exc.data)
                exc_data["status"] = "cancelled"
                exc_data["_orphan"] = True
                _commit(world, cal_id, exc_data, exc)
    return ev


# -- locating an event or instance --------------------------------------------------------------


@dataclass
class _Target:
    data: dict[str, Any]  # public view
    stored: StoredEvent | None  # the stored event, or None for a virtual instance
    master: StoredEvent | None  # for instances


def _find(world: World, cal_id: str, event_id: str) -> _Target | None:
    store = world.events.get(cal_id, {})
    ev = store.get(event_id)
    if ev is not None and not ev.data.get("_orphan"):
        master = store.get(ev.data.get("recurringEventId", ""))
        return _Target(_public(ev.data), ev, master)
    mid, sep, suffix = event_id.rpartition("_")
    master = store.get(mid) if sep else None
    orig = recurrence.parse_suffix(suffix) if master is not None else None
    if master is not None and orig is not None:
        series = _series(master.data)
        m_start = _start_value(master.data["start"])
        if series is not None and isinstance(orig, datetime) == isinstance(m_start, datetime):
            if isinstance(orig, datetime):
                orig = orig.astimezone(_zone(master.data["start"].get("timeZone", "UTC")))
            if series.contains(orig):
                data = _virtual(master.data, orig, cal_id)
                if master.data["status"] == "cancelled":
                    data["status"] = "cancelled"
                return _Target(data, ev, master)
    if ev is not None:
        return _Target(_public(ev.data), ev, store.get(ev.data.get("recurringEventId", "")))
    return None


def _origin_calendar(world: World, cal_id: str, data: dict[str, Any]) -> str | None:
    """For an attendee's copy: the calendar of the organizer's event; None for own events."""
    org = (data.get("organizer") or {}).get("email")
    if not org or org == cal_id or org not in world.calendars:
        return None
    if _find(world, org, data["id"]) is None:
        return None
    return str(org)


# -- attendee copies and e-mails ----------------------------------------------------------------


def _own_entry(data: dict[str, Any], email: str) -> dict[str, Any] | None:
    for att in data.get("attendees", []):
        if str(att.get("email", "")).lower() == email:
            return att  # type: ignore[no-any-return]
    return None


def _copy_for(
    world: World,
    origin: dict[str, Any],
    account_email: str,
    cal_id: str,
    existing: dict[str, Any] | None,
) -> dict[str, Any]:
    data = {k: copy.deepcopy(v) for k, v in _public(origin).items() if k not in ("etag", "updated")}
    for role in ("organizer", "creator"):
        person = dict(data.get(role) or {})
        person.pop("self", None)
        if str(person.get("email", "")).lower() == account_email:
            person["self"] = True
        data[role] = person
    for att in data.get("attendees", []):
        att.pop("self", None)
        if str(att.get("email", "")).lower() == account_email:
            att["self"] = True
    data["htmlLink"] = _html_link(data["id"], cal_id)
    ext = data.pop("extendedProperties", {})
    mine = (existing or {}).get("extendedProperties", {}).get("private")
    new_ext = {k: v for k, v in (("shared", ext.get("shared")), ("private", mine)) if v}
    if new_ext:
        data["extendedProperties"] = new_ext
    for key in PERSONAL:
        data.pop(key, None)
        if existing is not None and key in existing:
            data[key] = copy.deepcopy(existing[key])
    data.setdefault("reminders", {"useDefault": True})
    own = _own_entry(data, account_email)
    if (
        existing is not None
        and existing.get("status") == "cancelled"
        and own is not None
        and own.get("responseStatus") == "declined"
    ):
        data["status"] = "cancelled"  # the attendee removed it from their calendar
    return data


def _attendee_accounts(world: World, data: dict[str, Any], origin_cal: str) -> dict[str, str]:
    """email -> primary calendar of attendees who have an emulator account."""
    out: dict[str, str] = {}
    if data.get("status") == "cancelled":
        return out
    for att in data.get("attendees", []):
        email = str(att.get("email", "")).lower()
        account = world.accounts.get(email)
        if account is not None and account.primary_calendar_id != origin_cal:
            out[email] = account.primary_calendar_id
    return out


def _sync_copies(
    world: World,
    origin_cal: str,
    event_id: str,
    touched: set[str],
    previous_origin: str | None = None,
) -> None:
    """Bring every attendee's copy of one event in line with the organizer's version."""
    origin = world.events.get(origin_cal, {}).get(event_id)
    if origin is None:
        return
    wanted = _attendee_accounts(world, origin.data, origin_cal)
    organizers = {origin_cal, previous_origin}
    for email, account in world.accounts.items():
        cal_id = account.primary_calendar_id
        if cal_id == origin_cal:
            continue
        existing = world.events.get(cal_id, {}).get(event_id)
        if existing is not None:
            org = (existing.data.get("organizer") or {}).get("email")
            if org not in organizers:
                continue  # an unrelated event that happens to share the id
        if email in wanted:
            data = _copy_for(world, origin.data, email, cal_id, existing.data if existing else None)
            if existing is not None:
                old = {
                    k: v for k, v in _public(existing.data).items() if k not in ("etag", "updated")
                }
                if old == data:
                    continue
            _save(world, cal_id, data, existing)
            touched.add(cal_id)
        elif existing is not None and existing.data.get("status") != "cancelled":
            data = copy.deepcopy(existing.data)
            data["status"] = "cancelled"
            _save(world, cal_id, data, existing)
            touched.add(cal_id)


def _recipients(data: dict[str, Any] | None) -> set[str]:
    if not data:
        return set()
    org = str((data.get("organizer") or {}).get("email", "")).lower()
    return {
        str(a["email"]).lower()
        for a in data.get("attendees", [])
        if str(a.get("email", "")).lower() != org and not a.get("resource")
    }


def _notify(
    world: World,
    cal: Calendar,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    send_updates: str,
) -> None:
    """Record the e-mails Google would send to guests for an organizer's change."""
    if send_updates == "none":
        return
    organizer = str((new.get("organizer") or {}).get("email") or cal.id).lower()
    # the organizer of a calendar's events is the person who owns it
    org_domain = _domain(cal.owner)
    before = _recipients(old) if old and old.get("status") != "cancelled" else set()
    after = _recipients(new) if new.get("status") != "cancelled" else set()
    plan = [(e, "invitation") for e in sorted(after - before)]
    plan += [(e, "update") for e in sorted(after & before)]
    plan += [(e, "cancellation") for e in sorted(before - after)]
    for email, kind in plan:
        if send_updates == "externalOnly" and _domain(email) == org_domain:
            continue
        world.record_email(email, organizer, cal.id, new["id"], kind, new.get("summary", ""))


def _changed(world: World, touched: Iterable[str]) -> None:
    for cal_id in sorted(set(touched)):
        world.changed("events", cal_id)


# -- list -------------------------------------------------------------------------------------


@dataclass
class _Item:
    key: tuple[float, float, str]
    data: dict[str, Any]
    minimal: bool = False

    def body(self) -> dict[str, Any]:
        """Built only for the page being answered: lists of 2500 stay cheap."""
        return _minimal(self.data) if self.minimal else _public(self.data)


def _minimal(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: data[k] for k in ("kind", "etag", "id", "status") if k in data}
    out["status"] = "cancelled"
    for k in ("recurringEventId", "originalStartTime"):
        if k in data:
            out[k] = data[k]
    return out


@dataclass
class _Query:
    single: bool
    show_deleted: bool
    order_by: str | None
    time_min: datetime | None
    time_max: datetime | None
    updated_min: datetime | None
    ical_uid: str | None
    private_props: list[tuple[str, str]]
    shared_props: list[tuple[str, str]]
    terms: list[str]
    event_types: set[str] | None
    since: int | None

    @property
    def filtered(self) -> bool:
        return bool(
            self.event_types is not None
            or self.ical_uid is not None
            or self.private_props
            or self.shared_props
            or self.terms
            or self.time_min is not None
            or self.time_max is not None
        )


def _props(values: list[str], name: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        k, sep, val = v.partition("=")
        if not sep:
            raise errors.invalid(f"Invalid value for: {name}", name)
        out.append((k, val))
    return out


def _matches(q: _Query, data: dict[str, Any], tz: ZoneInfo) -> bool:
    """Filters that apply to live (non-cancelled) entries of a full list."""
    if not q.filtered:
        return True
    if q.event_types is not None and data.get("eventType", "default") not in q.event_types:
        return False
    if q.ical_uid is not None and data.get("iCalUID") != q.ical_uid:
        return False
    ext = data.get("extendedProperties", {})
    for scope, wanted in (("private", q.private_props), ("shared", q.shared_props)):
        props = ext.get(scope, {})
        if any(props.get(k) != v for k, v in wanted):
            return False
    if q.terms:
        hay = " ".join(
            [str(data.get(k, "")) for k in ("summary", "description", "location")]
            + [
                f"{a.get('email', '')} {a.get('displayName', '')}"
                for a in data.get("attendees", [])
            ]
            + [str((data.get("organizer") or {}).get(k, "")) for k in ("email", "displayName")]
        ).lower()
        if not all(t in hay for t in q.terms):
            return False
    if q.time_min is not None or q.time_max is not None:
        if "start" not in data:
            return False
        start, end = _span(data, tz)
        if end == start:
            end = start + timedelta(microseconds=1)  # a zero-length event still occurs
        if q.time_min is not None and end <= q.time_min:
            return False
        if q.time_max is not None and start >= q.time_max:
            return False
    return True


def _updated_ok(q: _Query, updated_ts: float) -> bool:
    return q.updated_min is None or updated_ts >= q.updated_min.timestamp()


def _sort_key(
    q: _Query, data: dict[str, Any], tz: ZoneInfo, created: int, updated_ts: float
) -> tuple[float, float, str]:
    if q.order_by == "updated":
        return (updated_ts, 0.0, data["id"])
    if q.order_by is None and not q.single:
        return (float(created), 0.0, data["id"])
    t = data.get("start") or data.get("originalStartTime")
    start_ts = _instant(_start_value(t), tz).timestamp() if t else 0.0
    if q.order_by == "startTime":
        return (start_ts, 0.0, data["id"])
    return (float(created), start_ts, data["id"])


def _collect(world: World, cal: Calendar, q: _Query) -> list[_Item]:
    tz = _zone(cal.time_zone)
    store = world.events.get(cal.id, {})
    items: list[_Item] = []

    def add(data: dict[str, Any], created: int, updated_ts: float) -> None:
        minimal = data.get("status") == "cancelled" and not q.show_deleted
        items.append(_Item(_sort_key(q, data, tz, created, updated_ts), data, minimal))

    for ev in list(store.values()):
        d = ev.data
        cancelled = d.get("status") == "cancelled"
        master = store.get(d["recurringEventId"]) if "recurringEventId" in d else None

        if not q.single:
            if q.since is not None:
                if ev.seq > q.since and (cancelled or _matches(q, d, tz)):
                    add(d, ev.created_seq, ev.updated_ts)
                continue
            if not _updated_ok(q, ev.updated_ts):
                continue
            if cancelled:
                live_exception = master is not None and master.data.get("status") != "cancelled"
                if not (q.show_deleted or q.updated_min or live_exception):
                    continue
                if not _matches(q, d, tz):
                    continue
                add(d, ev.created_seq, ev.updated_ts)
                continue
            if d.get("recurrence"):
                if not _series_matches(world, cal.id, ev, q, tz):
                    continue
            elif not _matches(q, d, tz):
                continue
            add(d, ev.created_seq, ev.updated_ts)
            continue

        # singleEvents=true: masters become instances, exceptions are reached through them
        if master is not None:
            continue
        recurring = bool(d.get("recurrence"))
        if q.since is not None:
            if ev.seq > q.since:
                if recurring:
                    for inst in _instances(world, cal.id, ev):
                        idata = inst.data
                        if cancelled and idata.get("status") != "cancelled":
                            idata = {**idata, "status": "cancelled"}
                        if idata.get("status") == "cancelled" or _matches(q, idata, tz):
                            add(idata, ev.created_seq, inst.updated_ts)
                elif cancelled or _matches(q, d, tz):
                    add(d, ev.created_seq, ev.updated_ts)
                for iid, info in d.get("_gone", {}).items():
                    if info["seq"] > q.since:
                        stub: dict[str, Any] = {
                            "kind": "calendar#event",
                            "etag": d["etag"],
                            "id": iid,
                            "status": "cancelled",
                        }
                        if info.get("originalStartTime"):
                            stub["recurringEventId"] = d["id"]
                            stub["originalStartTime"] = info["originalStartTime"]
                        add(stub, ev.created_seq, ev.updated_ts)
            elif recurring:
                for exc in _exceptions_of(world, cal.id, d["id"]):
                    if exc.seq > q.since and not exc.data.get("_orphan"):
                        if exc.data.get("status") == "cancelled" or _matches(q, exc.data, tz):
                            add(exc.data, ev.created_seq, exc.updated_ts)
            continue

        if not recurring:
            if not _updated_ok(q, ev.updated_ts):
                continue
            if cancelled and not (q.show_deleted or q.updated_min):
                continue
            if _matches(q, d, tz):
                add(d, ev.created_seq, ev.updated_ts)
            continue
        if cancelled and not q.show_deleted and not q.updated_min:
            continue
        for inst in _instances(world, cal.id, ev, q.time_min, q.time_max):
            idata = inst.data
            if cancelled:
                idata = {**idata, "status": "cancelled"}
            if not _updated_ok(q, inst.updated_ts):
                continue
            if idata.get("status") == "cancelled" and not (q.show_deleted or q.updated_min):
                continue
            if _matches(q, idata, tz):
                add(idata, ev.created_seq, inst.updated_ts)
    return items


def _series_matches(world: World, cal_id: str, ev: StoredEvent, q: _Query, tz: ZoneInfo) -> bool:
    """A master is listed when its own fields match and any instance overlaps the window."""
    if q.time_min is None and q.time_max is None:
        return _matches(q, ev.data, tz)
    plain = _Query(**{**q.__dict__, "time_min": None, "time_max": None})
    if not _matches(plain, ev.data, tz):
        return False
    window = _Query(**{**q.__dict__, "terms": [], "ical_uid": None, "event_types": None})
    window.private_props, window.shared_props = [], []
    return any(
        _matches(window, inst.data, tz)
        for inst in _instances(world, cal_id, ev, q.time_min, q.time_max)
        if inst.data.get("status") != "cancelled"
    )


def _envelope(ctx: _Ctx, snapshot: int) -> dict[str, Any]:
    store = ctx.store
    last = max((ev.updated_ts for ev in store.values()), default=ctx.world.clock.now())
    out: dict[str, Any] = {
        "kind": "calendar#events",
        "etag": ctx.world.etag(snapshot),
        "summary": ctx.cal.summary,
    }
    if ctx.cal.description:
        out["description"] = ctx.cal.description
    out.update(
        {
            "updated": rfc3339(last),
            "timeZone": ctx.cal.time_zone,
            "accessRole": ctx.role,
            "defaultReminders": (
                [{"method": "popup", "minutes": 10}] if ctx.role in ("owner", "writer") else []
            ),
        }
    )
    return out


def _page(
    ctx: _Ctx,
    items: list[_Item],
    *,
    max_results: int,
    after: tuple[float, float, str] | None,
    token_state: dict[str, Any],
) -> tuple[list[dict[str, Any]], str | None]:
    items.sort(key=lambda i: i.key)
    if after is not None:
        items = [i for i in items if i.key > after]
    page = items[:max_results]
    next_token = None
    if len(items) > max_results:
        next_token = _encode({**token_state, "k": list(page[-1].key)})
    return [i.body() for i in page], next_token


def _sync_seq(world: World, cal: Calendar, token: str) -> int:
    data = _decode(token)
    if (
        not isinstance(data, dict)
        or data.get("c") != cal.id
        or not isinstance(data.get("s"), int)
        or data["s"] > world.seq
        or data["s"] < cal.sync_floor_seq
    ):
        raise errors.full_sync_required()
    return int(data["s"])


def _decode_page(world: World, cal: Calendar, token: str, mode: str) -> dict[str, Any]:
    data = _decode(token)
    if (
        not isinstance(data, dict)
        or data.get("c") != cal.id
        or data.get("m") != mode
        or not isinstance(data.get("s"), int)
        or not isinstance(data.get("k"), list)
        or len(data["k"]) != 3
    ):
        raise errors.invalid("Invalid page token value.", "pageToken")
    since = data.get("t")
    if since is not None and since < cal.sync_floor_seq:
        raise errors.full_sync_required()
    return data


async def list_events(request: Request) -> Response:
    ctx = _ctx(request, write=False)
    p = _Params(request)
    with ctx.world.lock:
        sync_token = p.get_str("syncToken")
        page_token = p.get_str("pageToken")
        if sync_token is not None:
            for name in SYNC_FORBIDDEN:
                if p.get_list(name):
                    raise errors.invalid(
                        f"The parameter {name} cannot be used together with syncToken.", name
                    )
        single = p.get_bool("singleEvents")
        order_by = p.get_str("orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise errors.invalid(f"Invalid value for: orderBy ({order_by})", "orderBy")
        if order_by == "startTime" and not single:
            raise errors.bad_request(
                "The requested ordering is not available for the particular query."
            )
        time_min, time_max = p.get_time("timeMin"), p.get_time("timeMax")
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise errors.time_range_empty()
        updated_min = p.get_time("updatedMin")
        if updated_min is not None:
            if ctx.world.clock.now_dt() - updated_min > UPDATED_MIN_WINDOW:
                raise errors.updated_min_too_long_ago()
        types = p.get_list("eventTypes")
        for t in types:
            if t not in EVENT_TYPES:
                raise errors.invalid(f"Invalid value for: eventTypes ({t})", "eventTypes")
        max_results = p.get_int("maxResults", DEFAULT_PAGE, 1, MAX_PAGE)
        mode = f"{int(single)}{order_by or ''}"

        world = ctx.world
        after = None
        if page_token is not None:
            state = _decode_page(world, ctx.cal, page_token, mode)
            snapshot, since, after = state["s"], state.get("t"), tuple(state["k"])
        else:
            snapshot = world.seq
            since = _sync_seq(world, ctx.cal, sync_token) if sync_token is not None else None
        q = _Query(
            single=single,
            show_deleted=p.get_bool("showDeleted"),
            order_by=order_by,
            time_min=time_min,
            time_max=time_max,
            updated_min=updated_min,
            ical_uid=p.get_str("iCalUID"),
            private_props=_props(p.get_list("privateExtendedProperty"), "privateExtendedProperty"),
            shared_props=_props(p.get_list("sharedExtendedProperty"), "sharedExtendedProperty"),
            terms=[t for t in (p.get_str("q") or "").lower().split() if t],
            event_types=set(types) if types else None,
            since=since,
        )
        items = _collect(world, ctx.cal, q)
        token_state = {"v": 1, "c": ctx.cal.id, "s": snapshot, "t": since, "m": mode}
        page, next_page = _page(
            ctx,
            items,
            max_results=max_results,
            after=after,  # type: ignore[arg-type]
            token_state=token_state,
        )
        body = _envelope(ctx, snapshot)
        if next_page is not None:
            body["nextPageToken"] = next_page
        else:
            # only the last page carries the sync token: the snapshot taken at the first page
            body["nextSyncToken"] = _encode({"v": 1, "c": ctx.cal.id, "s": snapshot})
        zone = p.get_zone()
        body["items"] = [_view(i, ctx.role, zone) for i in page]
    return _respond(request, body)


async def list_instances(request: Request) -> Response:
    ctx = _ctx(request, write=False)
    p = _Params(request)
    with ctx.world.lock:
        world = ctx.world
        event_id = request.path_params["eventId"]
        master = ctx.store.get(event_id)
        if master is None or master.data.get("_orphan"):
            raise errors.not_found()
        if master.data.get("status") == "cancelled":
            raise errors.deleted()
        time_min, time_max = p.get_time("timeMin"), p.get_time("timeMax")
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise errors.time_range_empty()
        show_deleted = p.get_bool("showDeleted")
        max_results = p.get_int("maxResults", DEFAULT_PAGE, 1, MAX_PAGE)
        original = p.get_str("originalStart")
        orig_at = _parse_dt(original) if original else None
        if original is not None and orig_at is None:
            raise errors.invalid("Invalid value for: originalStart", "originalStart")
        q = _Query(
            single=True,
            show_deleted=show_deleted,
            order_by=None,
            time_min=time_min,
            time_max=time_max,
            updated_min=None,
            ical_uid=None,
            private_props=[],
            shared_props=[],
            terms=[],
            event_types=None,
            since=None,
        )
        items: list[_Item] = []
        if master.data.get("recurrence"):
            for inst in _instances(world, ctx.cal.id, master, time_min, time_max):
                cancelled = inst.data.get("status") == "cancelled"
                if cancelled and not show_deleted:
                    continue
                if orig_at is not None:
                    o_at = _instant(inst.orig, ctx.tz)
                    want = orig_at if orig_at.tzinfo else orig_at.replace(tzinfo=ctx.tz)
                    if o_at != want.astimezone(UTC):
                        continue
                if not _matches(q, inst.data, ctx.tz):
                    continue
                body = _public(inst.data)
                items.append(_Item(_sort_key(q, inst.data, ctx.tz, 0, inst.updated_ts), body))
        after = None
        page_token = p.get_str("pageToken")
        mode = f"instances:{event_id}"
        snapshot = world.seq
        if page_token is not None:
            state = _decode_page(world, ctx.cal, page_token, mode)
            snapshot, after = state["s"], tuple(state["k"])
        page, next_page = _page(
            ctx,
            items,
            max_results=max_results,
            after=after,  # type: ignore[arg-type]
            token_state={"v": 1, "c": ctx.cal.id, "s": snapshot, "t": None, "m": mode},
        )
        body = _envelope(ctx, snapshot)
        if next_page is not None:
            body["nextPageToken"] = next_page
        zone = p.get_zone()
        body["items"] = [_view(i, ctx.role, zone) for i in page]
    return _respond(request, body)


# -- get --------------------------------------------------------------------------------------


async def get_event(request: Request) -> Response:
    ctx = _ctx(request, write=False)
    p = _Params(request)
    zone = p.get_zone()
    with ctx.world.lock:
        target = _find(ctx.world, ctx.cal.id, request.path_params["eventId"])
        if target is None:
            raise errors.not_found()
        data = _view(target.data, ctx.role, zone)
        etag = data["etag"]
        wanted = request.headers.get("if-none-match")
        if wanted is not None and etag in [w.strip() for w in wanted.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
    return _respond(request, data, etag=etag)


# -- insert / import / quickAdd ------------------------------------------------------------------


def _new_event(
    ctx: _Ctx,
    body: dict[str, Any],
    *,
    event_id: str | None,
    organizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    world, cal = ctx.world, ctx.cal
    used = world.used_event_ids.setdefault(cal.id, set())
    if event_id is not None:
        if not isinstance(event_id, str) or not _ID_RE.match(event_id):
            raise errors.invalid("Invalid resource id value.")
        if event_id in used or event_id in ctx.store:
            raise errors.duplicate()
    else:
        event_id = _new_id()
        while event_id in used:
            event_id = _new_id()
    ical_uid = body.get("iCalUID")
    if ical_uid is not None:
        if not isinstance(ical_uid, str) or not ical_uid:
            raise errors.invalid("Invalid iCalUID value.")
    data = _build(body, cal)
    now = rfc3339(world.clock.now())
    me = world.accounts.get(ctx.tok.email)
    creator = {"email": ctx.tok.email, "self": True}
    if me is not None and me.name:
        creator["displayName"] = me.name
    if organizer is None:
        owner = world.accounts.get(cal.owner)
        organizer = {"email": cal.id, "displayName": cal.summary, "self": True}
        if owner is not None and cal.id == owner.primary_calendar_id:
            organizer["displayName"] = owner.name
    if creator["email"] != cal.id:
        creator.pop("self")
    out: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": "",
        "id": event_id,
        "status": data.pop("status"),
        "htmlLink": _html_link(event_id, cal.id),
        "created": now,
        "updated": now,
    }
    out.update(data)
    out["creator"] = creator
    out["organizer"] = organizer
    out["iCalUID"] = ical_uid or f"{event_id}@google.com"
    seq = body.get("sequence", 0)
    out["sequence"] = seq if isinstance(seq, int) and seq >= 0 else 0
    _mark_organizer_attendee(out, cal.id)
    return out


def _mark_organizer_attendee(data: dict[str, Any], cal_id: str) -> None:
    org = str((data.get("organizer") or {}).get("email", "")).lower()
    for att in data.get("attendees", []):
        email = str(att.get("email", "")).lower()
        att.pop("organizer", None)
        att.pop("self", None)
        if email == org:
            att["organizer"] = True
        if email == cal_id.lower():
            att["self"] = True


async def insert_event(request: Request) -> Response:
    ctx = _ctx(request, write=True)
    p = _Params(request)
    send_updates = p.send_updates()
    body = await json_body(request)
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        if body.get("iCalUID") is not None and any(
            ev.data.get("iCalUID") == body["iCalUID"] and "recurringEventId" not in ev.data
            for ev in ctx.store.values()
        ):
            raise errors.duplicate()
        data = _new_event(ctx, body, event_id=body.get("id"))
        ev = _save(world, cal.id, data, None)
        touched = {cal.id}
        _sync_copies(world, cal.id, data["id"], touched)
        _notify(world, cal, None, ev.data, send_updates)
        _changed(world, touched)
        out = _public(ev.data)
    return _respond(request, out, etag=out["etag"])


async def import_event(request: Request) -> Response:
    """Add a private copy of an existing event (identified by iCalUID); again updates it."""
    ctx = _ctx(request, write=True)
    _Params(request)
    body = await json_body(request)
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        ical_uid = body.get("iCalUID")
        if not isinstance(ical_uid, str) or not ical_uid:
            raise errors.required("Missing iCalUID.")
        if (body.get("eventType") or "default") != "default":
            raise errors.invalid("Only events of type default can be imported.")
        organizer = body.get("organizer")
        if organizer is not None:
            if not isinstance(organizer, dict) or not organizer.get("email"):
                raise errors.invalid("Invalid organizer.")
            organizer = {
                k: organizer[k] for k in ("email", "displayName") if organizer.get(k) is not None
            }
            if str(organizer["email"]).lower() == cal.id.lower():
                organizer["self"] = True
        existing = next(
            (
                ev
                for ev in ctx.store.values()
                if ev.data.get("iCalUID") == ical_uid and "recurringEventId" not in ev.data
            ),
            None,
        )
        if existing is not None:
            prev = existing.data
            built = _build(body, cal)
            data = {k: prev[k] for k in _SERVER if k in prev}
            data.update(built)
            if organizer is not None:
                data["organizer"] = organizer
            seq = body.get("sequence")
            data["sequence"] = max(prev.get("sequence", 0), seq if isinstance(seq, int) else 0)
            _mark_organizer_attendee(data, cal.id)
            ev = _save(world, cal.id, data, existing)
        else:
            data = _new_event(ctx, body, event_id=body.get("id"), organizer=organizer)
            ev = _save(world, cal.id, data, None)
        _changed(world, {cal.id})
        out = _public(ev.data)
    return _respond(request, out, etag=out["etag"])


async def quick_add(request: Request) -> Response:
    """A minimal quickAdd: the text becomes the title of a one-hour event at the next hour."""
    ctx = _ctx(request, write=True)
    p = _Params(request)
    send_updates = p.send_updates()
    text = p.get_str("text")
    if text is None:
        raise errors.required("Required parameter: text", "text")
    with ctx.world.lock:
        now = ctx.world.clock.now_dt().astimezone(ctx.tz)
        start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        body = {
            "summary": text,
            "start": {"dateTime": _fmt(start)},
            "end": {"dateTime": _fmt(start + timedelta(hours=1))},
        }
        data = _new_event(ctx, body, event_id=None)
        ev = _save(ctx.world, ctx.cal.id, data, None)
        _notify(ctx.world, ctx.cal, None, ev.data, send_updates)
        _changed(ctx.world, {ctx.cal.id})
        out = _public(ev.data)
    return _respond(request, out, etag=out["etag"])


# -- update / patch -----------------------------------------------------------------------------


def _client_view(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _public(data).items() if k not in _SERVER}


def _personal_free(data: dict[str, Any], email: str) -> dict[str, Any]:
    """What an attendee may not change: everything but personal fields and their own reply."""
    out = copy.deepcopy(_client_view(data))
    for key in PERSONAL:
        out.pop(key, None)
    ext = out.pop("extendedProperties", {})
    if ext.get("shared"):
        out["extendedProperties"] = {"shared": ext["shared"]}
    for att in out.get("attendees", []):
        if str(att.get("email", "")).lower() == email:
            for k in ("responseStatus", "comment", "additionalGuests"):
                att.pop(k, None)
    return out


async def _modify(request: Request, *, replace: bool) -> Response:
    ctx = _ctx(request, write=True)
    p = _Params(request)
    send_updates = p.send_updates()
    body = await json_body(request)
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        event_id = request.path_params["eventId"]
        target = _find(world, cal.id, event_id)
        if target is None:
            raise errors.not_found()
        cur = target.data
        _check_if_match(request, cur["etag"])
        instance = "recurringEventId" in cur
        if replace:
            candidate = dict(body)
            if instance:
                candidate.pop("recurrence", None)
        else:
            candidate = _merge(_client_view(cur), body)
        if "status" not in candidate and replace:
            candidate["status"] = "confirmed"
        built = _build(candidate, cal, instance=instance)

        new = {k: copy.deepcopy(cur[k]) for k in _SERVER if k in cur}
        new.update(built)
        seq = cur.get("sequence", 0)
        if any(cur.get(k) != new.get(k) for k in SIGNIFICANT):
            seq += 1
        given = body.get("sequence")
        if isinstance(given, int) and not isinstance(given, bool):
            if given < cur.get("sequence", 0):
                raise errors.invalid(
                    "Invalid sequence value. The specified sequence number is below the "
                    "current sequence number of the resource."
                )
            seq = max(seq, given)
        new["sequence"] = seq
        _mark_organizer_attendee(new, cal.id)

        touched = {cal.id}
        origin_cal = _origin_calendar(world, cal.id, cur)
        if origin_cal is not None:
            me = cal.id.lower()
            if _personal_free(cur, me) != _personal_free(new, me):
                raise errors.forbidden_for_non_organizer()
            old_entry = _own_entry(cur, me) or {}
            new_entry = _own_entry(new, me) or {}
            ev = _save(world, cal.id, new, target.stored)
            if any(
                old_entry.get(k) != new_entry.get(k)
                for k in ("responseStatus", "comment", "additionalGuests")
            ):
                _reply(world, origin_cal, event_id, me, new_entry, touched)
        else:
            ev = _save(world, cal.id, new, target.stored)
            _sync_copies(world, cal.id, event_id, touched)
            if new.get("status") == "cancelled" and not instance:
                for exc in _exceptions_of(world, cal.id, event_id):
                    _sync_copies(world, cal.id, exc.data["id"], touched)
            _notify(world, cal, cur, ev.data, send_updates)
        _changed(world, touched)
        out = _public(ev.data)
    return _respond(request, out, etag=out["etag"])


def _reply(
    world: World,
    origin_cal: str,
    event_id: str,
    email: str,
    entry: dict[str, Any],
    touched: set[str],
) -> None:
    """An attendee's response reaches the organizer's event, and from there every copy."""
    target = _find(world, origin_cal, event_id)
    if target is None:
        return
    data = copy.deepcopy(target.data)
    for att in data.get("attendees", []):
        if str(att.get("email", "")).lower() == email:
            for k in ("responseStatus", "comment", "additionalGuests"):
                att.pop(k, None)
                if k in entry:
                    att[k] = entry[k]
    _save(world, origin_cal, data, target.stored)
    touched.add(origin_cal)
    _sync_copies(world, origin_cal, event_id, touched)


async def update_event(request: Request) -> Response:
    return await _modify(request, replace=True)


async def patch_event(request: Request) -> Response:
    return await _modify(request, replace=False)


# -- delete / move ------------------------------------------------------------------------------


async def delete_event(request: Request) -> Response:
    ctx = _ctx(request, write=True)
    p = _Params(request)
    send_updates = p.send_updates()
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        event_id = request.path_params["eventId"]
        target = _find(world, cal.id, event_id)
        if target is None:
            raise errors.not_found()
        cur = target.data
        if cur.get("status") == "cancelled":
            raise errors.deleted()
        _check_if_match(request, cur["etag"])
        data = copy.deepcopy(cur)
        data["status"] = "cancelled"
        touched = {cal.id}
        origin_cal = _origin_calendar(world, cal.id, cur)
        _save(world, cal.id, data, target.stored)
        if origin_cal is not None:
            me = cal.id.lower()
            entry = dict(_own_entry(cur, me) or {})
            entry["responseStatus"] = "declined"
            _reply(world, origin_cal, event_id, me, entry, touched)
        else:
            _sync_copies(world, cal.id, event_id, touched)
            for exc in _exceptions_of(world, cal.id, event_id):
                _sync_copies(world, cal.id, exc.data["id"], touched)
            _notify(world, cal, cur, data, send_updates)
        _changed(world, touched)
    return Response(status_code=204)


async def move_event(request: Request) -> Response:
    ctx = _ctx(request, write=True)
    p = _Params(request)
    send_updates = p.send_updates()
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        dest_id = p.get_str("destination")
        if dest_id is None:
            raise errors.required("Required parameter: destination", "destination")
        dest, _ = _calendar_for(world, ctx.tok, dest_id, write=True)
        event_id = request.path_params["eventId"]
        ev = ctx.store.get(event_id)
        if ev is None or ev.data.get("_orphan"):
            if _find(world, cal.id, event_id) is not None:
                raise errors.bad_request("Cannot change the organizer of an instance.")
            raise errors.not_found()
        if ev.data.get("status") == "cancelled":
            raise errors.deleted()
        if "recurringEventId" in ev.data:
            raise errors.bad_request("Cannot change the organizer of an instance.")
        if ev.data.get("eventType", "default") != "default":
            raise errors.bad_request("This event type cannot be moved.")
        if _origin_calendar(world, cal.id, ev.data) is not None:
            raise errors.forbidden_for_non_organizer()
        if dest.id == cal.id:
            out = _public(ev.data)
            return _respond(request, out, etag=out["etag"])
        dest_used = world.used_event_ids.setdefault(dest.id, set())
        moving = [ev, *_exceptions_of(world, cal.id, event_id)]
        if any(m.data["id"] in dest_used for m in moving):
            raise errors.duplicate()
        touched = {cal.id, dest.id}
        owner = world.accounts.get(dest.owner)
        organizer = {"email": dest.id, "displayName": dest.summary, "self": True}
        if owner is not None and dest.id == owner.primary_calendar_id:
            organizer["displayName"] = owner.name
        moved: StoredEvent | None = None
        for m in moving:
            new = copy.deepcopy(_public(m.data))
            new["organizer"] = dict(organizer)
            new["htmlLink"] = _html_link(new["id"], dest.id)
            _mark_organizer_attendee(new, dest.id)
            stored = _commit(world, dest.id, new, None)
            if m is ev:
                moved = stored
        for m in reversed(moving):
            gone = copy.deepcopy(m.data)
            gone["status"] = "cancelled"
            _commit(world, cal.id, gone, m)
        for m in moving:
            _sync_copies(world, dest.id, m.data["id"], touched, previous_origin=cal.id)
        assert moved is not None
        _notify(world, dest, ev.data, moved.data, send_updates)
        _changed(world, touched)
        out = _public(moved.data)
    return _respond(request, out, etag=out["etag"])


routes: list[BaseRoute] = [
    Route(BASE, list_events, methods=["GET"]),
    Route(BASE, insert_event, methods=["POST"]),
    Route(BASE + "/import", import_event, methods=["POST"]),
    Route(BASE + "/quickAdd", quick_add, methods=["POST"]),
    Route(BASE + "/{eventId}/instances", list_instances, methods=["GET"]),
    Route(BASE + "/{eventId}/move", move_event, methods=["POST"]),
    Route(BASE + "/{eventId}", get_event, methods=["GET"]),
    Route(BASE + "/{eventId}", update_event, methods=["PUT"]),
    Route(BASE + "/{eventId}", patch_event, methods=["PATCH"]),
    Route(BASE + "/{eventId}", delete_event, methods=["DELETE"]),
]
