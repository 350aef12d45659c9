"""Recurring series: RFC 5545 RRULE/EXRULE/RDATE/EXDATE lines expanded with dateutil.rrule.

Occurrences are generated as wall-clock times in the series' own IANA zone, so a weekly 09:00
meeting stays at 09:00 across a DST change; all-day series work on plain dates (midnight,
no zone), so they never shift a day. Exceptions (moved or cancelled occurrences) are matched
by their original wall-clock start.

Bounded by construction (issue 13): `normalise` refuses what Google refuses (a FREQ finer than
DAILY, INTERVAL or COUNT below 1, BY* values out of range, several instances a day) and rules
that generate nothing within reach; every expansion runs on a `Budget` of work units and raises
`WorkLimitExceeded` (a RecurrenceError) instead of walking on; daily and weekly rules start
near the asked-for window instead of walking from the series' first start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from math import ceil
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, rrule, rruleset, rrulestr

MAX_LINES = 100
# Finite series longer than this are treated as open-ended for range queries.
MAX_FINITE_OCCURRENCES = 10_000

_PREFIXES = ("RRULE", "EXRULE", "RDATE", "EXDATE")
# What Google Calendar accepts; finer ones would also let one rule make millions of instances.
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_UNTIL = re.compile(r"(?i)(UNTIL=)([0-9]{8}(?:T[0-9]{6}Z?)?)")


class RecurrenceError(ValueError):
    """A recurrence line dateutil cannot understand; the message says which and why."""


class TooManyOccurrences(ValueError):
    """An expansion would produce more occurrences than the caller allows."""


class WorkLimitExceeded(RecurrenceError):
    """Expanding a series took more work than its budget allows (a rule that generates very
    little or nothing, or a very long range); nothing was returned for it."""


#: work units one series may spend: in a listing, in a check of one occurrence, and when a
#: rule is validated (a daily rule that never matches walks about 55 years on 20,000 units, about 0.1 s)
SERIES_UNITS = 20_000
#: work units one listing request may spend over all of its series
REQUEST_UNITS = 200_000
VALIDATION_UNITS = 20_000


class Budget:
    """Work units an expansion may spend: one per instant dateutil generates (kept or not)
    plus, per calendar year dateutil walks through, the number of periods of the rule in a year
    (366 for a daily rule; at least 20, what a pass over a year's days costs next to a daily
    period), so a rule that matches nothing also pays."""

    def __init__(self, units: int, parent: Budget | None = None) -> None:
        self.units = units
        self.spent = 0
        self.parent = parent

    def spend(self, units: int = 1) -> None:
        self.spent += units
        if self.parent is not None:
            self.parent.spend(units)
        if self.spent > self.units:
            raise WorkLimitExceeded(
                f"expanding the series took more than {self.units} work units; "
                "ask for a shorter range or simplify the rule"
            )

    def child(self, units: int) -> Budget:
        """A budget for one part of the work that also counts against this one."""
        return Budget(units, parent=self)


class _CountedRule(rrule):
    """dateutil's rrule, paying into a Budget as it walks. dateutil reads `_dtstart` once per
    generated instant and `_byweekno` once per calendar year it enters, so these two reads are
    where the work is counted (checked by tests/calsync/test_recurrence_bounded.py, which fails
    if a dateutil release stops reading them)."""

    @property  # type: ignore[override]
    def _dtstart(self) -> datetime:
        self.__dict__["_budget"].spend(1)
        value: datetime = self.__dict__["_dtstart"]
        return value

    @_dtstart.setter
    def _dtstart(self, value: datetime) -> None:
        self.__dict__["_dtstart"] = value

    @property
    def _byweekno(self) -> Any:
        self.__dict__["_budget"].spend(self.__dict__["_per_year"])
        return self.__dict__["_byweekno"]

    @_byweekno.setter
    def _byweekno(self, value: Any) -> None:
        self.__dict__["_byweekno"] = value


_PERIODS_PER_YEAR = {DAILY: 366, WEEKLY: 53, MONTHLY: 12}
_YEAR_FLOOR = 20


def _counted(rule: rrule, budget: Budget) -> rrule:
    interval = max(1, int(getattr(rule, "_interval", 1)))
    per_year = _PERIODS_PER_YEAR.get(getattr(rule, "_freq", DAILY), 1)
    rule.__dict__["_budget"] = budget
    # a year costs dateutil at least a pass over its 366 days, whatever the frequency
    rule.__dict__["_per_year"] = max(_YEAR_FLOOR, ceil(per_year / interval))
    rule.__class__ = _CountedRule
    return rule


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
    lines: Sequence[str],
    *,
    all_day: bool,
    zone: ZoneInfo,
    start_local: datetime,
    budget: Budget | None = None,
) -> tuple[str, ...]:
    """Validate recurrence lines and return them in canonical form (raises RecurrenceError).
    Each check pays into its own VALIDATION_UNITS budget, a child of `budget` when given."""

    def units() -> Budget:
        return budget.child(VALIDATION_UNITS) if budget else Budget(VALIDATION_UNITS)

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
            _check_rule(raw, line.split(":", 1)[1])
            line = name + ":" + _normalise_until(line.split(":", 1)[1], all_day=all_day, zone=zone)
        else:
            line = name + line[len(name) :]
        out.append(line)
    series = Series(all_day, zone, start_local, start_local, tuple(out))
    build(series, units())  # raises RecurrenceError on anything dateutil rejects
    for line in out:
        if line.upper().startswith("RRULE:"):
            _reaches_an_occurrence(series, line, units())
    return tuple(out)


# What RFC 5545 (3.3.10) allows in each BY part, within what Google Calendar accepts.
_INT_PARTS = {
    "BYSECOND": (0, 60, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
}
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY = re.compile(r"^([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_RULE_PARTS = {"FREQ", "UNTIL", "COUNT", "INTERVAL", "WKST", "BYDAY", *_INT_PARTS}
MAX_INTERVAL = 1_000
MAX_COUNT = 100_000


def _check_rule(raw: str, body: str) -> None:
    """What Google accepts in one RRULE/EXRULE; dateutil still parses the whole rule after."""

    def bad(message: str) -> RecurrenceError:
        return RecurrenceError(f"{raw!r}: {message}")

    parts: dict[str, str] = {}
    for part in filter(None, body.strip().split(";")):
        key, eq, value = part.partition("=")
        key = key.strip().upper()
        if not eq or not value.strip():
            raise bad(f"{part!r} is not a NAME=VALUE part")
        if key not in _RULE_PARTS:
            raise bad(f"{key} is not supported (as in Google Calendar)")
        if key in parts:
            raise bad(f"{key} is given twice")
        parts[key] = value.strip().upper()
    freq = parts.get("FREQ")
    if freq not in FREQUENCIES:
        raise bad(f"FREQ must be one of {', '.join(FREQUENCIES)} (as in Google Calendar)")
    for key, lo, hi in (("INTERVAL", 1, MAX_INTERVAL), ("COUNT", 1, MAX_COUNT)):
        if key in parts and not (parts[key].isdigit() and lo <= int(parts[key]) <= hi):
            raise bad(f"{key} must be a whole number from {lo} to {hi}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise bad("give COUNT or UNTIL, not both")
    if "WKST" in parts and parts["WKST"] not in _WEEKDAYS:
        raise bad(f"WKST must be one of {', '.join(_WEEKDAYS)}")
    for key, (lo, hi, signed) in _INT_PARTS.items():
        if key not in parts:
            continue
        for item in parts[key].split(","):
            number = item.lstrip("+-")
            if not number.isdigit() or (item.startswith("-") and not signed):
                raise bad(f"{key} takes whole numbers, not {item!r}")
            if not lo <= int(number) <= hi:
                span = f"{lo} to {hi}" + (f" or -{hi} to -1" if signed else "")
                raise bad(f"{key} values must be from {span}")
    for key in ("BYHOUR", "BYMINUTE", "BYSECOND"):
        if "," in parts.get(key, ""):
            raise bad(
                f"{key} takes one value: a series has at most one instance a day "
                "(as in Google Calendar)"
            )
    for item in parts.get("BYDAY", "").split(",") if "BYDAY" in parts else ():
        match = _BYDAY.match(item)
        if match is None:
            raise bad(f"BYDAY values are weekdays such as MO or 2TU or -1FR, not {item!r}")
        if match.group(1):
            limit = {"MONTHLY": 5, "YEARLY": 53}.get(freq, 0)
            ordinal = int(match.group(1).lstrip("+-"))
            if not limit:
                raise bad(f"BYDAY={item} (an nth weekday) needs FREQ=MONTHLY or YEARLY")
            if not 1 <= ordinal <= limit:
                raise bad(f"BYDAY={item}: with FREQ={freq} the number must be 1 to {limit}")
    if "BYWEEKNO" in parts and freq != "YEARLY":
        raise bad("BYWEEKNO needs FREQ=YEARLY")
    if "BYYEARDAY" in parts and freq in ("DAILY", "WEEKLY", "MONTHLY"):
        raise bad("BYYEARDAY needs FREQ=YEARLY")
    if "BYMONTHDAY" in parts and freq == "WEEKLY":
        raise bad("BYMONTHDAY cannot be used with FREQ=WEEKLY")
    if "BYSETPOS" in parts and not any(k.startswith("BY") and k != "BYSETPOS" for k in parts):
        raise bad("BYSETPOS needs another BY part (such as BYDAY)")


def _reaches_an_occurrence(series: Series, line: str, budget: Budget) -> None:
    """Refuse a rule whose next instance after the first cannot be found within the budget:
    one that matches nothing (BYMONTH=2;BYMONTHDAY=30) would make every listing walk on."""
    dtstart = _anchor(series, series.start_local)
    rule = _counted(_parse_rule(line, dtstart), budget)
    try:
        rule.after(dtstart)
    except WorkLimitExceeded:
        raise RecurrenceError(
            f"{line!r} generates no occurrence within reach (such as BYMONTHDAY=30 with "
            "BYMONTH=2); check its BY parts"
        ) from None


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


def _parse_rule(line: str, dtstart: datetime) -> rrule:
    try:
        rule = rrulestr(line.partition(":")[2], dtstart=dtstart)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise RecurrenceError(f"{line!r}: {exc}") from exc
    if not isinstance(rule, rrule):
        raise RecurrenceError(f"{line!r} must hold exactly one rule")
    return rule


def build(series: Series, budget: Budget, near: datetime | None = None) -> rruleset:
    """The dateutil rruleset of a series; DTSTART is always its first instance. Its rules pay
    into `budget`; with `near` (a naive wall-clock time), daily and weekly rules without COUNT
    start at the last whole number of periods before it instead of at the series' start."""
    dtstart = _anchor(series, series.start_local)
    rules = rruleset()
    rules.rdate(dtstart)
    for line in series.recurrence:
        name = line.partition(":")[0]
        kind = name.split(";", 1)[0].upper()
        try:
            if kind in ("RRULE", "EXRULE"):
                _check_rule(line, line.partition(":")[2])  # a stored rule may predate the checks
                rule = _counted(_jump(_parse_rule(line, dtstart), series, near), budget)
                (rules.rrule if kind == "RRULE" else rules.exrule)(rule)
            else:
                for value in _dates(line, series):
                    (rules.rdate if kind == "RDATE" else rules.exdate)(_anchor(series, value))
        except RecurrenceError:
            raise
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise RecurrenceError(f"{line!r}: {exc}") from exc
    return rules


