"""The CRM calendar entry (activity): its fields, their limits and how they are validated.

Pure rules, no I/O. `validate()` turns a loosely typed draft (what an API caller or the sync
engine proposes) into `ActivityValues` (what the store keeps), or raises `ActivityInvalid`
listing every problem with the field it concerns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from . import recurrence as rec

# Google's own limits or below, so whatever the CRM stores also fits into Google Calendar.
MAX_SUBJECT_CHARS = 1024
MAX_LOCATION_CHARS = 1024
MAX_DESCRIPTION_BYTES = 8 * 1024
MAX_ATTENDEES = 200
MIN_YEAR, MAX_YEAR = 1900, 2999

VISIBILITIES = ("default", "public", "private", "confidential")
TRANSPARENCIES = ("opaque", "transparent")
STATUSES = ("confirmed", "tentative", "cancelled")
RESPONSE_STATUSES = ("needsAction", "declined", "tentative", "accepted")

PROJECT_TASK = "project_task"
PERSONAL = "personal"
BUILT_IN_TYPES = {
    "meeting": "Meeting",
    "call": "Call",
    "task": "Task",
    PERSONAL: "Personal",
    PROJECT_TASK: "Project task",
}
TYPE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_Bad = Callable[[str, str, str], None]


@dataclass(frozen=True)
class FieldError:
    field: str
    code: str
    message: str


class ActivityInvalid(ValueError):
    """One or more fields break a rule; `errors` says which and why."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class Attendee:
    email: str
    display_name: str | None = None
    response_status: str = "needsAction"
    optional: bool = False


@dataclass(frozen=True)
class ActivityDraft:
    """Proposed field values; times may be dates, naive or aware datetimes."""

    start: date | datetime | None
    end: date | datetime | None
    subject: str = ""
    description: str | None = None
    location: str | None = None
    all_day: bool | None = None
    time_zone: str | None = None
    visibility: str = "default"
    transparency: str = "opaque"
    status: str = "confirmed"
    attendees: Sequence[Attendee] = ()
    recurrence: Sequence[str] | None = None
    original_start: date | datetime | None = None


@dataclass(frozen=True)
class Timing:
    """When an entry happens: wall clock in its zone, plus the UTC instants."""

    all_day: bool
    time_zone: str
    start_local: datetime
    end_local: datetime
    start_utc: datetime
    end_utc: datetime

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class ActivityValues:
    """A validated activity, ready to store."""

    subject: str
    description: str | None
    location: str | None
    timing: Timing
    range_start_utc: datetime
    range_end_utc: datetime | None
    visibility: str
    transparency: str
    status: str
    attendees: tuple[Attendee, ...]
    recurrence: tuple[str, ...] | None
    original_start_local: datetime | None = None


@cache
def zone_names() -> frozenset[str]:
    """The canonical IANA zones (and UTC): not the system's `localtime`, `Factory` (no zone),
    nor the `posix/` and `right/` copies (the latter counts leap seconds: Google has no such)."""
    names = {
        name
        for name in available_timezones()
        if name not in ("localtime", "Factory", "posixrules")
        and not name.startswith(("posix/", "right/"))
    }
    return frozenset(names | {"UTC"})


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone `name` (raises ValueError for anything else)."""
    if name not in zone_names():
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Oslo)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Oslo)") from exc


def series_of(values: ActivityValues) -> rec.Series:
    t = values.timing
    return rec.Series(t.all_day, t.zone, t.start_local, t.end_local, values.recurrence or ())


def validate(draft: ActivityDraft, parent: rec.Series | None = None) -> ActivityValues:
    """Check every field; `parent` is the master's series when the draft is an exception."""
    errors: list[FieldError] = []

    def bad(name: str, code: str, message: str) -> None:
        errors.append(FieldError(name, code, message))

    if len(draft.subject) > MAX_SUBJECT_CHARS:
        bad("subject", "too_long", f"at most {MAX_SUBJECT_CHARS} characters")
    if draft.location is not None and len(draft.location) > MAX_LOCATION_CHARS:
        bad("location", "too_long", f"at most {MAX_LOCATION_CHARS} characters")
    if (
        draft.description is not None
        and len(draft.description.encode("utf-8")) > MAX_DESCRIPTION_BYTES
    ):
        bad("description", "too_long", f"at most {MAX_DESCRIPTION_BYTES} bytes (UTF-8)")
    for name, value, allowed in (
        ("visibility", draft.visibility, VISIBILITIES),
        ("transparency", draft.transparency, TRANSPARENCIES),
        ("status", draft.status, STATUSES),
    ):
        if value not in allowed:
            bad(name, "invalid", f"must be one of {', '.join(allowed)}")
    attendees = _attendees(draft.attendees, bad)
    timing = _timing(draft, parent, bad)

    recurrence: tuple[str, ...] | None = None
    original_start_local: datetime | None = None
    range_start: datetime | None = None
    range_end: datetime | None = None
    if timing is not None:
        range_start, range_end = timing.start_utc, timing.end_utc
        if parent is not None:
            original_start_local = _original_start(draft, parent, bad)
            if draft.recurrence:
                bad("recurrence", "not_allowed", "an exception of a series cannot recur itself")
        elif draft.recurrence:
            try:
                recurrence = rec.normalise(
                    draft.recurrence,
                    all_day=timing.all_day,
                    zone=timing.zone,
                    start_local=timing.start_local,
                )
                series = rec.Series(
                    timing.all_day, timing.zone, timing.start_local, timing.end_local, recurrence
                )
                range_start, range_end = rec.bounds(series)
            except rec.RecurrenceError as exc:
                bad("recurrence", "invalid", str(exc))
    if errors or timing is None or range_start is None:
        raise ActivityInvalid(errors)
    return ActivityValues(
        subject=draft.subject,
        description=draft.description,
        location=draft.location,
        timing=timing,
        range_start_utc=range_start,
        range_end_utc=range_end,
        visibility=draft.visibility,
        transparency=draft.transparency,
        status=draft.status,
        attendees=attendees,
        recurrence=recurrence,
        original_start_local=original_start_local,
    )


