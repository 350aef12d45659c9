"""The fields a sync maps between a CRM activity and a Google event, normalised and hashed.

Change detection compares content, not timestamps: each side's current fields are normalised
the same way, and a side has changed iff its hash differs from the hash stored at the last sync.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime
from typing import Any

VISIBILITY_DEFAULT = "default"
TRANSPARENCY_DEFAULT = "opaque"

# Fields that only make sense together are merged as one unit: moving an event changes start and
# end together, and a recurrence's EXDATEs name occurrences by their start. Taking start from one
# side and end from the other could produce an entry that ends before it starts.
UNITS: dict[str, tuple[str, ...]] = {
    "summary": ("summary",),
    "description": ("description",),
    "location": ("location",),
    "visibility": ("visibility",),
    "transparency": ("transparency",),
    "schedule": ("start", "end", "all_day", "time_zone", "recurrence"),
    # only an exception of a series can be cancelled and stay (a cancelled occurrence)
    "status": ("cancelled",),
}


@dataclass(frozen=True)
class SyncFields:
    """The mapped fields in canonical form.

    `start`/`end` are ISO dates for all-day entries (Google's exclusive end date) and UTC instants
    (`YYYY-MM-DDTHH:MM:SSZ`) for timed ones; `time_zone` is the IANA zone the wall clock is kept
    in; `recurrence` holds RRULE/EXDATE/RDATE lines, sorted.
    """

    summary: str
    description: str
    location: str
    start: str
    end: str
    all_day: bool
    time_zone: str
    visibility: str = VISIBILITY_DEFAULT
    transparency: str = TRANSPARENCY_DEFAULT
    recurrence: tuple[str, ...] = ()
    cancelled: bool = False

    def unit(self, name: str) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in UNITS[name])

    def with_unit(self, name: str, value: tuple[Any, ...]) -> SyncFields:
        return replace(self, **dict(zip(UNITS[name], value, strict=True)))

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON data: what a link stores as its merge base, and what
        `content_hash` digests. Spelled out rather than read from the dataclass's field list
        (a first import asks it of every event); a test pins it to every field, `recurrence`
        as a list and `cancelled` only when set."""
        data: dict[str, Any] = {
            "summary": self.summary,
            "description": self.description,
            "location": self.location,
            "start": self.start,
            "end": self.end,
            "all_day": self.all_day,
            "time_zone": self.time_zone,
            "visibility": self.visibility,
            "transparency": self.transparency,
            "recurrence": list(self.recurrence),
        }
        if self.cancelled:  # hashes of entries that cannot be cancelled stay as they were
            data["cancelled"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncFields:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["recurrence"] = tuple(values.get("recurrence") or ())
        return cls(**values)


def text(value: str | None) -> str:
    """Line endings and trailing white space differ between clients; the words do not."""
    if not value:
        return ""
    if "\n" not in value and "\r" not in value:
        return value.strip()  # one line (most titles and places): the same, without the split
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in value.split("\n")).strip()


def instant(value: date | datetime) -> str:
    """Canonical form of a start or end: an ISO date, or a UTC instant to the second."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timed values must be timezone-aware")
        utc = value.astimezone(UTC)
        if utc.year >= 1000:  # isoformat is several times faster than strftime, same text
            # (to the second it truncates, as replace(microsecond=0) did; "+00:00" cut off)
            return utc.isoformat(timespec="seconds")[:19] + "Z"
        return utc.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def recurrence_lines(lines: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """RRULE/EXDATE/RDATE lines in a stable order, upper-cased property names, no blanks."""
    if not lines:
        return ()  # most entries do not recur
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        name, sep, rest = line.partition(":")
        if not sep:
            out.append(line.upper())
            continue
        head = name.upper()
        if head.startswith(("EXDATE", "RDATE")):
            rest = ",".join(sorted(v.strip().upper() for v in rest.split(",") if v.strip()))
        else:
            rest = ";".join(sorted(p.strip().upper() for p in rest.split(";") if p.strip()))
        out.append(f"{head}:{rest}")
    return tuple(sorted(out))


def make(
    *,
    summary: str | None,
    description: str | None,
    location: str | None,
    start: date | datetime,
    end: date | datetime,
    time_zone: str,
    visibility: str | None = None,
    transparency: str | None = None,
    recurrence: tuple[str, ...] | list[str] | None = None,
    cancelled: bool = False,
) -> SyncFields:
    """Normalise raw values from either side into `SyncFields`."""
    all_day = not isinstance(start, datetime)
    if all_day == isinstance(end, datetime):
        raise ValueError("start and end must both be dates or both be date-times")
    return SyncFields(
        summary=text(summary),
        description=text(description),
        location=text(location),
        start=instant(start),
        end=instant(end),
        all_day=all_day,
        time_zone=time_zone,
        visibility=visibility or VISIBILITY_DEFAULT,
        transparency=transparency or TRANSPARENCY_DEFAULT,
        recurrence=recurrence_lines(recurrence),
        cancelled=cancelled,
    )


#: json.dumps(..., sort_keys=True, separators=(",", ":")) builds this encoder on every call;
#: made once it writes the same text a third faster (a hash per event of an import)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def canonical_json(data: Any) -> str:
    """JSON text that depends on the data alone: keys sorted, no spaces. What every field hash
    digests, and what the bulk import stores as a link's snapshot (so it is written once)."""
    return _CANONICAL.encode(data)


def digest(canonical: str) -> str:
    """The hash of a `canonical_json` text."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def hash_of(data: Any) -> str:
    """A stable digest of JSON data, whatever the order of its keys."""
    return digest(canonical_json(data))


def content_hash(values: SyncFields) -> str:
    """A stable digest of the canonical fields (what a link stores per side)."""
    return hash_of(values.to_json())


def changed_units(before: SyncFields, after: SyncFields) -> frozenset[str]:
    return frozenset(name for name in UNITS if before.unit(name) != after.unit(name))
