"""Which entries take part in a sync — kept in one place so the next filters (private events,
birthdays, working locations, per-user settings) extend these two functions only."""

from __future__ import annotations

from calsync.domain.activity import PROJECT_TASK
from calsync.google.models import Event
from calsync.store.models import Activity, Tenant

#: Google event types that are appointments (birthdays, focus time ... are not)
IMPORTED_EVENT_TYPES = ("default", None)


def exportable(tenant: Tenant, activity: Activity) -> bool:
    """Whether a CRM activity is pushed to Google: the owner's live activities of an exported
    type, never project tasks. Recurring series follow in the recurrence issue."""
    return (
        activity.deleted_at is None
        and activity.type_key != PROJECT_TASK
        and activity.type_key in (tenant.exported_type_keys or ())
        and activity.recurring_parent_id is None
        and not activity.recurrence
    )


def importable(event: Event) -> bool:
    """Whether a Google event becomes an activity (single appointments for now)."""
    return (
        event.event_type in IMPORTED_EVENT_TYPES
        and not event.recurrence
        and event.recurring_event_id is None
    )
