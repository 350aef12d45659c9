"""POST /webhooks/google: Google's push notifications for calendar bindings and connections'
calendar lists.

The answer comes at once; the work is a queued, coalesced sync (`Reason.WEBHOOK`; `Reason.ECHO`
when the channel owes the echo of calsync's own recent write, so the echo queues behind Google's
other news and joins a push already waiting for the binding), or for a calendarList channel
(id `list-...`) a check of the connection's calendars run in the background (coalesced per
connection across every process: sync/channels/calendar_list.py). The channel is found by one
indexed lookup in the table its id's kind names. Channel id, resource id and token
are compared in constant time. A wrong token or resource id is refused (403) and logged without
the token.

Durable and once: a verified notification's `X-Goog-Message-Number` and the work it owes ("a
sync is owed", `sync_owed_at`; "a check is owed", `list_check_owed`) are stored in one write
before the 200, so a crash after the answer loses no sync (jobs/recovery.py) and a number
already seen on the channel (a replay) does no work.

Served ahead of the app's own middleware and router (`FastPath`): a notification carries no
cookie, no body and no parameters, so the session middleware, the exception middleware and the
route matching had nothing to do for it but cost a good part of a webhook-triggered sync's CPU.

Twins (CALSYNC_PUSH_CHANNELS_PER_CALENDAR=2): a calendar's two channels both announce each
change, within milliseconds of each other. The sync waits for the second message, at most
`TWIN_COALESCE_SECONDS`: it merges into the sync the first queued, and ends the wait (both
runners hold the wait in this process, jobs/port.py HELD), instead of making a second run; each
twin's message still stamps its own evidence (store.channels). A silent twin costs a change
the whole wait.

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
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from calsync.jobs.metrics import Metrics
from calsync.jobs.port import JobQueue, Reason
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.db import writes_first
from calsync.sync.channels.calendar_list import run_owed_checks
from calsync.sync.channels.kinds import (
    CALENDAR_LIST,
    EVENT_KINDS,
    WEBHOOK_PATH,
    Kind,
    kind_of,
)
from calsync.sync.channels.service import Channels
from calsync.sync.google_services import GoogleServices

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

STALE_GRACE_SECONDS = 5.0  # before stopping an unknown channel of one of our bindings
#: with twins, a notification's sync waits at most this long for the other twin's message of
#: the change (its arrival ends the wait): 0.3 s, as Google sends both twins' messages of a
#: change together (the emulator within milliseconds); only a change whose twin stays silent
#: pays all of it
TWIN_COALESCE_SECONDS = 0.3
STOPPED_MEMORY = 10_000  # channel ids already stopped (or being stopped) by this process
_stopping: OrderedDict[str, None] = OrderedDict()


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
        async with state.db.session() as session:
            current = await stored.by_channel_id(session, kind_of(channel_id).holder, channel_id)
            await session.commit()
        if current is None:
            await stop(service)
        else:
            _stopping.pop(channel_id, None)

    services.spawn(later())


def _check_later(request: Request, connection_id: uuid.UUID) -> None:
    """Run the calendar-list check the notification owed, in the background; while one runs
    (in this process or another) it checks once more after, instead (sync/channels)."""
    state = request.app.state
    services: GoogleServices = state.google
    service = Channels(state.db, services.access, state.settings)

    async def resumed(binding_id: uuid.UUID) -> None:
        jobs: JobQueue | None = getattr(state, "jobs", None)
        if jobs is not None:  # back in the list: catch up now
            await jobs.enqueue_sync(binding_id, Reason.WEBHOOK)

    async def check() -> None:
        try:
            await run_owed_checks(service, connection_id, resumed)
        except Exception:
            log.exception("calendar list check failed", extra={"connection": str(connection_id)})

    services.spawn(check())


@dataclass(frozen=True)
class _Notified:
    """What a notification's channel id names, as stored: its kind, the channel itself (None
    when unknown or replaced) and, when it is a channel replaced here whose stop Google has not
    confirmed, that record (the only unknown channels ever stopped)."""

    kind: Kind
    channel: stored.StoredChannel | None
    retired: stored.Retired | None  # an unknown channel this database still has to stop
    subject: dict[str, str]  # whose channel, for the log

    async def stop(self, service: Channels) -> bool:
        """Stop the notifying (retired) channel at Google."""
        assert self.retired is not None
        retired = self.retired
        return await service.stop_at_google(
            retired.connection_id, retired.channel_id, retired.resource_id
        )


async def _lookup(session: AsyncConnection, channel_id: str) -> _Notified:
    """One indexed lookup in the table the channel id's kind says (`list-...`: connections)."""
    kind = kind_of(channel_id)
    channel = await stored.by_channel_id(session, kind.holder, channel_id)
    owner_id = channel.owner_id if channel else kind.owner_of(channel_id)
    retired = await stored.retired(session, channel_id) if channel is None else None
    return _Notified(kind, channel, retired, {kind.owner: str(owner_id)})


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


