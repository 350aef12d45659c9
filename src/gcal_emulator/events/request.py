"""What a request asks: query parameters with Google's validation, `If-Match`, and the
calendar it addresses with the caller's role (`Ctx`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from starlette.requests import Request

from .. import errors
from ..auth import EVENTS_READ, EVENTS_WRITE, authenticate, world_of
from ..state import AccessToken, Calendar, StoredEvent, World
from .wire import parse_dt, valid_zone, zone_or_utc

# -- request parsing --------------------------------------------------------------------------


class Params:
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
        dt = parse_dt(raw)
        if dt is None or dt.tzinfo is None or "T" not in raw.upper():
            raise errors.bad_request()
        return dt.astimezone(UTC)

    def get_zone(self) -> ZoneInfo | None:
        raw = self.get_str("timeZone")
        if raw is None:
            return None
        zone = valid_zone(raw)
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


def check_if_match(request: Request, etag: str) -> None:
    header = request.headers.get("if-match")
    if header is None:
        return
    wanted = [h.strip().removeprefix("W/") for h in header.split(",")]
    if "*" not in wanted and etag not in wanted:
        raise errors.condition_not_met()


# -- access -----------------------------------------------------------------------------------


@dataclass
class Ctx:
    world: World
    tok: AccessToken
    cal: Calendar
    role: str

    @property
    def store(self) -> dict[str, StoredEvent]:
        return self.world.events.setdefault(self.cal.id, {})

    @property
    def tz(self) -> ZoneInfo:
        return zone_or_utc(self.cal.time_zone)


def calendar_for(world: World, tok: AccessToken, raw_id: str, write: bool) -> tuple[Calendar, str]:
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


def context(request: Request, write: bool) -> Ctx:
    world = world_of(request)
    with world.lock:
        tok = authenticate(request, EVENTS_WRITE if write else EVENTS_READ)
        cal, role = calendar_for(world, tok, request.path_params["calendarId"], write)
    return Ctx(world, tok, cal, role)
