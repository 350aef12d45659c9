"""RRULE/EXRULE/RDATE/EXDATE expansion in the event's own IANA zone, wall-clock true across DST.

A series is expanded on naive wall-clock times of its zone (so a 09:00 meeting stays at 09:00 when
the offset changes) and each occurrence is then localised; all-day series expand on dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import islice
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rruleset, rrulestr

Start = date | datetime  # a date (all-day) or an aware datetime

_VALUE = re.compile(r"^(\d{8})(?:T(\d{6})(Z?))?$")


class RecurrenceError(ValueError):
    """A recurrence line Google would refuse."""


def _wall(dt: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time of an aware instant in `zone`."""
    return dt.astimezone(zone).replace(tzinfo=None)


def localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone` as an aware instant (gaps resolve forward, as Google does)."""
    aware = wall.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone)


def _parse_value(raw: str, tzid: str | None, zone: ZoneInfo | None, all_day: bool) -> datetime:
    """One RDATE/EXDATE/UNTIL value as a naive wall-clock datetime of the series."""
    m = _VALUE.match(raw.strip())
    if not m:
        raise RecurrenceError(f"Invalid recurrence value: {raw}")
    d = datetime.strptime(m.group(1), "%Y%m%d")
    if m.group(2) is None:
        return d
    t = datetime.strptime(m.group(2), "%H%M%S").time()
    wall = datetime.combine(d.date(), t)
    if all_day:
        return datetime.combine(wall.date(), time())
    if zone is None:
        return wall
    if m.group(3) == "Z":
        return _wall(wall.replace(tzinfo=UTC), zone)
    if tzid:
        try:
            src = ZoneInfo(tzid)
        except (KeyError, ValueError) as exc:
            raise RecurrenceError(f"Invalid time zone: {tzid}") from exc
        return _wall(localize(wall, src), zone)
    return wall


def _split(line: str) -> tuple[str, dict[str, str], str]:
    head, sep, value = line.partition(":")
    if not sep:
        raise RecurrenceError(f"Invalid recurrence line: {line}")
    name, *params = head.split(";")
    parsed: dict[str, str] = {}
    for p in params:
        k, _, v = p.partition("=")
        parsed[k.upper()] = v
    return name.upper().strip(), parsed, value.strip()


def _rule(value: str, dtstart: datetime, zone: ZoneInfo | None, all_day: bool) -> rrule:
    parts = []
    for part in value.split(";"):
        key, _, val = part.partition("=")
        if key.upper() in ("INTERVAL", "COUNT") and not (val.isdigit() and int(val) >= 1):
            # Google answers 400 "Invalid recurrence rule" (dateutil would loop on INTERVAL=0)
            raise RecurrenceError(f"Invalid recurrence rule: {value}")
        if key.upper() == "UNTIL":
            until = _parse_value(val, None, zone, all_day)
            if all_day or len(val) == 8:
                # a date-only UNTIL includes that whole day
                until = datetime.combine(until.date(), time(23, 59, 59))
            val = until.strftime("%Y%m%dT%H%M%S")
        parts.append(f"{key.upper()}={val}")
    try:
        rule = rrulestr(";".join(parts), dtstart=dtstart)
    except (ValueError, TypeError) as exc:
        raise RecurrenceError(f"Invalid recurrence rule: {value}") from exc
    if not isinstance(rule, rrule):
        raise RecurrenceError(f"Invalid recurrence rule: {value}")
    return rule


class Series:
    """The occurrences of one recurring event, as naive wall-clock datetimes of its zone."""

    def __init__(self, lines: tuple[str, ...], start: Start, zone_name: str | None) -> None:
        self.all_day = not isinstance(start, datetime)
        self.zone = None if self.all_day else ZoneInfo(zone_name or "UTC")
        if isinstance(start, datetime):
            assert self.zone is not None
            self.dtstart = _wall(start, self.zone)
        else:
            self.dtstart = datetime.combine(start, time())
        self.set = rruleset()
        has_rule = False
        for line in lines:
            name, params, value = _split(line)
            if name in ("RRULE", "EXRULE"):
                rule = _rule(value, self.dtstart, self.zone, self.all_day)
                if name == "RRULE":
                    self.set.rrule(rule)
                    has_rule = True
                else:
                    self.set.exrule(rule)
            elif name in ("RDATE", "EXDATE"):
                if params.get("VALUE", "").upper() == "PERIOD":
                    raise RecurrenceError("RDATE periods are not supported")
                for raw in value.split(","):
                    wall = _parse_value(raw, params.get("TZID"), self.zone, self.all_day)
                    if name == "RDATE":
                        self.set.rdate(wall)
                        has_rule = True
                    else:
                        self.set.exdate(wall)
            else:
                raise RecurrenceError(f"Invalid recurrence line: {line}")
        if not has_rule:
            raise RecurrenceError("A recurrence needs an RRULE or RDATE line")
        # the first instance is the event's own start, as in RFC 5545
        self.set.rdate(self.dtstart)

    def to_start(self, wall: datetime) -> Start:
        if self.zone is None:
            return wall.date()
        return localize(wall, self.zone)

    def iter_from(self, wall_from: datetime | None = None) -> Iterator[datetime]:
        if wall_from is None or wall_from <= self.dtstart:
            return iter(self.set)
        return self.set.xafter(wall_from, inc=True)

    def first(self, n: int) -> list[Start]:
        return [self.to_start(w) for w in islice(self.set, n)]

    def window(
        self, lo: datetime | None, hi: datetime | None, slack: timedelta, n: int
    ) -> list[Start]:
        """At most `n` occurrences starting before `hi` whose start is later than `lo - slack`."""
        wall_from = None
        if lo is not None:
            ref = lo - slack - timedelta(days=1)
            wall_from = _wall(ref, self.zone) if self.zone else ref.replace(tzinfo=None)
        out: list[Start] = []
        for wall in self.iter_from(wall_from):
            start = self.to_start(wall)
            if hi is not None:
                # all-day dates begin at midnight of the calendar's zone: at most 14 h before UTC
                approx = (
                    start
                    if isinstance(start, datetime)
                    else datetime.combine(start, time(), UTC) - timedelta(days=1)
                )
                if approx >= hi:
                    break
            out.append(start)
            if len(out) >= n:
                break
        return out

    def contains(self, start: Start) -> bool:
        if isinstance(start, datetime):
            assert self.zone is not None
            wall = _wall(start, self.zone)
        else:
            wall = datetime.combine(start, time())
        return bool(self.set.between(wall, wall, inc=True))


@lru_cache(maxsize=2048)
def series(lines: tuple[str, ...], start: Start, zone_name: str | None) -> Series:
    """A parsed series, cached: lists expand the same masters again and again."""
    return Series(lines, start, zone_name)


def validate(lines: list[str], start: Start, zone_name: str | None) -> None:
    """Raise RecurrenceError if Google would refuse these recurrence lines."""
    s = series(tuple(lines), start, zone_name)
    s.first(1)


def instance_suffix(original: Start) -> str:
    """Google's instance id suffix: UTC `YYYYMMDDTHHMMSSZ`, or `YYYYMMDD` for all-day."""
    if isinstance(original, datetime):
        return original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return original.strftime("%Y%m%d")


def parse_suffix(suffix: str) -> Start | None:
    """The original start an instance id suffix names, or None if it is not one."""
    try:
        if len(suffix) == 16 and suffix.endswith("Z"):
            return datetime.strptime(suffix, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if len(suffix) == 8 and suffix.isdigit():
            return datetime.strptime(suffix, "%Y%m%d").date()
    except ValueError:
        return None
    return None