async def _first_time(session: AsyncConnection, found: _Notified, number: int) -> bool:
    """Store the message number and the work it owes (a binding's sync, a calendar-list
    check) before answering; False for a number this channel already sent."""
    channel = found.channel
    assert channel is not None
    return await stored.note_message(
        session, found.kind.holder, channel.owner_id, channel.channel_id, number, utcnow()
    )


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
    # the lookup and the message number's write, on a connection without an ORM session (both
    # are table statements: a session's fixed cost is a good part of a webhook-triggered
    # sync's), each statement on its own: the UPDATE's WHERE checks again what the lookup read
    # (the channel, a newer message number), so they need no transaction around them
    async with request.app.state.db.autocommit() as session:
        found = await _lookup(session, channel_id)
        refused = _refused(request, found, channel_id, resource_id, state_name, metrics)
        if refused is not None:
            return refused
        channel = found.channel
        jobs: JobQueue | None = getattr(request.app.state, "jobs", None)
        if jobs is None and found.kind in EVENT_KINDS:
            log.error("push notification dropped: no job runner", extra={"channel": channel_id})
            return Response(status_code=503)
        number = _message_number(headers.get("x-goog-message-number"))
        if number is None:
            if metrics:
                metrics.webhooks.labels(result="malformed").inc()
            return PlainTextResponse(
                "X-Goog-Message-Number must be a positive whole number.", status_code=400
            )
        with writes_first():  # on SQLite, ahead of the CRM API's writes (as the sync's)
            fresh = await _first_time(session, found, number)
        await session.commit()
    if not fresh:
        log.info("push notification replayed", extra={"channel": channel_id, "number": number})
        if metrics:
            metrics.webhooks.labels(result="replay").inc()
        return Response(status_code=200)
    assert channel is not None
    if found.kind is CALENDAR_LIST:
        _check_later(request, channel.connection_id)
        if metrics:
            metrics.webhooks.labels(result="calendar_list").inc()
        return Response(status_code=200)
    if metrics:
        metrics.webhook_received(channel.owner_id)
    assert jobs is not None
    # most likely the echo of calsync's own write: nobody waits for it, so it queues behind
    # Google's other news, and joins a push of the binding already waiting (the sync it owes,
    # stored above, makes that run read Google first: sync.engine `_reads_google`)
    settings = request.app.state.settings
    grace = timedelta(seconds=settings.channel_echo_grace_seconds)
    reason = Reason.ECHO if _answers_own_write(channel, grace) else Reason.WEBHOOK
    # the other twin's message of the change is worth waiting for only if the calendar has one
    twins = settings.push_channels_per_calendar >= 2 and channel.twinned
    await jobs.enqueue_sync(channel.owner_id, reason, delay=TWIN_COALESCE_SECONDS if twins else 0.0)
    return Response(status_code=200)


def _answers_own_write(channel: stored.StoredChannel, grace: timedelta) -> bool:
    """The channel owes the echo of a write calsync made within the echo's grace
    (CALSYNC_CHANNEL_ECHO_GRACE_SECONDS, sync/channels/echo.py): the notification most likely
    announces that write. One owed for longer is a channel under suspicion, whose
    notification is news."""
    since = channel.echo_since
    return since is not None and since >= utcnow() - grace


class FastPath:
    """Pure ASGI middleware, the outermost of the app's own (web/app.py adds it last): a POST
    to the webhook goes straight to `google_push`, past the session middleware, the exception
    middleware and FastAPI's route matching; everything else goes on as before. Still inside
    Starlette's ServerErrorMiddleware, so an unexpected error is the app's usual 500. The
    route stays on the router too (same answer, e.g. for an app built without this)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and get_route_path(scope) == WEBHOOK_PATH
        ):
            response = await google_push(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
