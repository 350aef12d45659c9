"""Google event ↔ canonical `SyncFields` ↔ activity values.

It lives in sync/ because it knows both sides: `domain` must not import `google`, and `google`
knows nothing of activities. Both directions produce `SyncFields` through `fields.make`, so the
same appointment hashes the same whichever side it was read from.

All-day entries carry no time zone on Google's side (a date is a date), so their `time_zone` is
not a synced field: it is blank in `SyncFields` and the activity keeps its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from calsync.domain.activity import ActivityDraft, Attendee
from calsync.domain.fields import UNITS, SyncFields, make
from calsync.google.models import Event
from calsync.store.models import Activity

#: extendedProperties.private keys that let a lost link be rebuilt from the event alone
ACTIVITY_KEY = "calsync_activity_id"
TENANT_KEY = "calsync_tenant_id"


class Unmappable(ValueError):
    """A Google event calsync cannot represent (no start or end)."""


def _zone_or_utc(name: str | None) -> str:
    if not name:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return "UTC"
    return name


def event_fields(event: Event, calendar_zone: str | None) -> SyncFields:
    """The canonical fields of a (non-cancelled) Google event."""
    start, end = event.start, event.end
    if start is None or end is None:
        raise Unmappable("the event has no start or end")
    if start.date is not None and end.date is not None:
        s: date | datetime = start.date
        e: date | datetime = end.date
        zone = ""
    elif start.date_time is not None and end.date_time is not None:
        zone = _zone_or_utc(start.time_zone or calendar_zone)
        s, e = _aware(start.date_time, zone), _aware(end.date_time, zone)
    else:
        raise Unmappable("the event mixes a date and a date-time")
    return make(
        summary=event.summary,
        description=event.description,
        location=event.location,
        start=s,
        end=e,
        time_zone=zone,
        visibility=event.visibility,
        transparency=event.transparency,
        recurrence=event.recurrence,
    )


def _aware(value: datetime, zone: str) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(zone))


def activity_fields(activity: Activity) -> SyncFields:
    """The canonical fields of a stored activity."""
    if activity.all_day:
        s: date | datetime = activity.start_local.date()
        e: date | datetime = activity.end_local.date()
        zone = ""
    else:
        s, e, zone = activity.start_utc, activity.end_utc, activity.time_zone
    return make(
        summary=activity.subject,
        description=activity.description,
        location=activity.location,
        start=s,
        end=e,
        time_zone=zone,
        visibility=activity.visibility,
        transparency=activity.transparency,
        recurrence=activity.recurrence,
    )


def _time(value: str, all_day: bool, zone: str) -> dict[str, Any]:
    if all_day:
        return {"date": value, "dateTime": None, "timeZone": None}
    instant = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    local = instant.astimezone(ZoneInfo(zone))
    return {"dateTime": local.isoformat(), "timeZone": zone, "date": None}


def event_body(
    values: SyncFields, units: Iterable[str] | None = None, *, before: SyncFields | None = None
) -> dict[str, Any]:
    """The Google fields of `units` (all when None), ready for insert or patch."""
    chosen = set(UNITS) if units is None else set(units)
    body: dict[str, Any] = {}
    if "summary" in chosen:
        body["summary"] = values.summary
    if "description" in chosen:
        body["description"] = values.description
    if "location" in chosen:
        body["location"] = values.location
    if "visibility" in chosen:
        body["visibility"] = values.visibility
    if "transparency" in chosen:
        body["transparency"] = values.transparency
    if "schedule" in chosen:
        body["start"] = _time(values.start, values.all_day, values.time_zone)
        body["end"] = _time(values.end, values.all_day, values.time_zone)
        if values.recurrence:
            body["recurrence"] = list(values.recurrence)
        elif before is not None and before.recurrence:
            body["recurrence"] = None  # patch: null clears
    return body


def insert_body(
    activity: Activity, values: SyncFields, event_id: str, tenant_id: uuid.UUID
) -> dict[str, Any]:
    """A whole new event for `activity`, under its deterministic id, tagged with its id."""
    body = {k: v for k, v in event_body(values).items() if v is not None}
    body["start"] = {k: v for k, v in body["start"].items() if v is not None}
    body["end"] = {k: v for k, v in body["end"].items() if v is not None}
    body["id"] = event_id
    body["extendedProperties"] = {
        "private": {ACTIVITY_KEY: str(activity.id), TENANT_KEY: str(tenant_id)}
    }
    if activity.attendees:
        body["attendees"] = [
            {
                "email": a.email,
                **({"displayName": a.display_name} if a.display_name else {}),
                **({"optional": True} if a.optional else {}),
            }
            for a in activity.attendees
        ]
    return body


def tagged_activity_id(event: Event, tenant_id: uuid.UUID) -> uuid.UUID | None:
    """The activity id calsync wrote into the event, if it was written for this tenant."""
    ext = event.extended_properties
    private = (ext.private if ext is not None else None) or {}
    raw, tenant = private.get(ACTIVITY_KEY), private.get(TENANT_KEY)
    if raw is None or tenant != str(tenant_id):
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def draft(
    values: SyncFields, activity: Activity | None, fallback_zone: str | None
) -> ActivityDraft:
    """Activity fields for `values`; what Google does not carry comes from `activity`."""
    if values.all_day:
        zone = activity.time_zone if activity is not None else _zone_or_utc(fallback_zone)
        start: date | datetime = date.fromisoformat(values.start)
        end: date | datetime = date.fromisoformat(values.end)
    else:
        zone = values.time_zone
        start = datetime.strptime(values.start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        end = datetime.strptime(values.end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    attendees: tuple[Attendee, ...] = ()
    status = "confirmed"
    if activity is not None:
        attendees = tuple(
            Attendee(a.email, a.display_name, a.response_status, a.optional)
            for a in activity.attendees
        )
        status = activity.status
    return ActivityDraft(
        start=start,
        end=end,
        subject=values.summary,
        description=values.description or None,
        location=values.location or None,
        all_day=values.all_day,
        time_zone=zone,
        visibility=values.visibility,
        transparency=values.transparency,
        status=status,
        attendees=attendees,
        recurrence=list(values.recurrence) or None,
    )


def with_units(target: SyncFields, source: SyncFields, units: Iterable[str]) -> SyncFields:
    """`target` with `units` taken from `source`."""
    out = target
    for name in units:
        out = out.with_unit(name, source.unit(name))
    return replace(out)
