"""An events.list query and the filters it applies to one event (`q`, extended properties,
iCalUID, event types, the timeMin/timeMax window, updatedMin).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .. import errors
from .wire import span


@dataclass
class Query:
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


def parse_props(values: list[str], name: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        k, sep, val = v.partition("=")
        if not sep:
            raise errors.invalid(f"Invalid value for: {name}", name)
        out.append((k, val))
    return out


def matches(q: Query, data: dict[str, Any], tz: ZoneInfo) -> bool:
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
        start, end = span(data, tz)
        if end == start:
            end = start + timedelta(microseconds=1)  # a zero-length event still occurs
        if q.time_min is not None and end <= q.time_min:
            return False
        if q.time_max is not None and start >= q.time_max:
            return False
    return True


def updated_ok(q: Query, updated_ts: float) -> bool:
    return q.updated_min is None or updated_ts >= q.updated_min.timestamp()
