"""`CalendarClient`: the Calendar API v3 calls the sync engine needs, for one Google account.

Every call goes: token bucket → bearer token → HTTP → (401: refresh once, resend) → typed model
or the exception `errors.from_response` picks; retryable failures go round `RetryPolicy`.
Many clients may share one pooled `httpx.AsyncClient` (`make_http_client`) and one
`RateLimiter`; a client made without them owns its own and closes it in `aclose()`.
`count_requests()` counts the HTTP requests sent to Google in its context (a sync run).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import httpx

from calsync import runtime
from calsync.settings import Settings, get_settings

from . import calls, errors
from .auth import TokenProvider
from .calls import ApiCall
from .models import (
    Calendar,
    CalendarListEntry,
    CalendarListPage,
    Channel,
    Event,
    EventsPage,
    RawEventsPage,
    SendUpdates,
)
from .ratelimit import RateLimiter
from .retry import RetryPolicy

T = TypeVar("T")
P = TypeVar("P", bound=EventsPage | CalendarListPage | RawEventsPage)

USER_AGENT = "calsync (+https://github.com/calsync) httpx"


def make_http_client(settings: Settings | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """One pooled client for all of Google's hosts, with calsync's timeouts."""
    settings = settings or get_settings()
    timeout = httpx.Timeout(settings.google_timeout_seconds, connect=10.0)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    kwargs.setdefault("headers", {"User-Agent": USER_AGENT})
    return runtime.http_client(timeout=timeout, limits=limits, **kwargs)


@dataclass
class RequestCount:
    """HTTP requests sent to Google: every attempt, a token request and a whole batch one each."""

    n: int = 0


# mutable, so tasks started inside the context (which copy it) add to the same count
_counting: ContextVar[RequestCount | None] = ContextVar("calsync_google_requests", default=None)


@contextmanager
def count_requests() -> Iterator[RequestCount]:
    """Count the requests sent to Google inside this block (and the tasks it starts)."""
    count = RequestCount()
    token = _counting.set(count)
    try:
        yield count
    finally:
        _counting.reset(token)


def request_sent() -> None:
    """One more HTTP request to Google in the current count, if any."""
    count = _counting.get()
    if count is not None:
        count.n += 1


async def count_request_hook(request: httpx.Request) -> None:
    """httpx request hook for clients that do not send through `send` (authlib's OAuth)."""
    request_sent()


async def send(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send, turning timeouts and connection failures into `errors.NetworkError`."""
    request_sent()
    try:
        return await http.send(request)
    except httpx.TransportError as exc:
        raise errors.NetworkError(detail=f"{type(exc).__name__}: {exc}") from exc


class Pages(Generic[P]):
    """Async iterator over the pages of a list call.

    `next_sync_token` stays None until the last page has been fetched: store it only after
    every page was applied (Google's sync guide).
    """

    def __init__(
        self, client: CalendarClient, call_for: Callable[[str | None], ApiCall[P]]
    ) -> None:
        self._client = client
        self._call_for = call_for
        self._page_token: str | None = None
        self._done = False
        self.pages = 0
        self.next_sync_token: str | None = None

    def __aiter__(self) -> Pages[P]:
        return self

    async def __anext__(self) -> P:
        if self._done:
            raise StopAsyncIteration
        page = await self._client.execute(self._call_for(self._page_token))
        self.pages += 1
        self._page_token = page.next_page_token
        if not self._page_token:
            self._done = True
            self.next_sync_token = page.next_sync_token
        return page


class CalendarClient:
    def __init__(
        self,
        auth: TokenProvider,
        *,
        settings: Settings | None = None,
        http: httpx.AsyncClient | None = None,
        rate_limiter: RateLimiter | Literal["settings"] | None = "settings",
        retry: RetryPolicy | None = None,
        batch_size: int | None = None,
    ) -> None:
        """`rate_limiter`: share one `RateLimiter` per process; the default builds one from
        settings (CALSYNC_GOOGLE_REQUESTS_PER_MINUTE, 0 = off), None switches limiting off."""
        self.settings = settings or get_settings()
        self.auth = auth
        self._owns_http = http is None
        self.http = http or make_http_client(self.settings)
        self.rate_limiter = (
            RateLimiter.from_settings(self.settings) if rate_limiter == "settings" else rate_limiter
        )
        self.retry = retry or RetryPolicy.from_settings(self.settings)
        self.api_root = self.settings.calendar_api_root
        self.batch_url = self.settings.batch_url
        self.batch_size = batch_size or self.settings.google_batch_size
        #: awaited before every request that changes Google (each attempt of it): a runner's
        #: check that it still holds the calendar's lock (jobs/execute.py); it raises to stop
        self.before_write: Callable[[], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> CalendarClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    def build_request(self, call: ApiCall[Any], token: str) -> httpx.Request:
        headers = {"Authorization": f"Bearer {token}", **call.headers}
        url = self.api_root + call.path
        if call.params:
            # the query in the URL as httpx would encode `params=` (as the batch does): httpx
            # would parse the whole URL again to merge them, about 0.1 ms of CPU a request
            url += "?" + str(httpx.QueryParams(call.params))
        return self.http.build_request(call.method, url, json=call.body, headers=headers)

    async def throttle(self, n: int = 1) -> None:
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire(self.auth.account, n)

    async def send_authorized(
        self, make: Callable[[str], httpx.Request], cost: int = 1
    ) -> httpx.Response:
        """Send with the current token; on 401 refresh exactly once and send again."""
        await self.throttle(cost)
        token = await self.auth.access_token()
        resp = await send(self.http, make(token))
        if resp.status_code == 401:
            token = await self.auth.refresh(rejected=token)
            await self.throttle(cost)
            resp = await send(self.http, make(token))
        return resp

    async def _once(self, call: ApiCall[T]) -> T:
        if call.method != "GET" and self.before_write is not None:
            await self.before_write()
        resp = await self.send_authorized(lambda token: self.build_request(call, token))
        if resp.status_code >= 400:
            raise errors.from_response(resp.status_code, resp.headers, resp.content)
        if call.parse_json is not None and resp.content:
            return call.parse_json(resp.content)
        return call.parse(resp.json() if resp.content else None)

    async def execute(self, call: ApiCall[T]) -> T:
        """Run one call with retries; raises an `errors.GoogleError` subclass on failure."""
        return await self.retry.call(lambda: self._once(call))

    async def batch(
        self, batch_calls: Sequence[ApiCall[Any]], *, chunk_size: int | None = None
    ) -> list[Any]:
        """Run many calls in batch requests: one result or `GoogleError` per call, in order."""
        from .batch import run_batch

        return await run_batch(self, batch_calls, chunk_size=chunk_size or self.batch_size)

    # -- calendarList and calendars ---------------------------------------------------------

    def calendar_list(
        self,
        *,
        min_access_role: str | None = None,
        show_hidden: bool | None = None,
        show_deleted: bool | None = None,
        sync_token: str | None = None,
        max_results: int | None = None,
    ) -> Pages[CalendarListPage]:
        def call_for(page_token: str | None) -> ApiCall[CalendarListPage]:
            return calls.calendar_list(
                page_token=page_token,
                sync_token=sync_token,
                min_access_role=min_access_role,
                show_hidden=show_hidden,
                show_deleted=show_deleted,
                max_results=max_results,
            )

        return Pages(self, call_for)

    async def calendars(self, **kwargs: Any) -> list[CalendarListEntry]:
        """Every calendar in the account's list (all pages)."""
        out: list[CalendarListEntry] = []
        async for page in self.calendar_list(**kwargs):
            out.extend(page.items)
        return out

    async def get_calendar(self, calendar_id: str) -> Calendar:
        return await self.execute(calls.calendars_get(calendar_id))

    # -- events -----------------------------------------------------------------------------

    def list_events(
        self,
        calendar_id: str,
        *,
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
    ) -> Pages[EventsPage]:
        """Full listing (time_min/show_deleted/...) or incremental (sync_token); raises
        `SyncTokenExpired` (410) from the iterator when Google wants a full sync."""

        def call_for(page_token: str | None) -> ApiCall[EventsPage]:
            return calls.events_list(
                calendar_id,
                page_token=page_token,
                sync_token=sync_token,
                time_min=time_min,
                time_max=time_max,
                updated_min=updated_min,
                show_deleted=show_deleted,
                single_events=single_events,
                max_results=max_results,
                order_by=order_by,
                q=q,
                i_cal_uid=i_cal_uid,
                private_extended_property=private_extended_property,
                event_types=event_types,
                time_zone=time_zone,
            )

        call_for(None)  # validate the arguments now, not on first iteration
        return Pages(self, call_for)

    def list_events_raw(self, calendar_id: str, **kwargs: Any) -> Pages[RawEventsPage]:
        """`list_events` (same arguments) with each page kept as its body until `parse()`:
        a caller that reads one page ahead holds that page as bytes, not as models."""
        calls.events_list_raw(calendar_id, **kwargs)  # validate the arguments now
        return Pages(
            self, lambda token: calls.events_list_raw(calendar_id, page_token=token, **kwargs)
        )

    async def get_event(
        self, calendar_id: str, event_id: str, *, time_zone: str | None = None
    ) -> Event:
        return await self.execute(calls.events_get(calendar_id, event_id, time_zone=time_zone))

    async def insert_event(
        self,
        calendar_id: str,
        event: Event | Mapping[str, Any],
        *,
        send_updates: SendUpdates | None = "none",
        conference_data_version: int | None = None,
    ) -> Event:
        return await self.execute(
            calls.events_insert(
                calendar_id,
                event,
                send_updates=send_updates,
                conference_data_version=conference_data_version,
            )
        )

    async def patch_event(
        self,
        calendar_id: str,
        event_id: str,
        changes: Event | Mapping[str, Any],
        *,
        if_match: str | None = None,
        send_updates: SendUpdates | None = "none",
    ) -> Event:
        return await self.execute(
            calls.events_patch(
                calendar_id, event_id, changes, if_match=if_match, send_updates=send_updates
            )
        )

    async def update_event(
        self,
        calendar_id: str,
        event_id: str,
        event: Event | Mapping[str, Any],
        *,
        if_match: str | None = None,
        send_updates: SendUpdates | None = "none",
    ) -> Event:
        return await self.execute(
            calls.events_update(
                calendar_id, event_id, event, if_match=if_match, send_updates=send_updates
            )
        )

    async def delete_event(
        self,
        calendar_id: str,
        event_id: str,
        *,
        if_match: str | None = None,
        send_updates: SendUpdates | None = "none",
    ) -> None:
        await self.execute(
            calls.events_delete(calendar_id, event_id, if_match=if_match, send_updates=send_updates)
        )

    def instances(
        self,
        calendar_id: str,
        event_id: str,
        *,
        time_min: dt.datetime | None = None,
        time_max: dt.datetime | None = None,
        show_deleted: bool | None = None,
        max_results: int | None = None,
        original_start: str | None = None,
        time_zone: str | None = None,
    ) -> Pages[EventsPage]:
        def call_for(page_token: str | None) -> ApiCall[EventsPage]:
            return calls.events_instances(
                calendar_id,
                event_id,
                page_token=page_token,
                time_min=time_min,
                time_max=time_max,
                show_deleted=show_deleted,
                max_results=max_results,
                original_start=original_start,
                time_zone=time_zone,
            )

        return Pages(self, call_for)

    async def move_event(
        self,
        calendar_id: str,
        event_id: str,
        destination: str,
        *,
        send_updates: SendUpdates | None = "none",
    ) -> Event:
        return await self.execute(
            calls.events_move(calendar_id, event_id, destination, send_updates=send_updates)
        )

    # -- push channels ------------------------------------------------------------------------

    async def watch_events(
        self,
        calendar_id: str,
        *,
        channel_id: str,
        address: str,
        token: str | None = None,
        expiration: dt.datetime | None = None,
        ttl_seconds: int | None = None,
    ) -> Channel:
        return await self.execute(
            calls.events_watch(
                calendar_id,
                channel_id=channel_id,
                address=address,
                token=token,
                expiration=expiration,
                ttl_seconds=ttl_seconds,
            )
        )

    async def watch_calendar_list(
        self,
        *,
        channel_id: str,
        address: str,
        token: str | None = None,
        ttl_seconds: int | None = None,
    ) -> Channel:
        return await self.execute(
            calls.calendar_list_watch(
                channel_id=channel_id, address=address, token=token, ttl_seconds=ttl_seconds
            )
        )

    async def stop_channel(self, channel_id: str, resource_id: str) -> None:
        await self.execute(calls.channels_stop(channel_id, resource_id))
