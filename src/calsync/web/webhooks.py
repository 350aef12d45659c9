"""POST /webhooks/google: Google's push notifications for calendar bindings and connections'
calendar lists.

The answer comes at once; the work is a queued, coalesced sync (`Reason.WEBHOOK`), or for a
calendarList channel (id `list-...`) a check of the connection's calendars run in the background
of this process (coalesced per connection). Channel id, resource id and token are compared in
constant time. A wrong token or resource id is refused (403) and logged without the token.

Durable and once: a verified notification's `X-Goog-Message-Number` and "a sync is owed"
(`sync_owed_at`) are stored in one write before the 200, so a crash after the answer loses
nothing (jobs/recovery.py) and a number already seen on the channel (a replay) does no work.

A notification for an unknown channel is answered 200 (Google would retry anything else); it
is stopped at Google only when this database knows it (a channel replaced or forgotten whose
stop Google has not confirmed), never for a channel id that merely looks like one of ours.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from calsync.channels import (
    WEBHOOK_PATH,
    Channels,
    binding_of_channel,
    connection_of_list_channel,
    is_list_channel,
)
from calsync.jobs.port import JobQueue, Reason
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.sync.google_services import GoogleServices

from .metrics import Metrics

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

STALE_GRACE_SECONDS = 5.0  # before stopping an unknown channel of one of our bindings
STOPPED_MEMORY = 10_000  # channel ids already stopped (or being stopped) by this process
_stopping: OrderedDict[str, None] = OrderedDict()
# connections whose calendar list is being checked by this process -> another check wanted
_checking: dict[uuid.UUID, bool] = {}


def _same(a: str | None, b: str | None) -> bool:
    return hmac.compare_digest((a or "").encode(), (b or "").encode())


def _stop_later(
    request: Request, channel_id: str, stop: Callable[[Channels], Awaitable[bool]]
) -> None:
    if channel_id in _stopping:
        return
    _stopping[channel_id] = None
    while len(_stopping) > STOPPED_MEMORY:
        _stopping.popitem(last=False)
    state = request.app.state
    services: GoogleServices = state.google
    service = Channels(state.db, services.access, state.settings)

    async def later() -> None:
        # a channel just made may notify before its watch call stored it: look again first
        await asyncio.sleep(STALE_GRACE_SECONDS)
        async with state.db.session() as s:
            current = await stored.by_channel_id(s, channel_id) or await stored.list_by_channel_id(
                s, channel_id
            )
            await s.commit()
        if current is None:
            await stop(service)
        else:
            _stopping.pop(channel_id, None)

    services.spawn(later())


def _check_later(request: Request, connection_id: uuid.UUID) -> None:
    """Check the connection's calendar list in the background; notifications arriving while a
    check runs make one more check after it, not one each."""
    if connection_id in _checking:
        _checking[connection_id] = True
        return
    _checking[connection_id] = False
    state = request.app.state
    services: GoogleServices = state.google
    service = Channels(state.db, services.access, state.settings)

    async def check() -> None:
        try:
            while True:
                _checking[connection_id] = False
                done = await service.check_calendars(connection_id)
                jobs: JobQueue | None = getattr(state, "jobs", None)
                for binding_id in done.resumed:  # back in the list: catch up now
                    if jobs is not None:
                        await jobs.enqueue_sync(binding_id, Reason.WEBHOOK)
                if not _checking.get(connection_id):
                    break
        except Exception:
            log.exception("calendar list check failed", extra={"connection": str(connection_id)})
        finally:
            _checking.pop(connection_id, None)

    services.spawn(check())


@dataclass(frozen=True)
class _Notified:
    """What a notification's channel id names, as stored: the channel itself (None when
    unknown or replaced) and, when it is a channel replaced here whose stop Google has not
    confirmed, that record (the only unknown channels ever stopped)."""

    channel: stored.StoredChannel | stored.StoredListChannel | None
    retired: stored.Retired | None  # an unknown channel this database still has to stop
    stop: Callable[[Channels], Awaitable[bool]]  # stops the notifying channel at Google
    subject: dict[str, str]  # whose channel, for the log


async def _lookup(request: Request, channel_id: str, resource_id: str) -> _Notified:
    """One indexed lookup in the table the channel id's kind says (`list-...`: connections)."""
    if is_list_channel(channel_id):
        return await _lookup_list(request, channel_id, resource_id)
    async with request.app.state.db.session() as s:
        channel = await stored.by_channel_id(s, channel_id)
        binding_id = channel.binding_id if channel else binding_of_channel(channel_id)
        retired = await stored.retired(s, channel_id) if channel is None else None
        await s.commit()
    return _Notified(channel, retired, _stopper(retired), {"binding": str(binding_id)})


def _stopper(retired: stored.Retired | None) -> Callable[[Channels], Awaitable[bool]]:
    async def stop(service: Channels) -> bool:
        assert retired is not None
        return await service.stop_with_connection(
            retired.connection_id, retired.channel_id, retired.resource_id
        )

    return stop


