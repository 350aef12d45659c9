"""The fixed values of the stored status, role, kind and source columns, named once.

The columns stay plain strings (no database enum, no migration): a StrEnum member is the very
string the column holds and compares equal to it, so rows read back as `str` still match
`BindingStage.PAUSED`. The values are part of the REST API and of the data already stored:
never rename one, only add.
"""

from __future__ import annotations

from enum import StrEnum


class ConnectionStatus(StrEnum):
    """google_connection.status: the health of a user's link to Google."""

    CONNECTED = "connected"
    NEEDS_REAUTH = "needs_reauth"  # Google refused the token: the user signs in again
    REVOKED = "revoked"  # disconnected by the user (tokens revoked at Google)
    ERROR = "error"
    DISCONNECTED = "disconnected"


class AuthMode(StrEnum):
    """tenant.auth_mode and google_connection.auth_mode: how calsync reaches Google."""

    OAUTH = "oauth"  # each user signs in
    SERVICE_ACCOUNT = "service_account"  # the company's service account acts for every user


class PrivateEvents(StrEnum):
    """google_connection.private_events: what the sync does with a user's private Google events
    (and calendar_binding.private_events_applied: the policy its links were made under)."""

    IMPORT = "import"  # into the CRM like any other event
    BUSY = "busy"  # as a "Busy" block without the details
    SKIP = "skip"  # not at all


class BindingStage(StrEnum):
    """calendar_binding.stage: where a calendar's sync is."""

    INITIAL = "initial"  # the first full listing is still to come (no sync token)
    INCREMENTAL = "incremental"  # syncing with a sync token
    PAUSED = "paused"  # held by the mass-delete guard until the user confirms
    DISABLED = "disabled"  # stopped for good (e.g. the calendar is gone)


class BindingRole(StrEnum):
    """calendar_binding.role: what a calendar is for."""

    IMPORT = "import"  # its events come into the CRM
    EXPORT = "export"  # the CRM's entries are written into it
    BOTH = "both"
    #: unticked by the user: kept (switched off) with its links and history, so its entries
    #: stay in the CRM and ticking it again relinks them instead of importing them twice
    UNSELECTED = "unselected"


class LinkState(StrEnum):
    """event_link.state: how far an activity and its Google event are linked."""

    #: stored before the event is inserted in Google (under an id derived from the activity),
    #: so a retry after a crash adopts the event instead of writing a second one
    PENDING = "pending"
    LINKED = "linked"
    PARKED = "parked"  # could not be synced (an issue says why); retried later
    MOVING = "moving"  # being moved into the export calendar (committed before the request)
    #: an entry that became a project task, linked to an event calsync did not write: kept in
    #: both places, neither side written until its type changes again
    DETACHED = "detached"


class RunOutcome(StrEnum):
    """sync_run.outcome values the store writes itself; a finished run has the engine's
    outcome (sync/errors.py Outcome: ok, partial, failed …) in the same column."""

    RUNNING = "running"
    ABANDONED = "abandoned"  # its worker died: closed by the scheduler, never finished


class UserRole(StrEnum):
    """user.role."""

    ADMIN = "admin"  # manages the company: every user's activities, settings, keys
    USER = "user"


class ActivitySource(StrEnum):
    """activity.source: where an entry came from, for good (links come and go)."""

    CRM = "crm"  # made in the CRM: the only entries ever written into Google as new events
    GOOGLE = "google"  # imported from a Google calendar


class ChangeKind(StrEnum):
    """change.kind: what a change-feed entry did to its activity."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class ChangeOrigin(StrEnum):
    """change.origin: who made a change (the engine does not push back its own)."""

    API = "api"
    SYNC = "sync"
    CLI = "cli"


class Code(StrEnum):
    """sync_issue.code, sync_run.error_code, google_connection.last_error_code: the problems
    calsync itself reports (Google's own are google/errors.py's `google.*` codes). Named here,
    below every layer that writes one; sync/codes.py `TEXTS` gives each its message and remedy."""

    SYNC_IN_PROGRESS = "calsync.sync_in_progress"
    MASS_DELETE_GUARD = "calsync.mass_delete_guard"
    CALENDAR_UNSELECTED = "calsync.calendar_unselected"
    #: the user switched sync off for the calendar
    BINDING_DISABLED = "calsync.binding_disabled"
    #: the mass-delete guard paused the calendar (nothing else pauses)
    BINDING_PAUSED = "calsync.binding_paused"
    #: the calendar's stage is disabled: Google no longer lists it, or write access was lost
    BINDING_DISABLED_STAGE = "calsync.binding_disabled_stage"
    NOT_CONNECTED = "calsync.not_connected"
    CALENDAR_GONE = "calsync.calendar_gone"
    RUN_ABANDONED = "calsync.run_abandoned"
    AMBIGUOUS_MATCH = "calsync.ambiguous_match"
    EVENT_UNSUPPORTED = "calsync.event_unsupported"
    RECURRENCE_UNSUPPORTED = "calsync.recurrence_unsupported"
    RECURRENCE_INVALID = "calsync.recurrence_invalid"
    MOVE_FAILED = "calsync.move_failed"


class DeliveryStatus(StrEnum):
    """webhook_delivery.status: one outbound webhook message to one endpoint."""

    PENDING = "pending"  # not tried yet
    FAILED = "failed"  # the last attempt failed; another is scheduled
    SUCCEEDED = "succeeded"
    EXHAUSTED = "exhausted"  # every attempt of the schedule failed
