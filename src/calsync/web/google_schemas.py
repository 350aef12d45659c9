"""Request and response bodies of the Google connection API (users' connections, service account)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field

from calsync.domain.direction import Direction
from calsync.store.statuses import AuthMode, BindingRole, ConnectionStatus, PrivateEvents

from .schemas import Strict

# Request fields and the API's own states spell the stored values out as Literals (an enum
# request field would answer a wrong value with the error code `enum` instead of
# `literal_error`); an assertion ties each to its enum. Responses of stored values use the enums.
#: ConnectionStatus as the API shows it: a revoked or disconnected connection is `not_connected`
ConnectionState = Literal["not_connected", "connected", "needs_reauth", "error"]
DirectionName = Literal["two_way", "google_to_crm", "crm_to_google"]  # Direction
PrivateEventsName = Literal["import", "busy", "skip"]  # PrivateEvents
RoleName = Literal["import", "export", "both", "unselected"]  # BindingRole
assert set(get_args(ConnectionState)) - {"not_connected"} < set(ConnectionStatus)
assert set(get_args(DirectionName)) == set(Direction)
assert set(get_args(PrivateEventsName)) == set(PrivateEvents)
assert set(get_args(RoleName)) == set(BindingRole)
CalendarId = Annotated[str, Field(min_length=1, max_length=1024)]


class Problem(BaseModel):
    """What went wrong, in words a user can act on."""

    code: str
    message: str
    remedy: str | None = None


class ConnectOut(BaseModel):
    authorization_url: str = Field(description="Send the user's browser here (Google's consent)")
    redirect_uri: str = Field(description="Where Google sends the browser back (callback)")
    expires_in: int = Field(description="Seconds the link stays valid; it works only once")


class CalendarOut(BaseModel):
    id: str = Field(description="Google's calendar id: use it in settings, never the name")
    summary: str | None
    access_role: str | None = Field(description="owner, writer, reader or freeBusyReader")
    primary: bool
    writable: bool = Field(description="Can be the export calendar (owner or writer)")
    import_: bool = Field(serialization_alias="import", description="Flows into the CRM")
    export: bool = Field(description="Receives the CRM's new entries")


class RunCounts(BaseModel):
    pulled: int = 0
    pushed: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    linked: int = 0
    conflicts: int = 0
    issues: int = 0


class RunOut(BaseModel):
    id: uuid.UUID | None
    binding_id: uuid.UUID
    calendar_id: str
    calendar_name: str | None = Field(default=None, description="The calendar's name in Google")
    calendar_syncing: bool = Field(
        default=True, description="false: the calendar was unticked and no longer syncs"
    )
    trigger: str
    full_sync: bool
    outcome: str
    started_at: datetime | None
    finished_at: datetime | None
    counts: RunCounts
    error: Problem | None = None


class PushTwinOut(BaseModel):
    """The second push channel of an import calendar (its twin)."""

    state: Literal["active", "expiring", "none"]
    expires_at: datetime | None
    suspect_since: datetime | None = None


class PushChannelOut(BaseModel):
    """A Google push channel of an import calendar: active, expiring (renewal due) or none
    (polling only until it is registered again)."""

    calendar_id: str
    state: Literal["active", "expiring", "none"]
    expires_at: datetime | None
    #: since when the channel is under suspicion (it missed a change, or the echo of calsync's
    #: own write): calsync polls the calendar every `polled_every_seconds` meanwhile and makes
    #: a new channel; it clears by itself when a notification arrives. None: trusted
    suspect_since: datetime | None = None
    #: set while no channel of the calendar is trusted (this one and its twin suspect or
    #: gone): then the calendar's changes arrive by polling only
    polled_every_seconds: int | None = None
    #: the calendar's second channel (CALSYNC_PUSH_CHANNELS_PER_CALENDAR=2): while either
    #: delivers, changes arrive in real time and a suspect one is replaced. None: no twin
    twin: PushTwinOut | None = None


class ListChannelOut(BaseModel):
    """The connection's Google calendarList push channel, which notices calendars deleted or
    unshared: active, expiring (renewal due) or none (noticed at the next sync instead)."""

    state: Literal["active", "expiring", "none"]
    expires_at: datetime | None


SyncState = Literal["on", "off", "nothing_selected", "paused", "not_connected"]


class ConnectionOut(BaseModel):
    status: ConnectionState
    google_email: str | None
    linked_at: datetime | None = Field(
        default=None, description="When this Google account was linked (it last changed)"
    )
    auth_mode: AuthMode
    enabled: bool
    sync_state: SyncState = Field(
        default="not_connected",
        description="on; off (switched off); nothing_selected (on, but no calendar ticked: "
        "nothing to do); paused (every chosen calendar paused, see GET .../google/calendars); "
        "not_connected",
    )
    direction: DirectionName
    private_events: PrivateEventsName
    calendars: list[CalendarOut]
    import_calendar_ids: list[str]
    export_calendar_id: str | None
    last_sync_at: datetime | None
    last_run: RunOut | None
    last_error: Problem | None
    push_channels: list[PushChannelOut] = []
    list_channel: ListChannelOut = ListChannelOut(state="none", expires_at=None)


class SettingsPatch(Strict):
    """Only the fields sent change. Calendars are Google calendar ids (GET .../google)."""

    enabled: bool | None = None
    import_calendar_ids: list[CalendarId] | None = Field(default=None, max_length=50)
    export_calendar_id: CalendarId | None = Field(
        default=None, description="null: CRM entries go to no calendar"
    )
    direction: DirectionName | None = None
    private_events: PrivateEventsName | None = None


class SettingsWarning(BaseModel):
    """What a settings change will do that the user may not expect."""

    code: Literal["nothing_to_sync", "export_calendar_moves"]
    message: str
    count: int | None = Field(default=None, description="How many CRM entries move")
    from_calendar: str | None = None
    to_calendar: str | None = None


class SettingsPreview(BaseModel):
    warnings: list[SettingsWarning] = Field(
        description="Empty: the change has no consequence worth a confirmation"
    )


class SyncIn(Strict):
    full: bool = Field(default=False, description="Relist the whole window instead of changes")
    wait: bool = Field(default=False, description="Answer when the sync has finished")


class SyncOut(BaseModel):
    status: Literal["finished", "queued"]
    full: bool
    outcome: str | None = Field(description="ok, partial, needs_reauth, ... (finished only)")
    counts: RunCounts | None
    runs: list[RunOut]
    calendars: list[str] = Field(description="The calendars synced (or queued)")
    error: Problem | None = None


class RunList(BaseModel):
    runs: list[RunOut]


BindingState = Literal["syncing", "off", "paused", "disabled", "unselected"]


class BindingOut(BaseModel):
    """A calendar calsync keeps for the user: what it does and whether it is paused, and why."""

    id: uuid.UUID = Field(description="The binding's id (resume with it)")
    calendar_id: str
    calendar_name: str | None
    role: RoleName
    direction: DirectionName
    state: BindingState = Field(
        description="syncing; off (sync switched off); paused (the mass-delete guard held "
        "deletions back: resume it); disabled (calendar gone or write access lost); "
        "unselected (unticked: its entries stay in the CRM, no longer syncing)"
    )
    paused_at: datetime | None
    paused_reason: str | None
    guarded_deletions: int | None = Field(
        description="How many deletions the mass-delete guard held back"
    )
    deletions_confirmed: bool = Field(
        description="The user confirmed the held-back deletions; the next run applies them"
    )
    last_sync_at: datetime | None
    last_success_at: datetime | None


class BindingList(BaseModel):
    calendars: list[BindingOut]


class ResumeIn(Strict):
    confirm_deletions: bool = Field(
        description="true: the next run applies the deletions Google reported to the CRM. "
        "false: you restored the entries in Google; the next run finds them and deletes "
        "nothing (if they are still missing, the calendar pauses again)"
    )
    wait: bool = Field(default=False, description="Answer when the sync it starts has finished")


class ResumeOut(BaseModel):
    calendar: BindingOut
    status: Literal["finished", "queued"]
    run: RunOut | None = Field(description="The sync the resume started (with wait)")


class ConflictOut(BaseModel):
    """A field changed on both sides: the value each side had, and which one calsync kept."""

    id: uuid.UUID
    calendar_id: str
    calendar_name: str | None
    activity_id: uuid.UUID | None
    google_event_id: str | None
    field: str
    base_value: Any = Field(description="The value both sides had at the last sync")
    crm_value: Any
    google_value: Any
    decision: str = Field(description="The side whose value was kept: crm or google")
    policy: str
    decided_at: datetime


class ConflictList(BaseModel):
    conflicts: list[ConflictOut]
    total: int
    limit: int
    offset: int


class IssueEvent(BaseModel):
    calendar_id: str
    google_event_id: str | None
    activity_id: uuid.UUID | None


class IssueOut(BaseModel):
    id: uuid.UUID
    code: str
    message: str
    remedy: str | None
    event: IssueEvent
    occurrences: int
    first_seen_at: datetime
    last_seen_at: datetime


class IssueList(BaseModel):
    issues: list[IssueOut]


class DisconnectOut(BaseModel):
    status: Literal["not_connected"]
    revoked_at_google: bool
    channels_stopped: int
    warnings: list[Problem]


# service account


class ServiceAccountOut(BaseModel):
    auth_mode: AuthMode
    service_account_email: str
    client_id: str | None = Field(
        description="Authorise this id for domain-wide delegation in the Google Admin console"
    )
    key_format: Literal["json", "p12"]
    scopes: list[str]


class ServiceAccountTestIn(Strict):
    email: Annotated[str, Field(max_length=320)] | None = Field(
        default=None, description="The Workspace user to act as; default: the caller"
    )


class ServiceAccountTestOut(BaseModel):
    ok: bool
    email: str
    service_account_email: str
    calendars: int = Field(description="Calendars in the user's list, as seen by calsync")