def _attendees(items: Sequence[Attendee], bad: _Bad) -> tuple[Attendee, ...]:
    if len(items) > MAX_ATTENDEES:
        bad("attendees", "too_many", f"at most {MAX_ATTENDEES} attendees")
        return ()
    out: dict[str, Attendee] = {}
    for index, item in enumerate(items):
        email = item.email.strip().lower()
        if len(email) > 320 or not EMAIL.match(email):
            bad(f"attendees[{index}].email", "invalid", f"{item.email!r} is not an e-mail address")
            continue
        if item.response_status not in RESPONSE_STATUSES:
            bad(
                f"attendees[{index}].response_status",
                "invalid",
                f"must be one of {', '.join(RESPONSE_STATUSES)}",
            )
        if item.display_name is not None and len(item.display_name) > 200:
            bad(f"attendees[{index}].display_name", "too_long", "at most 200 characters")
        if email in out:
            bad(f"attendees[{index}].email", "duplicate", f"{email} is listed twice")
        out[email] = Attendee(email, item.display_name, item.response_status, item.optional)
    return tuple(out.values())


def _timing(draft: ActivityDraft, parent: rec.Series | None, bad: _Bad) -> Timing | None:
    zone_name = draft.time_zone or (parent.zone.key if parent else "UTC")
    try:
        zone = zone_of(zone_name)
    except ValueError as exc:
        bad("time_zone", "invalid", str(exc))
        return None
    start, end = draft.start, draft.end
    if start is None or end is None:
        for name, value in (("start", start), ("end", end)):
            if value is None:
                bad(name, "required", "required")
        return None
    is_date = not isinstance(start, datetime)
    all_day = draft.all_day if draft.all_day is not None else is_date
    for name, value in (("start", start), ("end", end)):
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            bad(name, "out_of_range", f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
            return None
    if all_day:
        if isinstance(start, datetime) or isinstance(end, datetime):
            bad("start", "date_expected", "all-day entries take dates (YYYY-MM-DD), not times")
            return None
        if end <= start:
            bad(
                "end",
                "end_before_start",
                "end must be after start; for all-day entries the end date is exclusive "
                f"(a one-day entry on {start.isoformat()} ends {date.fromordinal(start.toordinal() + 1).isoformat()})",
            )
            return None
        start_local, end_local = datetime.combine(start, time()), datetime.combine(end, time())
        start_utc = start_local.replace(tzinfo=zone).astimezone(UTC)
        end_utc = end_local.replace(tzinfo=zone).astimezone(UTC)
    else:
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            bad(
                "start", "datetime_expected", "timed entries take date-times; set all_day for dates"
            )
            return None
        (start_local, start_utc), (end_local, end_utc) = _placed(start, zone), _placed(end, zone)
        if end_utc <= start_utc:
            bad("end", "end_before_start", "end must be after start")
            return None
    return Timing(all_day, zone.key, start_local, end_local, start_utc, end_utc)


def _placed(value: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A timed value's wall clock in `zone` (`_local`) and the UTC instant of that wall clock.
    For an aware UTC value at a whole second (a sync import's times: mapping.draft) the
    instant is the value itself, without the conversion back from the wall clock: the wall
    clock keeps its fold, so it converts back to the same instant (a test pins both alike)."""
    if value.tzinfo is UTC and not value.microsecond:
        return value.astimezone(zone).replace(tzinfo=None), value
    local = _local(value, zone)
    return local, local.replace(tzinfo=zone).astimezone(UTC)


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    """Wall clock in `zone`: naive values already are; aware ones are converted."""
    if value.tzinfo is None:
        return value.replace(microsecond=0)
    return value.astimezone(zone).replace(tzinfo=None, microsecond=0)


def _original_start(draft: ActivityDraft, parent: rec.Series, bad: _Bad) -> datetime | None:
    original = draft.original_start
    if original is None:
        bad("original_start", "required", "an exception needs the original start of its occurrence")
        return None
    if not MIN_YEAR <= original.year <= MAX_YEAR:
        bad("original_start", "out_of_range", f"the year must be between {MIN_YEAR} and {MAX_YEAR}")
        return None
    if parent.all_day:
        if isinstance(original, datetime):
            bad("original_start", "date_expected", "the series is all-day: give a date")
            return None
        local = datetime.combine(original, time())
    else:
        if not isinstance(original, datetime):
            bad("original_start", "datetime_expected", "the series is timed: give a date-time")
            return None
        local = _local(original, parent.zone)
    try:
        generated = rec.is_occurrence(parent, local)
    except rec.RecurrenceError as exc:
        bad("original_start", "invalid", str(exc))
        return None
    if not generated:
        bad("original_start", "not_an_occurrence", "the series has no occurrence at this start")
        return None
    return local
