"""Push notifications: events.watch, calendarList.watch, channels.stop, and real HTTP delivery.

A channel gets a `sync` message right after watch and an `exists` message after each change of
its resource, POSTed with Google's X-Goog-* headers and an empty body. Receivers that answer 5xx
or cannot be reached are retried with exponential backoff; every attempt lands in
`world.deliveries`. Stopped and expired channels (emulator clock) deliver nothing more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
from collections import deque
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import auth, errors
from .errors import GoogleError
from .state import Channel, Delivery, World

DEFAULT_TTL_SECONDS = 604_800  # Google's documented default for params.ttl
MAX_CHANNEL_ID_LENGTH = 64
CHANNEL_ID_RE = re.compile(r"[A-Za-z0-9\-_+/=]+")
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
DELIVERY_TIMEOUT_SECONDS = 10.0


def resource_id(kind: str, key: str) -> str:
    """Opaque and stable per watched resource, like Google's (every channel on it shares it)."""
    digest = hashlib.sha256(f"{kind}\x00{key}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:20]).decode().rstrip("=")


def now_ms(world: World) -> int:
    return int(world.clock.now() * 1000)


def is_live(world: World, channel: Channel) -> bool:
    """Still registered (not replaced by a reset), not stopped, not expired."""
    return (
        world.channels.get(channel.id) is channel
        and not channel.stopped
        and channel.expiration_ms > now_ms(world)
    )


# -- delivery ---------------------------------------------------------------------------------


class Dispatcher:
    """Delivers notifications from the app's event loop: one sequential queue per channel."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: httpx.AsyncClient | None = None
        # id(channel) -> (channel, states waiting to be sent); the drain task holds the channel
        self.queues: dict[int, tuple[Channel, deque[str]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self.loop is not None:
            return
        self.loop = asyncio.get_running_loop()
        self.client = httpx.AsyncClient(
            timeout=DELIVERY_TIMEOUT_SECONDS,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self.world.change_listeners.append(self.on_change)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.world.change_listeners.remove(self.on_change)
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.queues.clear()
        if self.client is not None:
            await self.client.aclose()
        self.client = None
        self.loop = None

    def on_change(self, kind: str, key: str | None) -> None:
        """World listener; may be called from any thread (in-process tests change the world)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._changed(kind, key)
        else:
            loop.call_soon_threadsafe(self._changed, kind, key)

    def _changed(self, kind: str, key: str | None) -> None:
        if kind not in ("events", "calendarList") or key is None:
            return  # clock and reset need nothing: liveness is checked before every attempt
        with self.world.lock:
            targets = [
                ch
                for ch in self.world.channels.values()
                if ch.kind == kind
                and (ch.calendar_id == key if kind == "events" else ch.account == key)
                and is_live(self.world, ch)
            ]
        for ch in targets:
            self.enqueue(ch, "exists")

    def enqueue(self, channel: Channel, state: str) -> None:
        """Queue a message; an `exists` already waiting (not yet sent) covers a newer change."""
        if self.loop is None:
            return
        entry = self.queues.get(id(channel))
        if entry is None:
            entry = (channel, deque())
            self.queues[id(channel)] = entry
            task = self.loop.create_task(self._drain(channel))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        pending = entry[1]
        if state == "exists" and pending and pending[-1] == "exists":
            return
        pending.append(state)

    async def _drain(self, channel: Channel) -> None:
        try:
            pending = self.queues[id(channel)][1]
            while pending:
                state = pending.popleft()
                if not is_live(self.world, channel) or channel.silent:
                    pending.clear()
                    break
                await self._deliver(channel, state)
        finally:
            self.queues.pop(id(channel), None)

    def headers(self, channel: Channel, state: str, number: int) -> dict[str, str]:
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": formatdate(channel.expiration_ms / 1000, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(number),
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        return headers

    async def _deliver(self, channel: Channel, state: str) -> None:
        world = self.world
        with world.lock:
            channel.message_number += 1
            number = channel.message_number
        headers = self.headers(channel, state, number)
        attempts = max(1, world.config.push_max_attempts)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(world.config.push_retry_base_seconds * 2 ** (attempt - 2))
                if not is_live(world, channel):
                    return
            status: int | None = None
            error: str | None = None
            assert self.client is not None
            try:
                resp = await self.client.post(channel.address, headers=headers, content=b"")
                status = resp.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if status is not None and status >= 500:
                error = f"receiver answered {status}"
            self._record(channel, state, number, status, attempt, error)
            if status is not None and status < 500:
                return

    def _record(
        self,
        channel: Channel,
        state: str,
        number: int,
        status: int | None,
        attempt: int,
        error: str | None,
    ) -> None:
        world = self.world
        with world.lock:
            if world.channels.get(channel.id) is not channel:
                return  # the world was reset while this attempt was in flight
            world.delivery_seq += 1
            world.deliveries.append(
                Delivery(
                    seq=world.delivery_seq,
                    channel_id=channel.id,
                    address=channel.address,
                    resource_state=state,
                    message_number=number,
                    status=status,
                    attempt=attempt,
                    at=world.clock.now(),
                    error=error,
                )
            )


def dispatcher_of(request: Request) -> Dispatcher:
    app = request.app
    dispatcher: Dispatcher | None = getattr(app.state, "push_dispatcher", None)
    if dispatcher is None:
        dispatcher = Dispatcher(auth.world_of(request))
        app.state.push_dispatcher = dispatcher
    # an app served without lifespan (e.g. through httpx.ASGITransport) still delivers
    dispatcher.start()
    return dispatcher


async def on_startup(app: Starlette) -> None:
    dispatcher = getattr(app.state, "push_dispatcher", None)
    if dispatcher is None:
        dispatcher = Dispatcher(app.state.world)
        app.state.push_dispatcher = dispatcher
    dispatcher.start()


async def on_shutdown(app: Starlette) -> None:
    dispatcher: Dispatcher | None = getattr(app.state, "push_dispatcher", None)
    if dispatcher is not None:
        await dispatcher.stop()


# -- watch and stop ---------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        raise GoogleError(400, "parseError", "Parse Error") from exc
    if not isinstance(data, dict):
        raise GoogleError(400, "parseError", "Parse Error")
    return data


def _int_field(value: Any, name: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError as exc:
        raise errors.invalid(f"Invalid value for {name}: {value}", location=name) from exc
    return number


def _expiration_ms(world: World, data: dict[str, Any]) -> int:
    """Requested expiration, else now + params.ttl (default 7 days), capped at the longest TTL."""
    now = now_ms(world)
    longest = now + world.config.push_max_ttl_seconds * 1000
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise errors.invalid("Invalid value for params", location="params")
    ttl = _int_field(params.get("ttl", DEFAULT_TTL_SECONDS), "params.ttl")
    if ttl <= 0:
        raise errors.invalid(f"Invalid value for params.ttl: {ttl}", location="params.ttl")
    expiration = min(longest, now + ttl * 1000)
    if data.get("expiration") not in (None, ""):
        requested = _int_field(data["expiration"], "expiration")
        if requested <= now:
            raise errors.invalid(
                f"Invalid value for expiration: {requested} is in the past", location="expiration"
            )
        if "ttl" in params:
            expiration = min(expiration, requested)
        else:
            expiration = min(longest, requested)
    return expiration


def _new_channel(
    request: Request,
    data: dict[str, Any],
    *,
    kind: str,
    account: str,
    calendar_id: str | None,
    resource_key: str,
) -> Channel:
    world = auth.world_of(request)
    channel_id = data.get("id")
    if channel_id in (None, ""):
        raise errors.required("Required channel id", location="id")
    channel_id = str(channel_id)
    if len(channel_id) > MAX_CHANNEL_ID_LENGTH or not CHANNEL_ID_RE.fullmatch(channel_id):
        raise errors.invalid(f"Invalid channel id: {channel_id}", location="id")
    channel_type = str(data.get("type") or "")
    if channel_type.lower() not in ("web_hook", "webhook"):
        raise errors.invalid(f"Unknown channel type: {channel_type}", location="type")
    address = str(data.get("address") or "")
    if not address:
        raise errors.required("Required address", location="address")
    scheme = urlsplit(address).scheme.lower()
    allowed = ("https", "http") if world.config.allow_http_webhooks else ("https",)
    if scheme not in allowed:
        raise GoogleError(
            400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}"
        )
    token = data.get("token")
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    expiration = _expiration_ms(world, data)
    existing = world.channels.get(channel_id)
    if existing is not None and is_live(world, existing):
        raise GoogleError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
    # resourceUri names what was watched, as the client asked for it (primary stays primary)
    query = dict(parse_qsl(request.url.query, keep_blank_values=True))
    query.setdefault("alt", "json")
    base = str(request.base_url).rstrip("/")
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    resource_uri = f"{base}{raw_path.decode('latin-1')}"
    resource_uri = (
        resource_uri[: -len("/watch")] if resource_uri.endswith("/watch") else resource_uri
    )
    return Channel(
        id=channel_id,
        resource_id=resource_id(kind, resource_key),
        resource_uri=f"{resource_uri}?{urlencode(query)}",
        token=None if token in (None, "") else str(token),
        address=address,
        expiration_ms=expiration,
        kind=kind,
        account=account,
        calendar_id=calendar_id,
        params={str(k): str(v) for k, v in (params or {}).items()},
    )


def _channel_json(channel: Channel) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "api#channel",
        "id": channel.id,
        "resourceId": channel.resource_id,
        "resourceUri": channel.resource_uri,
    }
    if channel.token is not None:
        body["token"] = channel.token
    body["expiration"] = str(channel.expiration_ms)
    return body


