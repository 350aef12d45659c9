"""The client-settable part of an event, validated and normalised as Google stores it, and
patch semantics. Error texts follow Google's.
"""

from __future__ import annotations

import copy
import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .. import errors, recurrence
from ..state import Calendar
from .wire import fmt_time, parse_date, parse_dt, start_value, valid_zone, zone_or_utc

EVENT_TYPES = frozenset(
    {"default", "birthday", "focusTime", "outOfOffice", "workingLocation", "fromGmail"}
)
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
SERVER_FIELDS = (
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


def _norm_time(raw: Any, which: str, cal_tz: ZoneInfo) -> dict[str, Any]:
    if raw is None:
        raise errors.required(f"Missing {which} time.")
    if not isinstance(raw, dict):
        raise errors.invalid(f"Invalid {which} time.")
    if raw.get("date") is not None:
        d = parse_date(raw["date"])
        if d is None:
            raise errors.invalid(f"Invalid {which} time.")
        out: dict[str, Any] = {"date": d.isoformat()}
        return out
    if raw.get("dateTime") is None:
        raise errors.required(f"Missing {which} time.")
    dt = parse_dt(str(raw["dateTime"]))
    if dt is None:
        raise errors.invalid(f"Invalid {which} time.")
    tz_name = raw.get("timeZone")
    zone = None
    if tz_name is not None:
        zone = valid_zone(tz_name)
        if zone is None:
            raise errors.invalid(f"Invalid time zone definition for {which} time.")
    if dt.tzinfo is None:
        if zone is None:
            raise errors.required(f"Missing time zone definition for {which} time.")
        dt = recurrence.localize(dt, zone)
    out = {"dateTime": fmt_time(dt.astimezone(zone or cal_tz))}
    if tz_name is not None:
        out["timeZone"] = tz_name
    return out


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


def build(body: dict[str, Any], cal: Calendar, *, instance: bool = False) -> dict[str, Any]:
    """The client-settable part of an event, validated and normalised as Google stores it."""
    tz = zone_or_utc(cal.time_zone)
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
    s_val, e_val = start_value(start), start_value(end)
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


def merge_patch(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
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
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