def _jump(rule: rrule, series: Series, near: datetime | None) -> rrule:
    """The same rule, started a whole number of its periods later, close before `near`: the
    instances from there on are the same, and the walk from the series' start is skipped.
    Only for daily and weekly rules without COUNT (COUNT counts from the first instance)."""
    freq, interval = getattr(rule, "_freq", None), int(getattr(rule, "_interval", 1))
    if near is None or freq not in (DAILY, WEEKLY) or getattr(rule, "_count", None) is not None:
        return rule
    step = timedelta(days=interval * (7 if freq == WEEKLY else 1))
    periods = (near - series.start_local) // step - 1
    if periods <= 0:
        return rule
    return rule.replace(dtstart=_anchor(series, series.start_local + periods * step))


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
    budget: Budget | None = None,
) -> list[Occurrence]:
    """Occurrences overlapping [window_start, window_end) (aware), minus the `skip` originals.
    Raises WorkLimitExceeded when `budget` (default: SERIES_UNITS) runs out."""
    margin = series.duration + timedelta(days=2)
    lo, hi = window_start - margin, window_end + timedelta(days=2)
    if series.all_day:
        lo = lo.astimezone(series.zone).replace(tzinfo=None)
        hi = hi.astimezone(series.zone).replace(tzinfo=None)
    near = lo if series.all_day else lo.astimezone(series.zone).replace(tzinfo=None)
    rules = build(series, budget or Budget(SERIES_UNITS), near=near)
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