def _register(request: Request, channel: Channel) -> Response:
    world = auth.world_of(request)
    with world.lock:
        world.channels[channel.id] = channel
    dispatcher_of(request).enqueue(channel, "sync")
    return JSONResponse(_channel_json(channel))


async def watch_events(request: Request) -> Response:
    tok = auth.authenticate(request, auth.EVENTS_READ)
    world = auth.world_of(request)
    data = await _json_body(request)
    requested = request.path_params["calendarId"]
    calendar_id = requested
    if requested == "primary":
        account = world.accounts.get(tok.email)
        if account is None:
            raise errors.not_found()
        calendar_id = account.primary_calendar_id
    if world.role(tok.email, calendar_id) is None:
        raise errors.not_found()
    channel = _new_channel(
        request,
        data,
        kind="events",
        account=tok.email,
        calendar_id=calendar_id,
        resource_key=calendar_id,
    )
    return _register(request, channel)


async def watch_calendar_list(request: Request) -> Response:
    tok = auth.authenticate(request, auth.CALENDARS_READ)
    data = await _json_body(request)
    channel = _new_channel(
        request,
        data,
        kind="calendarList",
        account=tok.email,
        calendar_id=None,
        resource_key=tok.email,
    )
    return _register(request, channel)


async def stop_channel(request: Request) -> Response:
    tok = auth.authenticate(request, auth.EVENTS_READ | auth.CALENDARS_READ)
    world = auth.world_of(request)
    data = await _json_body(request)
    channel_id = str(data.get("id") or "")
    if not channel_id:
        raise errors.required("Required channel id", location="id")
    with world.lock:
        channel = world.channels.get(channel_id)
        if (
            channel is None
            or channel.stopped
            or channel.account != tok.email
            or (data.get("resourceId") not in (None, "", channel.resource_id))
        ):
            raise GoogleError(
                404, "notFound", f"Channel '{channel_id}' not found for project '{tok.client_id}'"
            )
        channel.stopped = True
    return Response(status_code=204)


routes = [
    Route("/calendar/v3/calendars/{calendarId}/events/watch", watch_events, methods=["POST"]),
    Route("/calendar/v3/users/me/calendarList/watch", watch_calendar_list, methods=["POST"]),
    Route("/calendar/v3/channels/stop", stop_channel, methods=["POST"]),
]
