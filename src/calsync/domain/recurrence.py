"""Recurring series: RFC 5545 RRULE/EXRULE/RDATE/EXDATE lines expanded with dateutil.rrule.

Occurrences are generated as wall-clock times in the series' own IANA zone, so a weekly 09:00
meeting stays at 09:00 across a DST change; all-day series work on plain dates (midnight,
no zone), so they never shift a day. Exceptions (moved or cancelled occurrences) are matched
by their original wall-clock start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rruleset, rrulestr

MAX_LINES = 100
# Finite series longer than this are treated as open-ended for range queries.
MAX_FINITE_OCCURRENCES = 10_000

_PREFIXES = ("RRULE", "EXRULE", "RDATE", "EXDATE")
_FREQ = re.compile(r"(?i)FREQ=([A-Z]+)")
# What Google Calendar accepts; finer ones would also let one rule make millions of instances.
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_UNTIL = re.compile(r"(?i)(UNTIL=)([0-9]{8}(?:T[0-9]{6}Z?)?)")


class RecurrenceError(ValueError):
    """A recurrence line dateutil cannot understand; the message says which and why."""


class TooManyOccurrences(ValueError):
    """An expansion would produce more occurrences than the caller allows."""


@dataclass(frozen=True)
class Series:
    """What expansion needs to know about a recurring master."""

    all_day: bool
    zone: ZoneInfo
    start_local: datetime  # naive wall clock (midnight for all-day)
    end_local: datetime
    recurrence: tuple[str, ...]

    @property
    def duration(self) -> timedelta:
        return self.end_local - self.start_local

    def to_utc(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(UTC)


@dataclass(frozen=True)
class Occurrence:
    """One generated instance of a series, keyed by its original wall-clock start."""

    start_local: datetime
    end_local: datetime
    start_utc: datetime
    end_utc: datetime


def normalise(
    lines: Sequence[str], *, all_day: bool, zone: ZoneInfo, start_local: datetime
) -> tuple[str, ...]:
    """Validate recurrence lines and return them in canonical form (raises RecurrenceError)."""
    if len(lines) > MAX_LINES:
        raise RecurrenceError(f"at most {MAX_LINES} recurrence lines are allowed")
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        name = re.split(r"[:;]", line, maxsplit=1)[0].upper()
        if name not in _PREFIXES or ":" not in line:
            raise RecurrenceError(
                f"{raw!r} is not a recurrence line; use RRULE:, EXRULE:, RDATE or EXDATE"
            )
        if name in ("RRULE", "EXRULE"):
            freq = _FREQ.search(line)
            if freq and freq.group(1).upper() not in FREQUENCIES:
                raise RecurrenceError(
                    f"{raw!r}: FREQ must be one of {', '.join(FREQUENCIES)} (as in Google Calendar)"
                )
            line = name + ":" + _normalise_until(line.split(":", 1)[1], all_day=all_day, zone=zone)
        else:
            line = name + line[len(name) :]
        out.append(line)
    series = Series(all_day, zone, start_local, start_local, tuple(out))
    build(series)  # raises RecurrenceError on anything dateutil rejects
    return tuple(out)


def _normalise_until(rule: str, *, all_day: bool, zone: ZoneInfo) -> str:
    """UNTIL must be UTC for timed series and a date for all-day ones (RFC 5545 3.3.10)."""

    def fix(match: re.Match[str]) -> str:
        value = match.group(2)
        if all_day:
            return match.group(1) + value[:8]
        if value.endswith("Z"):
            return match.group(0)
        if len(value) == 8:
            local = datetime.combine(_parse_date(value), time(23, 59, 59))
        else:
            local = datetime.strptime(value, "%Y%m%dT%H%M%S")
        utc = local.replace(tzinfo=zone).astimezone(UTC)
        return match.group(1) + utc.strftime("%Y%m%dT%H%M%SZ")

    return _UNTIL.sub(fix, rule)


def build(series: Series) -> rruleset:
    """The dateutil rruleset of a series; DTSTART is always its first instance."""
    dtstart = _anchor(series, series.start_local)
    rules = rruleset()
    rules.rdate(dtstart)
    for line in series.recurrence:
        name, _, rest = line.partition(":")
        kind = name.split(";", 1)[0].upper()
        try:
            if kind in ("RRULE", "EXRULE"):
                rule = rrulestr(rest, dtstart=dtstart)
                if not isinstance(rule, rrule):
                    raise RecurrenceError(f"{line!r} must hold exactly one rule")
                (rules.rrule if kind == "RRULE" else rules.exrule)(rule)
            else:
                for value in _dates(line, series):
                    (rules.rdate if kind == "RDATE" else rules.exdate)(_anchor(series, value))
        except RecurrenceError:
            raise
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise RecurrenceError(f"{line!r}: {exc}") from exc
    return rules


def _anchor(series: Series, local: datetime) -> datetime:
    """Timed series expand on aware datetimes in their zone, all-day ones on naive midnights."""
    return local if series.all_day else local.replace(tzinfo=series.zone)


def _dates(line: str, series: Series) -> list[datetime]:
    """EXDATE/RDATE values as naive wall-clock datetimes in the series' zone."""
    head, _, values = line.partition(":")
    params = dict(part.split("=", 1) for part in head.split(";")[1:] if "=" in part)
    params = {k.upper(): v for k, v in params.items()}
    if params.get("VALUE", "").upper() == "PERIOD":
        raise RecurrenceError("RDATE periods are not supported; use date or date-time values")
    source = ZoneInfo(params["TZID"]) if "TZID" in params else None
    out = []
    for value in filter(None, (v.strip() for v in values.split(","))):
        if len(value) == 8:
            day = _parse_date(value)
            out.append(
                datetime.combine(day, time() if series.all_day else series.start_local.time())
            )
            continue
        utc = value.endswith("Z")
        moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
        if utc or source is not None:
            aware = moment.replace(tzinfo=UTC if utc else source)
            moment = aware.astimezone(series.zone).replace(tzinfo=None)
        if series.all_day:
            moment = datetime.combine(moment.date(), time())
        out.append(moment)
    return out