def is_occurrence(series: Series, start_local: datetime, budget: Budget | None = None) -> bool:
    """Whether the series generates an instance at this wall-clock start (raises
    WorkLimitExceeded when that takes more than `budget`, default SERIES_UNITS)."""
    anchor = _anchor(series, start_local)
    rules = build(series, budget or Budget(SERIES_UNITS), near=start_local)
    return bool(rules.between(anchor, anchor, inc=True))


def bounds(series: Series, budget: Budget | None = None) -> tuple[datetime, datetime | None]:
    """UTC start of the first and end of the last occurrence; None when open-ended (or when
    finding the last one takes more than VALIDATION_UNITS, a child of `budget` when given)."""
    rules = build(series, budget.child(VALIDATION_UNITS) if budget else Budget(VALIDATION_UNITS))
    first = next(iter(rules), None)
    if first is None:  # every instance excluded: the series still occupies its own slot
        return series.to_utc(series.start_local), series.to_utc(series.end_local)
    first_utc = series.to_utc(first.replace(tzinfo=None))
    if not _finite(series):
        return first_utc, None
    last = first
    try:
        for count, generated in enumerate(rules):
            if count >= MAX_FINITE_OCCURRENCES:
                return first_utc, None
            last = generated
    except WorkLimitExceeded:
        return first_utc, None
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
