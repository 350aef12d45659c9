"""Request and response bodies of the REST API (the wire format lives here, nowhere else)."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from calsync.domain import activity as rules
from calsync.domain.merge import Policy
from calsync.store.statuses import AuthMode, ChangeKind, UserRole


def _clean(value: str) -> str:
    """NUL and lone surrogates cannot be stored (PostgreSQL text, UTF-8): refuse them here."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


Text = Annotated[str, AfterValidator(_clean)]
Email = Annotated[
    str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), AfterValidator(_clean)
]
TypeKey = Annotated[str, Field(pattern=rules.TYPE_KEY.pattern, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_clean)]
GoogleAccountPolicy = Literal["company", "own_email", "any"]  # domain/accounts.py
# Request fields spell the stored values out as Literals (an enum field would answer a wrong
# value with the error code `enum` instead of `literal_error`); responses use the enums.
Role = Literal["admin", "user"]  # UserRole
AuthModeName = Literal["oauth", "service_account"]  # AuthMode
PolicyName = Literal["latest_wins", "crm_wins", "google_wins"]  # domain/merge.py Policy
assert set(get_args(Role)) == set(UserRole) and set(get_args(AuthModeName)) == set(AuthMode)
assert set(get_args(PolicyName)) == set(Policy)


def _date_or_datetime(value: object) -> object:
    """`YYYY-MM-DD` is a date (all-day); anything else is left to the date-time parser."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        return date.fromisoformat(value)
    return value


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
When = Annotated[
    datetime | date,
    BeforeValidator(_date_or_datetime),
    Field(description="A date (YYYY-MM-DD) for all-day entries, else an RFC 3339 date-time"),
]
Visibility = Literal["default", "public", "private", "confidential"]
Transparency = Literal["opaque", "transparent"]
Status = Literal["confirmed", "tentative", "cancelled"]
ResponseStatus = Literal["needsAction", "declined", "tentative", "accepted"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# tenant


class TenantSettings(BaseModel):
    id: uuid.UUID
    name: str
    calendar_module_enabled: bool
    auth_mode: AuthMode
    service_account_email: str | None
    service_account_configured: bool
    exported_activity_types: list[str]
    default_import_type: str
    personal_import_type: str
    poll_interval_seconds: int
    lookback_days: int
    conflict_policy: Policy
    google_account_policy: GoogleAccountPolicy = Field(
        description="Which Google account a user may link: company (own e-mail or an address "
        "in google_domains), own_email, or any"
    )
    google_domains: list[str] = Field(description="The company's Google domains (policy company)")
    created_at: datetime
    updated_at: datetime


class TenantSettingsPatch(Strict):
    name: Name | None = None
    calendar_module_enabled: bool | None = None
    auth_mode: AuthModeName | None = None
    exported_activity_types: list[TypeKey] | None = Field(default=None, max_length=100)
    default_import_type: TypeKey | None = None
    personal_import_type: TypeKey | None = None
    poll_interval_seconds: int | None = Field(default=None, ge=30, le=86_400)
    lookback_days: int | None = Field(default=None, ge=0, le=3_650)
    conflict_policy: PolicyName | None = None
    google_account_policy: GoogleAccountPolicy | None = None
    google_domains: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=50
    )


# users


class UserIn(Strict):
    email: Email
    name: Name | None = None
    role: Role = "user"


class UserPatch(Strict):
    email: Email | None = None
    name: Name | None = None
    role: Role | None = None


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str | None
    role: UserRole
    created_at: datetime
    updated_at: datetime


class UserList(BaseModel):
    users: list[UserOut]


# activity types


class ActivityTypeIn(Strict):
    key: TypeKey
    name: Name


class ActivityTypeOut(BaseModel):
    key: str
    name: str
    built_in: bool
    exported: bool = Field(description="Whether activities of this type sync to Google")


class ActivityTypeList(BaseModel):
    activity_types: list[ActivityTypeOut]


# activities


class AttendeeIn(Strict):
    email: Email
    display_name: Annotated[str, Field(max_length=200), AfterValidator(_clean)] | None = None
    response_status: ResponseStatus = "needsAction"
    optional: bool = False


class AttendeeOut(BaseModel):
    email: str
    display_name: str | None
    response_status: str
    optional: bool


Recurrence = Annotated[
    list[Annotated[str, Field(max_length=2_000), AfterValidator(_clean)]],
    Field(
        max_length=100,
        description="RFC 5545 lines as Google uses them: RRULE:..., EXDATE;TZID=...:..., RDATE...",
    ),
]


class ActivityIn(Strict):
    """A new activity; an exception of a series names its master and the original start."""

    type: TypeKey = "meeting"
    owner_id: uuid.UUID | None = Field(default=None, description="Required with an admin key")
    subject: Annotated[str, Field(max_length=rules.MAX_SUBJECT_CHARS), AfterValidator(_clean)] = ""
    description: Annotated[str, AfterValidator(_clean)] | None = Field(
        default=None, description="At most 8 KB (UTF-8)"
    )
    location: (
        Annotated[str, Field(max_length=rules.MAX_LOCATION_CHARS), AfterValidator(_clean)] | None
    ) = None
    start: When | None = None
    end: When | None = None
    all_day: bool | None = Field(default=None, description="Default: true when start is a date")
    time_zone: TimeZone | None = Field(default=None, description="IANA zone; default UTC")
    visibility: Visibility = "default"
    transparency: Transparency = "opaque"
    status: Status = "confirmed"
    attendees: list[AttendeeIn] = Field(default_factory=list, max_length=rules.MAX_ATTENDEES)
    recurrence: Recurrence | None = None
    recurring_parent_id: uuid.UUID | None = None
    original_start: When | None = None


class ActivityPatch(Strict):
    """Only the fields sent change; `null` clears description and location."""

    type: TypeKey | None = None
    owner_id: uuid.UUID | None = None
    subject: (
        Annotated[str, Field(max_length=rules.MAX_SUBJECT_CHARS), AfterValidator(_clean)] | None
    ) = None
    description: Annotated[str, AfterValidator(_clean)] | None = None
    location: (
        Annotated[str, Field(max_length=rules.MAX_LOCATION_CHARS), AfterValidator(_clean)] | None
    ) = None
    start: When | None = None
    end: When | None = None
    all_day: bool | None = None
    time_zone: TimeZone | None = None
    visibility: Visibility | None = None
    transparency: Transparency | None = None
    status: Status | None = None
    attendees: list[AttendeeIn] | None = Field(default=None, max_length=rules.MAX_ATTENDEES)
    recurrence: Recurrence | None = None


class ReadOnlyOut(BaseModel):
    """Why the CRM may not change an activity: Google manages it, and a sync would undo an edit."""

    reason: Literal["not_organizer", "event_type", "busy", "recurrence"] = Field(
        description="not_organizer: another organiser's meeting; event_type: focus time or out "
        "of office; busy: a private Google event shown as Busy; recurrence: a Google series "
        "calsync cannot represent"
    )
    message: str
    remedy: str


class ActivityOut(BaseModel):
    id: str = Field(description="UUID; an expanded occurrence has `<master id>_<UTC start>`")
    type: str
    owner_id: uuid.UUID
    subject: str
    description: str | None
    location: str | None
    all_day: bool
    time_zone: str
    start: str = Field(description="YYYY-MM-DD for all-day entries, else date-time with offset")
    end: str = Field(description="Exclusive end; same format as start")
    visibility: str
    transparency: str
    status: str
    attendees: list[AttendeeOut]
    recurrence: list[str] | None
    recurring_parent_id: uuid.UUID | None
    original_start: str | None
    organizer_email: str | None
    occurrence: bool = Field(description="True for an occurrence generated from a series")
    problem: str | None = Field(
        default=None,
        description="Set on a series listed by expand=true as its stored row because it could "
        "not be expanded (a rule that generates nothing, or too costly for the range): says why",
    )
    read_only: ReadOnlyOut | None = Field(
        default=None,
        description="Set when Google manages this entry: PATCH and DELETE answer 409 read_only",
    )
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class ActivityList(BaseModel):
    activities: list[ActivityOut]


# change feed


class ChangeOut(BaseModel):
    seq: int
    activity_id: uuid.UUID
    kind: ChangeKind
    version: int = Field(description="The activity's version after this change")
    origin: str = Field(description="api, sync (from Google) or cli (ChangeOrigin)")
    at: datetime


class ChangePage(BaseModel):
    changes: list[ChangeOut]
    next_after: int = Field(description="Pass as `after` to continue")
    has_more: bool
