"""Google events built from calsync's canonical fields (`domain.fields.SyncFields`): the one
place that knows how an appointment is spelled on Google's wire (`start.dateTime` with a zone,
`date` for all-day, `status`, `extendedProperties.private` tags, guests).

The builders return typed `Event` models holding only the fields they set, so a patch carries
exactly the units it changes (`to_wire()` leaves out what was never set, and keeps a `None`
that was set on purpose: a patch's null clears a recurrence).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from calsync.domain.activity import Attendee as Guest
from calsync.domain.fields import UNITS, SyncFields

from .models import Attendee, Event, EventDateTime, ExtendedProperties


def _time(value: str, all_day: bool, zone: str, *, with_blanks: bool) -> EventDateTime:
    """A start or end: a date for all-day entries, else the wall clock in `zone`. A patch
    sets the other member to null (switching between all-day and timed); an insert leaves
    it out."""
    if all_day:
        day = date.fromisoformat(value)
        if with_blanks:
            return EventDateTime(date=day, date_time=None, time_zone=None)
        return EventDateTime(date=day)
    instant = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    local = instant.astimezone(ZoneInfo(zone))
    if with_blanks:
        return EventDateTime(date_time=local, time_zone=zone, date=None)
    return EventDateTime(date_time=local, time_zone=zone)


def event_changes(
    values: SyncFields,
    units: Iterable[str] | None = None,
    *,
    before: SyncFields | None = None,
    restore: bool = False,
) -> Event:
    """The Google fields of `units` (all when None), for a patch; `restore` undeletes the
    event (its status back to confirmed) while writing them."""
    chosen = set(UNITS) if units is None else set(units)
    event = Event()
    if "summary" in chosen:
        event.summary = values.summary
    if "description" in chosen:
        event.description = values.description
    if "location" in chosen:
        event.location = values.location
    if "visibility" in chosen:
        event.visibility = values.visibility
    if "transparency" in chosen:
        event.transparency = values.transparency
    if "schedule" in chosen:
        event.start = _time(values.start, values.all_day, values.time_zone, with_blanks=True)
        event.end = _time(values.end, values.all_day, values.time_zone, with_blanks=True)
        if values.recurrence:
            event.recurrence = list(values.recurrence)
        elif before is not None and before.recurrence:
            event.recurrence = None  # patch: null clears
    if "status" in chosen:
        event.status = "cancelled" if values.cancelled else "confirmed"
    if restore:
        event.status = "confirmed"
    return event


def new_event(
    values: SyncFields,
    event_id: str,
    *,
    tags: Mapping[str, str],
    guests: Iterable[Guest] = (),
) -> Event:
    """A whole new event under `event_id`, tagged (`extendedProperties.private`) so a lost link
    can be rebuilt from the event alone, with the CRM's guests (their answers are Google's)."""
    event = Event(
        id=event_id,
        summary=values.summary,
        description=values.description,
        location=values.location,
        visibility=values.visibility,
        transparency=values.transparency,
        start=_time(values.start, values.all_day, values.time_zone, with_blanks=False),
        end=_time(values.end, values.all_day, values.time_zone, with_blanks=False),
        status="cancelled" if values.cancelled else "confirmed",
        extended_properties=ExtendedProperties(private=dict(tags)),
    )
    if values.recurrence:
        event.recurrence = list(values.recurrence)
    attendees = [_attendee(guest) for guest in guests]
    if attendees:
        event.attendees = attendees
    return event


def _attendee(guest: Guest) -> Attendee:
    attendee = Attendee(email=guest.email)
    if guest.display_name:
        attendee.display_name = guest.display_name
    if guest.optional:
        attendee.optional = True
    return attendee
