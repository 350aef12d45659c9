"""Pydantic models mirroring Calendar API v3's wire format (the discovery document's schemas).

Field names are snake_case in Python and camelCase on the wire. Every model keeps fields it
does not know (`extra="allow"`), so whatever Google adds survives a read-modify-write. Dump with
`to_wire()` to get exactly the JSON Google expects, with only the fields that were set.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

SendUpdates = Literal["all", "externalOnly", "none"]


class WireModel(BaseModel):
    """Base: camelCase aliases, unknown fields kept, construction by either name."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, validate_assignment=False
    )

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict with Google's names and only the fields that were set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# -- errors -----------------------------------------------------------------------------------


class ErrorItem(WireModel):
    domain: str | None = None
    reason: str | None = None
    message: str | None = None
    location_type: str | None = None
    location: str | None = None


class ErrorBody(WireModel):
    """The `error` member of a Calendar API error response."""

    errors: list[ErrorItem] = Field(default_factory=list)
    code: int | None = None
    message: str | None = None
    status: str | None = None

    @property
    def reason(self) -> str | None:
        return self.errors[0].reason if self.errors else None


# -- events -----------------------------------------------------------------------------------


class EventDateTime(WireModel):
    """`date` for all-day events (end date exclusive), else `dateTime` (+ optional IANA zone)."""

    date: dt.date | None = None
    date_time: dt.datetime | None = None
    time_zone: str | None = None


class Person(WireModel):
    id: str | None = None
    email: str | None = None
    display_name: str | None = None
    self_: bool | None = Field(default=None, alias="self")


class Attendee(WireModel):
    id: str | None = None
    email: str | None = None
    display_name: str | None = None
    organizer: bool | None = None
    self_: bool | None = Field(default=None, alias="self")
    resource: bool | None = None
    optional: bool | None = None
    response_status: Literal["needsAction", "declined", "tentative", "accepted"] | str | None = None
    comment: str | None = None
    additional_guests: int | None = None


class ExtendedProperties(WireModel):
    private: dict[str, str] | None = None
    shared: dict[str, str] | None = None


class Reminder(WireModel):
    method: str | None = None
    minutes: int | None = None


class Reminders(WireModel):
    use_default: bool | None = None
    overrides: list[Reminder] | None = None


class Event(WireModel):
    kind: str | None = None
    etag: str | None = None
    id: str | None = None
    status: Literal["confirmed", "tentative", "cancelled"] | str | None = None
    html_link: str | None = None
    created: dt.datetime | None = None
    updated: dt.datetime | None = None
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    color_id: str | None = None
    creator: Person | None = None
    organizer: Person | None = None
    start: EventDateTime | None = None
    end: EventDateTime | None = None
    end_time_unspecified: bool | None = None
    recurrence: list[str] | None = None
    recurring_event_id: str | None = None
    original_start_time: EventDateTime | None = None
    transparency: Literal["opaque", "transparent"] | str | None = None
    visibility: Literal["default", "public", "private", "confidential"] | str | None = None
    i_cal_uid: str | None = Field(default=None, alias="iCalUID")
    sequence: int | None = None
    attendees: list[Attendee] | None = None
    attendees_omitted: bool | None = None
    extended_properties: ExtendedProperties | None = None
    hangout_link: str | None = None
    conference_data: dict[str, Any] | None = None
    guests_can_invite_others: bool | None = None
    guests_can_modify: bool | None = None
    guests_can_see_other_guests: bool | None = None
    private_copy: bool | None = None
    locked: bool | None = None
    reminders: Reminders | None = None
    source: dict[str, Any] | None = None
    attachments: list[dict[str, Any]] | None = None
    event_type: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


class EventsPage(WireModel):
    """One page of events.list / events.instances."""

    kind: str | None = None
    etag: str | None = None
    summary: str | None = None
    description: str | None = None
    updated: dt.datetime | None = None
    time_zone: str | None = None
    access_role: str | None = None
    default_reminders: list[Reminder] | None = None
    next_page_token: str | None = None
    next_sync_token: str | None = None
    items: list[Event] = Field(default_factory=list)


class EventsPageHead(BaseModel):
    """A listing page's tokens and zone, read from its body without building its events."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)

    next_page_token: str | None = None
    next_sync_token: str | None = None
    time_zone: str | None = None


@dataclass(frozen=True)
class RawEventsPage:
    """A page of events.list kept as its body until the caller gets to it (`parse`): a listing
    read one page ahead then holds the next page as its bytes (~1 MB), not as 1,000 models."""

    body: bytes
    next_page_token: str | None
    next_sync_token: str | None
    time_zone: str | None

    @classmethod
    def of(cls, body: bytes) -> RawEventsPage:
        head = EventsPageHead.model_validate_json(body)
        return cls(body, head.next_page_token, head.next_sync_token, head.time_zone)

    def parse(self) -> EventsPage:
        return EventsPage.model_validate_json(self.body)


# -- calendars --------------------------------------------------------------------------------


class CalendarListEntry(WireModel):
    kind: str | None = None
    etag: str | None = None
    id: str
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    time_zone: str | None = None
    summary_override: str | None = None
    color_id: str | None = None
    background_color: str | None = None
    foreground_color: str | None = None
    hidden: bool | None = None
    selected: bool | None = None
    access_role: Literal["freeBusyReader", "reader", "writer", "owner"] | str | None = None
    default_reminders: list[Reminder] | None = None
    primary: bool | None = None
    deleted: bool | None = None

    @property
    def writable(self) -> bool:
        return self.access_role in ("writer", "owner")


class CalendarListPage(WireModel):
    kind: str | None = None
    etag: str | None = None
    next_page_token: str | None = None
    next_sync_token: str | None = None
    items: list[CalendarListEntry] = Field(default_factory=list)


class Calendar(WireModel):
    kind: str | None = None
    etag: str | None = None
    id: str
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    time_zone: str | None = None


# -- push notifications -------------------------------------------------------------------------


class Channel(WireModel):
    """A watch channel: request body of events.watch and its answer; body of channels.stop."""

    kind: str | None = None
    id: str | None = None
    resource_id: str | None = None
    resource_uri: str | None = None
    token: str | None = None
    expiration: int | None = None  # ms since the epoch (a string on the wire; pydantic coerces)
    type: str | None = None
    address: str | None = None
    params: dict[str, str] | None = None

    def to_wire(self) -> dict[str, Any]:
        data = super().to_wire()
        if self.expiration is not None:
            data["expiration"] = str(self.expiration)  # Google's int64 is a JSON string
        return data


# -- OAuth ------------------------------------------------------------------------------------


class OAuthToken(BaseModel):
    """A token-endpoint answer, with the absolute expiry calsync stores (`expires_at`, epoch s)."""

    model_config = ConfigDict(extra="allow")

    access_token: str
    token_type: str = "Bearer"
    expires_in: int | None = None
    expires_at: float | None = None
    refresh_token: str | None = None
    scope: str | None = None
    id_token: str | None = None

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset((self.scope or "").split())


class UserInfo(BaseModel):
    """The OpenID Connect userinfo answer (snake_case on the wire already)."""

    model_config = ConfigDict(extra="allow")

    sub: str | None = None
    email: str
    email_verified: bool | None = None
    name: str | None = None
