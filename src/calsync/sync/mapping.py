"""Google event ↔ canonical `SyncFields` ↔ activity values.

It lives in sync/ because it knows both sides: `domain` must not import `google`, and `google`
knows nothing of activities. Both directions produce `SyncFields` through `fields.make`, so the
same appointment hashes the same whichever side it was read from. It reads Google's typed
models only; how `SyncFields` are spelled on Google's wire is `google.builders`.

All-day entries carry no time zone on Google's side (a date is a date), so their `time_zone` is
not a synced field: it is blank in `SyncFields` and the activity keeps its own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from calsync.domain.activity import RESPONSE_STATUSES as RESPONSES
from calsync.domain.activity import ActivityDraft, ActivityValues, Attendee
from calsync.domain.fields import SyncFields, make
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
        recurrence=None if event.recurring_event_id else event.recurrence,
        cancelled=event.cancelled and event.recurring_event_id is not None,
    )


def _aware(value: datetime, zone: str) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(zone))


def activity_fields(activity: Activity) -> SyncFields:
    """The canonical fields of a stored activity."""
    return _crm_fields(
        activity,
        all_day=activity.all_day,
        start_local=activity.start_local,
        end_local=activity.end_local,
        start_utc=activity.start_utc,
        end_utc=activity.end_utc,
        time_zone=activity.time_zone,
        recurrence=activity.recurrence,
        cancelled=activity.status == "cancelled" and activity.recurring_parent_id is not None,
    )


def values_fields(values: ActivityValues) -> SyncFields:
    """`activity_fields` of an activity about to be stored with `values` (the bulk import
    writes rows, not objects): the same canonical fields, so the same hash."""
    t = values.timing
    return _crm_fields(
        values,
        all_day=t.all_day,
        start_local=t.start_local,
        end_local=t.end_local,
        start_utc=t.start_utc,
        end_utc=t.end_utc,
        time_zone=t.time_zone,
        recurrence=list(values.recurrence) if values.recurrence else None,
        cancelled=False,  # not an exception: a cancelled entry is only ever an exception
    )


def imported_fields(g: SyncFields, values: ActivityValues) -> SyncFields:
    """`values_fields(values)` for `values` validated from `draft(g, None, …)` (a new entry
    from Google): `g` itself when validation kept what `g` says, one `make` per event fewer
    on a large import. `g` is canonical (from `make`) and `text` is idempotent, so the texts
    come out the same; what validation may change are times (the wall clock in the zone, to
    the second) and recurrence lines (normalised): those fall back to `values_fields`."""
    t = values.timing
    if g.recurrence or values.recurrence or g.cancelled or t.all_day != g.all_day:
        return values_fields(values)
    if g.all_day:
        same_time = (
            t.start_local.date().isoformat() == g.start and t.end_local.date().isoformat() == g.end
        )
    else:
        same_time = t.time_zone == g.time_zone and (
            _utc_instant(g.start) == t.start_utc and _utc_instant(g.end) == t.end_utc
        )
    same_text = (
        values.subject == g.summary
        and (values.description or "") == g.description
        and (values.location or "") == g.location
        and values.visibility == g.visibility
        and values.transparency == g.transparency
    )
    return g if same_time and same_text else values_fields(values)


def _crm_fields(
    texts: Activity | ActivityValues,
    *,
    all_day: bool,
    start_local: datetime,
    end_local: datetime,
    start_utc: datetime,
    end_utc: datetime,
    time_zone: str,
    recurrence: list[str] | None,
    cancelled: bool,
) -> SyncFields:
    """The CRM side's canonical fields, from an activity or the values of one (`texts` gives
    subject, description, location, visibility and transparency: both name them alike)."""
    if all_day:
        s: date | datetime = start_local.date()
        e: date | datetime = end_local.date()
        zone = ""
    else:
        s, e, zone = start_utc, end_utc, time_zone
    return make(
        summary=texts.subject,
        description=texts.description,
        location=texts.location,
        start=s,
        end=e,
        time_zone=zone,
        visibility=texts.visibility,
        transparency=texts.transparency,
        recurrence=recurrence,
        cancelled=cancelled,
    )


def tags(activity_id: uuid.UUID, tenant_id: uuid.UUID) -> dict[str, str]:
    """The private tags calsync writes into a new event (`tagged_activity_id` reads them)."""
    return {ACTIVITY_KEY: str(activity_id), TENANT_KEY: str(tenant_id)}


def guests(activity: Activity) -> tuple[Attendee, ...]:
    """The activity's guests as the domain knows them."""
    return tuple(
        Attendee(a.email, a.display_name, a.response_status, a.optional) for a in activity.attendees
    )


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
    values: SyncFields,
    activity: Activity | None,
    fallback_zone: str | None,
    *,
    attendees: tuple[Attendee, ...] | None = None,
    original_start: date | datetime | None = None,
    status: str | None = None,
) -> ActivityDraft:
    """Activity fields for `values`; what Google does not carry comes from `activity` (or the
    keyword arguments: Google's attendee list, an exception's original start and status)."""
    if values.all_day:
        zone = activity.time_zone if activity is not None else _zone_or_utc(fallback_zone)
        start: date | datetime = date.fromisoformat(values.start)
        end: date | datetime = date.fromisoformat(values.end)
    else:
        zone = values.time_zone
        start, end = _utc_instant(values.start), _utc_instant(values.end)
    current: tuple[Attendee, ...] = ()
    current_status = "confirmed"
    if activity is not None:
        current = tuple(
            Attendee(a.email, a.display_name, a.response_status, a.optional)
            for a in activity.attendees
        )
        current_status = activity.status
        if original_start is None and activity.original_start_local is not None:
            original_start = (
                activity.original_start_local.date()
                if activity.all_day
                else activity.original_start_local
            )
    if attendees is None:
        attendees = current
    if status is None:
        if original_start is not None:  # an exception: cancelled or not, as the fields say
            status = "cancelled" if values.cancelled else "confirmed"
        else:
            status = current_status
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
        original_start=original_start,
    )


def _utc_instant(text: str) -> datetime:
    """A `fields.instant` string ("…Z") back to an aware UTC datetime: fromisoformat reads
    the "Z" since Python 3.11 and is many times faster than strptime on a large import."""
    if text.endswith("Z") and len(text) == 20:
        return datetime.fromisoformat(text)  # tzinfo: datetime.UTC itself
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def event_attendees(event: Event) -> tuple[Attendee, ...] | None:
    """Google's guest list with responses (rooms and resources left out); None if not given."""
    if event.attendees is None:
        return None
    out: dict[str, Attendee] = {}
    for a in event.attendees:
        if a.resource or not a.email:
            continue
        email = a.email.strip().lower()
        status = a.response_status if a.response_status in RESPONSES else "needsAction"
        out[email] = Attendee(email, a.display_name, status or "needsAction", bool(a.optional))
    return tuple(out.values())


def original_start(event: Event, zone: str) -> date | datetime | None:
    """Where Google says an exception's occurrence originally was (aware, or a date)."""
    o = event.original_start_time
    if o is None:
        return None
    if o.date is not None:
        return o.date
    if o.date_time is not None:
        return _aware(o.date_time, _zone_or_utc(o.time_zone or zone))
    return None


def instance_id(master_event_id: str, all_day: bool, original_local: datetime, zone: str) -> str:
    """Google's id of one occurrence of a series: `<master>_<UTC start>` (a date if all-day)."""
    if all_day:
        return f"{master_event_id}_{original_local.strftime('%Y%m%d')}"
    utc = original_local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return f"{master_event_id}_{utc.strftime('%Y%m%dT%H%M%SZ')}"
