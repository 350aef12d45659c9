"""Calendar API v3 methods as data: each function builds one `ApiCall` and knows its answer type.

The same call runs alone (`CalendarClient.execute`) or inside a batch (`CalendarClient.batch`),
so a request is described in exactly one place.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from .models import (
    Calendar,
    CalendarListPage,
    Channel,
    Event,
    EventsPage,
    RawEventsPage,
    SendUpdates,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Params = dict[str, str | list[str]]


@dataclass(frozen=True)
class ApiCall(Generic[T]):
    """One HTTP request to the Calendar API; `path` is relative to /calendar/v3."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Params = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: parses the raw response body in one step (pydantic's JSON parser, no dict in between):
    #: set for the listings, whose pages (sync/pull.py) are the hot path of a first import
    parse_json: Callable[[bytes], T] | None = None


def _seg(value: str) -> str:
    """A path segment: calendar ids contain '@' and '#'."""
    return quote(value, safe="")


def _parser(model: type[M]) -> Callable[[Any], M]:
    return model.model_validate


def _none(_: Any) -> None:
    return None


def _ts(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("Google needs timezone-aware datetimes (RFC 3339 with offset)")
    return value.isoformat()


def _put(params: Params, name: str, value: object) -> None:
    """Set a query parameter in Google's spelling; None means 'leave it out'."""
    if value is None:
        return
    if isinstance(value, bool):
        params[name] = "true" if value else "false"
    elif isinstance(value, dt.datetime):
        params[name] = _ts(value)
    elif isinstance(value, list | tuple):
        params[name] = [str(v) for v in value]
    else:
        params[name] = str(value)


def _body(value: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return dict(value)


def _if_match(etag: str | None) -> dict[str, str]:
    return {"If-Match": etag} if etag else {}


# -- calendarList and calendars -------------------------------------------------------------


def calendar_list(
    *,
    page_token: str | None = None,
    sync_token: str | None = None,
    min_access_role: str | None = None,
    show_hidden: bool | None = None,
    show_deleted: bool | None = None,
    max_results: int | None = None,
) -> ApiCall[CalendarListPage]:
    params: Params = {}
    _put(params, "pageToken", page_token)
    _put(params, "syncToken", sync_token)
    _put(params, "minAccessRole", min_access_role)
    _put(params, "showHidden", show_hidden)
    _put(params, "showDeleted", show_deleted)
    _put(params, "maxResults", max_results)
    return ApiCall("GET", "/users/me/calendarList", _parser(CalendarListPage), params)


def calendars_get(calendar_id: str) -> ApiCall[Calendar]:
    return ApiCall("GET", f"/calendars/{_seg(calendar_id)}", _parser(Calendar))


# -- events ---------------------------------------------------------------------------------

# parameters Google rejects together with syncToken (sync guide)
_NOT_WITH_SYNC_TOKEN = ("time_min", "time_max", "updated_min", "order_by", "q", "i_cal_uid")


def events_list(
    calendar_id: str,
    *,
    page_token: str | None = None,
    sync_token: str | None = None,
    time_min: dt.datetime | None = None,
    time_max: dt.datetime | None = None,
    updated_min: dt.datetime | None = None,
    show_deleted: bool | None = None,
    single_events: bool | None = None,
    max_results: int | None = None,
    order_by: str | None = None,
    q: str | None = None,
    i_cal_uid: str | None = None,
    private_extended_property: Mapping[str, str] | None = None,
    event_types: list[str] | None = None,
    time_zone: str | None = None,
) -> ApiCall[EventsPage]:
    if sync_token is not None:
        given = {
            "time_min": time_min,
            "time_max": time_max,
            "updated_min": updated_min,
            "order_by": order_by,
            "q": q,
            "i_cal_uid": i_cal_uid,
        }
        clash = [n for n in _NOT_WITH_SYNC_TOKEN if given[n] is not None]
        if clash or private_extended_property:
            raise ValueError(f"Google does not allow {clash or 'filters'} with a sync token")
    params: Params = {}
    _put(params, "pageToken", page_token)
    _put(params, "syncToken", sync_token)
    _put(params, "timeMin", time_min)
    _put(params, "timeMax", time_max)
    _put(params, "updatedMin", updated_min)
    _put(params, "showDeleted", show_deleted)
    _put(params, "singleEvents", single_events)
    _put(params, "maxResults", max_results)
    _put(params, "orderBy", order_by)
    _put(params, "q", q)
    _put(params, "iCalUID", i_cal_uid)
    _put(params, "eventTypes", event_types)
    _put(params, "timeZone", time_zone)
    if private_extended_property:
        params["privateExtendedProperty"] = [
            f"{k}={v}" for k, v in private_extended_property.items()
        ]
    return ApiCall(
        "GET",
        f"/calendars/{_seg(calendar_id)}/events",
        _parser(EventsPage),
        params,
        parse_json=EventsPage.model_validate_json,
    )


def events_list_raw(calendar_id: str, **kwargs: Any) -> ApiCall[RawEventsPage]:
    """`events_list` answering `RawEventsPage`s (the events parsed when they are used)."""
    call = events_list(calendar_id, **kwargs)
    return ApiCall(
        call.method,
        call.path,
        lambda data: RawEventsPage.of(json.dumps(data).encode()),
        call.params,
        parse_json=RawEventsPage.of,
    )


def events_get(calendar_id: str, event_id: str, *, time_zone: str | None = None) -> ApiCall[Event]:
    params: Params = {}
    _put(params, "timeZone", time_zone)
    return ApiCall(
        "GET", f"/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}", _parser(Event), params
    )


def events_insert(
    calendar_id: str,
    event: Event | Mapping[str, Any],
    *,
    send_updates: SendUpdates | None = "none",
    conference_data_version: int | None = None,
) -> ApiCall[Event]:
    """Insert; give `event.id` (base32hex, 5-1024 chars) to make retries idempotent (409)."""
    params: Params = {}
    _put(params, "sendUpdates", send_updates)
    _put(params, "conferenceDataVersion", conference_data_version)
    return ApiCall(
        "POST", f"/calendars/{_seg(calendar_id)}/events", _parser(Event), params, _body(event)
    )


def events_patch(
    calendar_id: str,
    event_id: str,
    changes: Event | Mapping[str, Any],
    *,
    if_match: str | None = None,
    send_updates: SendUpdates | None = "none",
) -> ApiCall[Event]:
    """Patch only the fields set in `changes`; with `if_match` Google answers 412 if it moved on."""
    return _event_write("PATCH", calendar_id, event_id, changes, if_match, send_updates)


def events_update(
    calendar_id: str,
    event_id: str,
    event: Event | Mapping[str, Any],
    *,
    if_match: str | None = None,
    send_updates: SendUpdates | None = "none",
) -> ApiCall[Event]:
    """Replace the whole event (fields left out are cleared, as Google does for PUT)."""
    return _event_write("PUT", calendar_id, event_id, event, if_match, send_updates)


def _event_write(
    method: str,
    calendar_id: str,
    event_id: str,
    body: Event | Mapping[str, Any],
    if_match: str | None,
    send_updates: SendUpdates | None,
) -> ApiCall[Event]:
    params: Params = {}
    _put(params, "sendUpdates", send_updates)
    return ApiCall(
        method,
        f"/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}",
        _parser(Event),
        params,
        _body(body),
        _if_match(if_match),
    )


def events_delete(
    calendar_id: str,
    event_id: str,
    *,
    if_match: str | None = None,
    send_updates: SendUpdates | None = "none",
) -> ApiCall[None]:
    params: Params = {}
    _put(params, "sendUpdates", send_updates)
    return ApiCall(
        "DELETE",
        f"/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}",
        _none,
        params,
        None,
        _if_match(if_match),
    )


def events_instances(
    calendar_id: str,
    event_id: str,
    *,
    page_token: str | None = None,
    time_min: dt.datetime | None = None,
    time_max: dt.datetime | None = None,
    show_deleted: bool | None = None,
    max_results: int | None = None,
    original_start: str | None = None,
    time_zone: str | None = None,
) -> ApiCall[EventsPage]:
    params: Params = {}
    _put(params, "pageToken", page_token)
    _put(params, "timeMin", time_min)
    _put(params, "timeMax", time_max)
    _put(params, "showDeleted", show_deleted)
    _put(params, "maxResults", max_results)
    _put(params, "originalStart", original_start)
    _put(params, "timeZone", time_zone)
    return ApiCall(
        "GET",
        f"/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}/instances",
        _parser(EventsPage),
        params,
        parse_json=EventsPage.model_validate_json,
    )


def events_move(
    calendar_id: str,
    event_id: str,
    destination: str,
    *,
    send_updates: SendUpdates | None = "none",
) -> ApiCall[Event]:
    params: Params = {"destination": destination}
    _put(params, "sendUpdates", send_updates)
    return ApiCall(
        "POST",
        f"/calendars/{_seg(calendar_id)}/events/{_seg(event_id)}/move",
        _parser(Event),
        params,
    )


# -- push channels ----------------------------------------------------------------------------


def _channel(
    channel_id: str,
    address: str,
    token: str | None,
    expiration: dt.datetime | None,
    ttl_seconds: int | None,
) -> dict[str, Any]:
    ch = Channel(id=channel_id, type="web_hook", address=address)
    if token is not None:
        ch.token = token
    if expiration is not None:
        ch.expiration = int(expiration.timestamp() * 1000)
    body = ch.to_wire()
    if ttl_seconds is not None:
        body["params"] = {"ttl": str(ttl_seconds)}
    return body


def events_watch(
    calendar_id: str,
    *,
    channel_id: str,
    address: str,
    token: str | None = None,
    expiration: dt.datetime | None = None,
    ttl_seconds: int | None = None,
    event_types: list[str] | None = None,
) -> ApiCall[Channel]:
    params: Params = {}
    _put(params, "eventTypes", event_types)
    return ApiCall(
        "POST",
        f"/calendars/{_seg(calendar_id)}/events/watch",
        _parser(Channel),
        params,
        _channel(channel_id, address, token, expiration, ttl_seconds),
    )


def calendar_list_watch(
    *,
    channel_id: str,
    address: str,
    token: str | None = None,
    expiration: dt.datetime | None = None,
    ttl_seconds: int | None = None,
) -> ApiCall[Channel]:
    return ApiCall(
        "POST",
        "/users/me/calendarList/watch",
        _parser(Channel),
        {},
        _channel(channel_id, address, token, expiration, ttl_seconds),
    )


def channels_stop(channel_id: str, resource_id: str) -> ApiCall[None]:
    return ApiCall(
        "POST",
        "/channels/stop",
        _none,
        {},
        Channel(id=channel_id, resource_id=resource_id).to_wire(),
    )
