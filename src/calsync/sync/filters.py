"""What takes part in a sync and how (DESIGN.md rule 8), kept in one place: which activities
are exported, which Google events are imported, under which activity type, and which of them
the CRM may only read.

A read-only link is never written to Google: its activity follows Google, and a CRM edit of it
is undone by the next sync instead of failing with 403 on every run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time
from zoneinfo import ZoneInfo

from calsync.domain import recurrence as rec
from calsync.domain.activity import PROJECT_TASK
from calsync.domain.fields import SyncFields
from calsync.google.models import Event
from calsync.store.activities import made_in_crm
from calsync.store.models import Activity, Tenant
from calsync.store.statuses import PrivateEvents

from . import mapping
from .context import Ctx

#: Google event types that are not appointments of the person: never imported
SKIPPED_EVENT_TYPES = frozenset({"birthday", "workingLocation", "fromGmail"})
#: event types Google manages itself: imported, but the CRM may not change them
READ_ONLY_EVENT_TYPES = frozenset({"focusTime", "outOfOffice"})
PRIVATE_VISIBILITIES = frozenset({"private", "confidential"})

BUSY_TITLE = "Busy"

#: read-only reasons stored on a link
NOT_ORGANIZER = "not_organizer"
EVENT_TYPE = "event_type"
BUSY_BLOCK = "busy"
RECURRENCE = "recurrence"


def exportable(tenant: Tenant, activity: Activity) -> bool:
    """Whether a CRM activity is pushed to Google: the owner's live activities of an exported
    type, never project tasks. Exceptions of a series follow their master (see push)."""
    return (
        activity.deleted_at is None
        and activity.type_key != PROJECT_TASK
        and activity.type_key in (tenant.exported_type_keys or ())
    )


def exported_types(tenant: Tenant) -> list[str]:
    return [k for k in (tenant.exported_type_keys or ()) if k != PROJECT_TASK]


def policy_for(ctx: Ctx, activity: Activity | None) -> str:
    """The private-events policy that applies to an entry: the user's choice for entries that
    come from Google; an entry made in the CRM is the user's own and never subject to it
    (switching to "busy" or "skip" must not turn it into a busy block or delete it)."""
    if activity is not None and made_in_crm(activity):
        return PrivateEvents.IMPORT
    return ctx.settings.private_events


def policy_for_event(ctx: Ctx, event: Event) -> str:
    """`policy_for` before the activity is known: an event calsync wrote for a CRM entry (or
    an occurrence of one) carries the entry's id."""
    if mapping.tagged_activity_id(event, ctx.settings.tenant_id) is not None:
        return PrivateEvents.IMPORT
    return ctx.settings.private_events


def is_private(event: Event) -> bool:
    return event.visibility in PRIVATE_VISIBILITIES


def importable(event: Event, private_events: str = PrivateEvents.IMPORT) -> bool:
    """Whether a Google event becomes (or stays) an activity."""
    if event.event_type in SKIPPED_EVENT_TYPES:
        return False
    return not (private_events == PrivateEvents.SKIP and is_private(event))


def import_type(ctx: Ctx, event: Event) -> str:
    """Private Google entries get the tenant's personal type, all others the default type."""
    if is_private(event):
        return ctx.settings.tenant.personal_import_type_key
    return ctx.settings.tenant.default_import_type_key


def organised_elsewhere(ctx: Ctx, event: Event) -> bool:
    """The event is someone else's meeting (this calendar holds an attendee's copy)."""
    organizer = event.organizer
    if organizer is None:
        return False
    if organizer.self_ is not None:
        return not organizer.self_
    email = (organizer.email or "").lower()
    return bool(email) and email not in {
        ctx.settings.calendar_id.lower(),
        (ctx.settings.google_email or "").lower(),
    }


def read_only(ctx: Ctx, event: Event, policy: str | None = None) -> str | None:
    """Why the CRM may not write this event, or None (`policy`: see `policy_for`)."""
    if event.event_type in READ_ONLY_EVENT_TYPES:
        return EVENT_TYPE
    if is_private(event) and (policy or ctx.settings.private_events) == PrivateEvents.BUSY:
        return BUSY_BLOCK
    if organised_elsewhere(ctx, event):
        return NOT_ORGANIZER
    if not representable(event, ctx.settings.time_zone):
        return RECURRENCE
    return None


def representable(event: Event, calendar_zone: str | None) -> bool:
    """Whether the CRM can hold the event's recurrence lines (an exotic RRULE it cannot)."""
    if not event.recurrence:
        return True
    try:
        g = mapping.event_fields(event, calendar_zone)
    except mapping.Unmappable:
        return True  # reported by the caller
    return _recurrence_ok(g, calendar_zone)


def _recurrence_ok(g: SyncFields, calendar_zone: str | None) -> bool:
    draft = mapping.draft(g, None, calendar_zone)
    zone = ZoneInfo(draft.time_zone or "UTC")
    start = draft.start
    assert start is not None
    if isinstance(start, datetime):
        local = start.astimezone(zone).replace(tzinfo=None)
    else:
        local = datetime.combine(start, time())
    try:
        rec.normalise(list(g.recurrence), all_day=g.all_day, zone=zone, start_local=local)
    except rec.RecurrenceError:
        return False
    return True


def google_fields(ctx: Ctx, event: Event, policy: str | None = None) -> SyncFields:
    """The fields of a Google event as the CRM holds them: a busy block without its details,
    a series the CRM cannot represent as its first occurrence (read-only)."""
    g = mapping.event_fields(event, ctx.settings.time_zone)
    if is_private(event) and (policy or ctx.settings.private_events) == PrivateEvents.BUSY:
        g = replace(g, summary=BUSY_TITLE, description="", location="")
    if g.recurrence and not _recurrence_ok(g, ctx.settings.time_zone):
        g = replace(g, recurrence=())
    return g
