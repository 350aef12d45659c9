"""Google's wire formats for event values: times, ids, links and opaque tokens.

Every other module of the package builds on these; nothing here knows about the world.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .. import recurrence

_PRIVATE_PREFIX = "_"


def public(data: dict[str, Any]) -> dict[str, Any]:
    """The event without bookkeeping keys; the same dict when it has none (callers copy before
    they change anything)."""
    if "_gone" in data or "_orphan" in data:
        return {k: v for k, v in data.items() if not k.startswith(_PRIVATE_PREFIX)}
    return data


def zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def valid_zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or name.startswith(("/", ".")):
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        return None


def fmt_time(dt: datetime) -> str:
    """RFC 3339 as Google writes event times: seconds, offset, `Z` for UTC."""
    dt = dt.replace(microsecond=0)
    if dt.utcoffset() == timedelta(0):
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.isoformat()


def parse_dt(raw: str) -> datetime | None:
    try:
        return datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except (ValueError, AttributeError):
        return None


def parse_date(raw: Any) -> date | None:
    if not isinstance(raw, str) or len(raw) != 10:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def encode_token(obj: Any) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> Any:
    try:
        pad = "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(token + pad))
    except (ValueError, TypeError):
        return None


def new_id() -> str:
    """26 base32hex characters, like the ids Google generates."""
    raw = base64.b32hexencode(secrets.token_bytes(16)).decode().lower().rstrip("=")
    return raw[:26]


def html_link(event_id: str, calendar_id: str) -> str:
    eid = base64.urlsafe_b64encode(f"{event_id} {calendar_id}".encode()).decode().rstrip("=")
    return f"https://www.google.com/calendar/event?eid={eid}"


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower()


# -- event times ------------------------------------------------------------------------------

Start = recurrence.Start


def start_value(t: dict[str, Any]) -> Start:
    """The start/end of a stored (normalised) EventDateTime: a date or an aware datetime."""
    if "date" in t:
        d = parse_date(t["date"])
        assert d is not None
        return d
    dt = parse_dt(t["dateTime"])
    assert dt is not None and dt.tzinfo is not None
    return dt


def instant(value: Start, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time(), tz).astimezone(UTC)


def span(data: dict[str, Any], tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = instant(start_value(data["start"]), tz)
    end = instant(start_value(data["end"]), tz) if "end" in data else start
    return start, end