async def _lookup_list(request: Request, channel_id: str, resource_id: str) -> _Notified:
    async with request.app.state.db.session() as s:
        channel = await stored.list_by_channel_id(s, channel_id)
        connection_id = channel.connection_id if channel else connection_of_list_channel(channel_id)
        retired = await stored.retired(s, channel_id) if channel is None else None
        await s.commit()
    return _Notified(channel, retired, _stopper(retired), {"connection": str(connection_id)})


def _refused(
    request: Request,
    found: _Notified,
    channel_id: str,
    resource_id: str,
    state_name: str,
    metrics: Metrics | None,
) -> Response | None:
    """The answer to a notification that must not lead to work (None: verified, go on).
    Unknown or replaced channel → 200 (Google would retry anything else), stopped in the
    background only if this database retired it and the resource id is its own, so a forger
    cannot make calsync spend Google requests; wrong token or resource id → 403, logged without
    the token; `sync` → 200."""
    channel = found.channel
    if channel is None or not _same(channel.channel_id, channel_id):
        retired = found.retired
        if (
            retired is not None
            and state_name != "sync"
            and _same(retired.channel_id, channel_id)
            and _same(retired.resource_id, resource_id)
        ):
            _stop_later(request, channel_id, found.stop)
            result = "stale"
        else:
            result = "unknown"
        log.info("push notification for an unknown channel", extra={"channel": channel_id})
        if metrics:
            metrics.webhooks.labels(result=result).inc()
        return Response(status_code=200)
    token_ok = _same(channel.token, request.headers.get("x-goog-channel-token"))
    resource_ok = _same(channel.resource_id, resource_id)
    if not (token_ok and resource_ok):
        log.warning(
            "push notification refused",
            extra={
                "channel": channel_id,
                **found.subject,
                "reason": "token" if not token_ok else "resource_id",
                "client": request.client.host if request.client else None,
            },
        )
        if metrics:
            metrics.webhooks.labels(result="forbidden").inc()
        return Response(status_code=403)
    if state_name == "sync":
        if metrics:
            metrics.webhooks.labels(result="sync").inc()
        return Response(status_code=200)
    return None


def _message_number(raw: str | None) -> int | None:
    """Google's per-channel counter (a positive integer); None when absent or not one."""
    text = (raw or "").strip()
    if not re.fullmatch(r"[0-9]{1,18}", text):
        return None
    return int(text) or None


async def _first_time(
    request: Request,
    channel: stored.StoredChannel | stored.StoredListChannel | None,
    number: int,
) -> bool:
    """Store the message number (and for a binding, that a sync is owed) before answering;
    False for a number this channel already sent."""
    async with request.app.state.db.session() as s:
        if isinstance(channel, stored.StoredListChannel):
            fresh = await stored.note_list_message(
                s, channel.connection_id, channel.channel_id, number
            )
        else:
            assert channel is not None
            fresh = await stored.note_message(
                s, channel.binding_id, channel.channel_id, number, utcnow()
            )
        await s.commit()
    return fresh


@router.post(WEBHOOK_PATH, include_in_schema=False)
async def google_push(request: Request) -> Response:
    """Google's notification: headers only, empty body."""
    headers = request.headers
    channel_id = headers.get("x-goog-channel-id", "")
    resource_id = headers.get("x-goog-resource-id", "")
    state_name = headers.get("x-goog-resource-state", "")
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if not channel_id or not resource_id:
        if metrics:
            metrics.webhooks.labels(result="malformed").inc()
        return Response(status_code=400)
    found = await _lookup(request, channel_id, resource_id)
    refused = _refused(request, found, channel_id, resource_id, state_name, metrics)
    if refused is not None:
        return refused
    channel = found.channel
    jobs: JobQueue | None = getattr(request.app.state, "jobs", None)
    if jobs is None and isinstance(channel, stored.StoredChannel):
        log.error("push notification dropped: no job runner", extra={"channel": channel_id})
        return Response(status_code=503)
    number = _message_number(headers.get("x-goog-message-number"))
    if number is None:
        if metrics:
            metrics.webhooks.labels(result="malformed").inc()
        return PlainTextResponse(
            "X-Goog-Message-Number must be a positive whole number.", status_code=400
        )
    if not await _first_time(request, channel, number):
        log.info("push notification replayed", extra={"channel": channel_id, "number": number})
        if metrics:
            metrics.webhooks.labels(result="replay").inc()
        return Response(status_code=200)
    if isinstance(channel, stored.StoredListChannel):
        _check_later(request, channel.connection_id)
        if metrics:
            metrics.webhooks.labels(result="calendar_list").inc()
        return Response(status_code=200)
    assert isinstance(channel, stored.StoredChannel)
    if metrics:
        metrics.webhook_received(channel.binding_id)
    assert jobs is not None
    await jobs.enqueue_sync(channel.binding_id, Reason.WEBHOOK)
    return Response(status_code=200)