def _parse_date(value: str) -> date:
    return datetime.strptime(value, "%Y%m%d").date()


def expand(
    series: Series,
    window_start: datetime,
    window_end: datetime,
    *,
    skip: Iterable[datetime] = (),
    limit: int = 5_000,
) -> list[Occurrence]:
    """Occurrences overlapping [window_start, window_end) (aware), minus the `skip` originals."""
    rules = build(series)
    margin = series.duration + timedelta(days=2)
    lo, hi = window_start - margin, window_end + timedelta(days=2)
    if series.all_day:
        lo = lo.astimezone(series.zone).replace(tzinfo=None)
        hi = hi.astimezone(series.zone).replace(tzinfo=None)
    skipped = set(skip)
    out: list[Occurrence] = []
    for generated in rules.xafter(lo, inc=True):  # lazily: stops at `hi` or the limit
        if generated > hi:
            break
        start_local = generated.replace(tzinfo=None)
        if start_local in skipped:
            continue
        end_local = start_local + series.duration
        start_utc, end_utc = series.to_utc(start_local), series.to_utc(end_local)
        if start_utc < window_end and end_utc > window_start:
            out.append(Occurrence(start_local, end_local, start_utc, end_utc))
            if len(out) > limit:
                raise TooManyOccurrences(f"more than {limit} occurrences in the requested range")
    return out


def is_occurrence(series: Series, start_local: datetime) -> bool:
    """Whether the series generates an instance at this wall-clock start."""
    anchor = _anchor(series, start_local)
    return bool(build(series).between(anchor, anchor, inc=True))


def bounds(series: Series) -> tuple[datetime, datetime | None]:
    """UTC start of the first and end of the last occurrence; None when open-ended."""
    rules = build(series)
    first = next(iter(rules), None)
    if first is None:  # every instance excluded: the series still occupies its own slot
        return series.to_utc(series.start_local), series.to_utc(series.end_local)
    first_utc = series.to_utc(first.replace(tzinfo=None))
    if not _finite(series):
        return first_utc, None
    last = first
    for count, generated in enumerate(rules):
        if count >= MAX_FINITE_OCCURRENCES:
            return first_utc, None
        last = generated
    return first_utc, series.to_utc(last.replace(tzinfo=None) + series.duration)


def _finite(series: Series) -> bool:
    rules = [line.upper() for line in series.recurrence if line.upper().startswith("RRULE")]
    return all("COUNT=" in rule or "UNTIL=" in rule for rule in rules)


def instance_suffix(all_day: bool, start_utc: datetime, start_local: datetime) -> str:
    """Google's instance-id suffix: the UTC start, or the date for all-day series."""
    if all_day:
        return start_local.strftime("%Y%m%d")
    return start_utc.strftime("%Y%m%dT%H%M%SZ")


def follow(old: Series, new: Series, original_local: datetime) -> datetime | None:
    """Where the occurrence an exception replaces is after its series changed: the same start
    while the new series still generates it; else moved as far as the series' first start
    moved (a series moved from 10:00 to 11:00 takes its 10:00 occurrences to 11:00); None when
    the new series has no such occurrence (an UNTIL or a new rule cut it off)."""
    try:
        if is_occurrence(new, original_local):
            return original_local
        shifted = original_local + (new.start_local - old.start_local)
        if shifted != original_local and is_occurrence(new, shifted):
            return shifted
    except RecurrenceError:
        return None
    return None
