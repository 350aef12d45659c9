"""Google push channels for import bindings: watch, renew before expiry, stop.

Every binding that imports from Google gets an `events.watch` channel addressed to
`CALSYNC_PUBLIC_URL/webhooks/google`, with a random token stored encrypted. A channel's id starts
with its binding's id, so a notification for a replaced channel still says whose it was and can
be stopped. Renewal makes the new channel first and stops the old one after, so no change falls
between two channels; `renew_due_channels` is the periodic task the job runners schedule.

Every connected connection with a binding switched on also gets one `calendarList.watch`
channel (id `list-<connection hex>-<random>`, so the receiver tells the two kinds apart by the id
and looks each up by one indexed column). Its notifications run `check_calendars`: one list
request, then bindings whose calendar left the list are disabled with the engine's own
"calendar gone" message, export bindings that lost write access with a message naming the
calendar, and bindings calsync disabled that way resume when the calendar is back.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from calsync.google import errors
from calsync.google.calendar import CalendarClient
from calsync.google.models import CalendarListEntry, Channel
from calsync.settings import Settings
from calsync.store import bindings, connections, tenants
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.models import CalendarBinding
from calsync.sync.errors import CalendarGone
from calsync.sync.tokens import GoogleAccess, NotConnected

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/google"
RENEW_MARGIN = timedelta(days=1)  # renew when less than a day ...
RENEW_FRACTION = 0.2  # ... or a fifth of the channel's life is left
ACTIVE, EXPIRING, NONE = "active", "expiring", "none"
CHANNEL_RENEWAL_SECONDS = 3600.0  # how often the periodic renewal task runs
# a binding whose watch failed is retried by the periodic task after this long, not every tick
WATCH_RETRY = timedelta(minutes=30)
_retry_after: dict[uuid.UUID, datetime] = {}


def webhook_address(settings: Settings) -> str:
    return settings.webhook_url or settings.public_url.rstrip("/") + WEBHOOK_PATH


def renew_margin(settings: Settings) -> timedelta:
    return max(RENEW_MARGIN, timedelta(seconds=settings.push_channel_ttl_seconds * RENEW_FRACTION))


def new_channel_id(binding_id: uuid.UUID) -> str:
    """`<binding hex>-<random>`: unique per watch, and traceable to its binding."""
    return f"{binding_id.hex}-{secrets.token_hex(8)}"


def binding_of_channel(channel_id: str) -> uuid.UUID | None:
    return _uuid_head(channel_id)


LIST_PREFIX = "list-"


def new_list_channel_id(connection_id: uuid.UUID) -> str:
    """`list-<connection hex>-<random>`: never mistaken for a binding's channel."""
    return f"{LIST_PREFIX}{connection_id.hex}-{secrets.token_hex(8)}"


def is_list_channel(channel_id: str) -> bool:
    return channel_id.startswith(LIST_PREFIX)


def connection_of_list_channel(channel_id: str) -> uuid.UUID | None:
    return _uuid_head(channel_id[len(LIST_PREFIX) :]) if is_list_channel(channel_id) else None


def _uuid_head(text: str) -> uuid.UUID | None:
    head = text.split("-", 1)[0]
    try:
        return uuid.UUID(hex=head) if len(head) == 32 else None
    except ValueError:
        return None


#: the stage message of a binding whose calendar left the list — the engine's words for a 404
GONE_MESSAGE = f"{CalendarGone.default_message} {CalendarGone.remedy}"
WRITE_LOST_PREFIX = "calsync can no longer write to "
WRITERS = ("owner", "writer")


def write_lost_message(calendar: str) -> str:
    return f"{WRITE_LOST_PREFIX}{calendar}: ask its owner for 'Make changes to events'."


def disabled_by_list(reason: str | None) -> bool:
    """True for the stage messages the calendarList check (or the engine's 404) writes."""
    return reason is not None and (reason == GONE_MESSAGE or reason.startswith(WRITE_LOST_PREFIX))


def list_verdict(binding: CalendarBinding, entry: CalendarListEntry | None) -> str | None:
    """Why the binding cannot sync according to the calendar list (None: it can)."""
    if entry is None or entry.deleted:
        return GONE_MESSAGE
    if binding.role in (bindings.EXPORT, bindings.BOTH) and entry.access_role not in WRITERS:
        name = entry.summary_override or entry.summary or binding.summary
        return write_lost_message(name or binding.google_calendar_id)
    return None


def state_of(expires_at: datetime | None, settings: Settings, now: datetime | None = None) -> str:
    """What the connection status shows: active, expiring (renewal due) or none."""
    now = now or utcnow()
    if expires_at is None or expires_at <= now:
        return NONE
    return EXPIRING if expires_at - now < renew_margin(settings) else ACTIVE


@dataclass(frozen=True)
class Renewal:
    """What one pass of `renew_due_channels` did (binding channels, then calendarList ones)."""

    watched: int = 0
    failed: int = 0
    stopped: int = 0
    lists_watched: int = 0
    lists_failed: int = 0
    lists_stopped: int = 0


@dataclass(frozen=True)
class ListCheck:
    """What one calendarList check changed."""

    disabled: tuple[uuid.UUID, ...] = ()
    resumed: tuple[uuid.UUID, ...] = ()


def _expiry(channel: Channel, settings: Settings) -> datetime:
    if channel.expiration is not None:
        return datetime.fromtimestamp(channel.expiration / 1000, UTC)
    return utcnow() + timedelta(seconds=settings.push_channel_ttl_seconds)


class Channels:
    """Watch, replace and stop the push channels of bindings (one per process is enough)."""

    def __init__(self, db: Database, access: GoogleAccess, settings: Settings) -> None:
        self.db = db
        self.access = access
        self.settings = settings

    async def watch(self, binding_id: uuid.UUID) -> bool:
        """Give the binding a fresh channel (replacing and stopping any old one); False when
        the binding should not be watched or Google refused (logged, polling covers it)."""
        async with self.db.session() as s:
            if not await stored.should_watch(s, binding_id):
                return False
            binding = await bindings.get(s, binding_id)
            assert binding is not None
            conn = await connections.get(s, binding.connection_id)
            tenant = await tenants.get(s, binding.tenant_id)
            assert conn is not None and tenant is not None
            old = await stored.of_binding(s, binding_id)
            calendar_id = binding.google_calendar_id
            await s.commit()
        channel_id = new_channel_id(binding_id)
        token = secrets.token_urlsafe(32)
        try:
            client = self.access.client(self.access.tokens(self.db, tenant, conn))
            try:
                channel = await client.watch_events(
                    calendar_id,
                    channel_id=channel_id,
                    address=webhook_address(self.settings),
                    token=token,
                    ttl_seconds=self.settings.push_channel_ttl_seconds,
                )
            finally:
                await client.aclose()
        except errors.GoogleError as exc:
            log.warning(
                "push channel not created",
                extra={"binding": str(binding_id), "code": exc.code, "reason": exc.message},
            )
            return False
        expires = _expiry(channel, self.settings)
        async with self.db.session() as s:
            swapped = await stored.replace(
                s,
                binding_id,
                expected=old.channel_id if old else None,
                channel_id=channel_id,
                resource_id=channel.resource_id,
                token=token,
                expires_at=expires,
            )
            await s.commit()
        if not swapped:  # someone else renewed meanwhile: theirs stays, ours goes
            await self.stop_at_google(binding_id, channel_id, channel.resource_id or "")
            return False
        log.info("push channel watching", extra={"binding": str(binding_id), "channel": channel_id})
        if old is not None and old.resource_id:
            await self.stop_at_google(binding_id, old.channel_id, old.resource_id)
        return True

    async def stop_at_google(
        self, binding_id: uuid.UUID, channel_id: str, resource_id: str
    ) -> bool:
        """channels.stop with the binding's connection; best effort (404 = gone already)."""
        async with self.db.session() as s:
            binding = await bindings.get(s, binding_id)
            await s.commit()
        if binding is None:
            return False
        return await self.stop_with_connection(binding.connection_id, channel_id, resource_id)

    async def unwatch(self, binding_id: uuid.UUID) -> bool:
        """Stop the binding's channel and forget it."""
        async with self.db.session() as s:
            old = await stored.of_binding(s, binding_id)
            if old is None:
                return False
            await stored.replace(s, binding_id, expected=old.channel_id, channel_id=None)
            await s.commit()
        if old.resource_id:
            await self.stop_at_google(binding_id, old.channel_id, old.resource_id)
        return True

    async def reconcile_connection(
        self,
        connection_id: uuid.UUID,
        *,
        removed: list[stored.StoredChannel] | None = None,
        renew_list: bool = False,
    ) -> None:
        """After calendars were chosen or sync switched on/off: every import binding watched,
        channels of bindings that no longer import (or were removed) stopped, and the
        connection's calendarList channel made or stopped (made afresh with `renew_list`: a
        reconnect may have changed the Google account it must watch)."""
        for gone in removed or []:
            if gone.resource_id:
                await self.stop_with_connection(
                    gone.connection_id, gone.channel_id, gone.resource_id
                )
        async with self.db.session() as s:
            unwanted = await stored.unwanted(s, connection_id)
            wanted = await stored.unwatched(s, connection_id)
            await s.commit()
        for channel in unwanted:
            await self.unwatch(channel.binding_id)
        for binding_id in wanted:
            await self.watch(binding_id)
        await self.reconcile_list(connection_id, renew=renew_list)

    async def renew_due(self, *, now: datetime | None = None, limit: int = 500) -> Renewal:
        """Watch bindings without a channel and renew those expiring within the margin; the
        same for connections' calendarList channels, and stop those no longer wanted."""
        now = now or utcnow()
        renew_before = now + renew_margin(self.settings)
        async with self.db.session() as s:
            due = await stored.due(s, renew_before=renew_before, limit=limit)
            lists_due = await stored.lists_due(s, renew_before=renew_before, limit=limit)
            lists_unwanted = await stored.lists_unwanted(s, limit=limit)
            await s.commit()
        watched, failed = await self._retrying(due, self.watch, now)
        lists_stopped = 0
        for connection_id in lists_unwanted:
            lists_stopped += await self.unwatch_list(connection_id) is not None
        lists_watched, lists_failed = await self._retrying(lists_due, self.watch_list, now)
        return Renewal(
            watched=watched,
            failed=failed,
            lists_watched=lists_watched,
            lists_failed=lists_failed,
            lists_stopped=lists_stopped,
        )

    @staticmethod
    async def _retrying(
        ids: Sequence[uuid.UUID],
        watch: Callable[[uuid.UUID], Awaitable[bool]],
        now: datetime,
    ) -> tuple[int, int]:
        """Watch each; one that failed is left alone for `WATCH_RETRY` (polling covers it)."""
        watched = failed = 0
        for key in ids:
            if _retry_after.get(key, now) > now:
                continue
            if await watch(key):
                watched += 1
                _retry_after.pop(key, None)
            else:
                failed += 1
                _retry_after[key] = now + WATCH_RETRY
        return watched, failed

    # -- the connection's calendarList channel ------------------------------------------------

    async def _client_of(self, connection_id: uuid.UUID) -> CalendarClient | None:
        """A client acting as the connection (raises `errors.GoogleError` without tokens)."""
        async with self.db.session() as s:
            conn = await connections.get(s, connection_id)
            tenant = await tenants.get(s, conn.tenant_id) if conn is not None else None
            await s.commit()
        if conn is None or tenant is None:
            return None
        return self.access.client(self.access.tokens(self.db, tenant, conn))

    async def stop_with_connection(
        self, connection_id: uuid.UUID, channel_id: str, resource_id: str
    ) -> bool:
        """channels.stop with the connection's credentials, for a binding's channel or the
        calendarList one; best effort (404 = gone already)."""
        try:
            client = await self._client_of(connection_id)
            if client is None:
                return False
            try:
                await client.stop_channel(channel_id, resource_id)
            finally:
                await client.aclose()
        except errors.NotFound:
            pass
        except errors.GoogleError as exc:
            log.warning("push channel not stopped", extra={"channel": channel_id, "code": exc.code})
            return False
        # stopped: no longer a channel of ours (a later notification on it is unknown)
        async with self.db.session() as s:
            await stored.forget_retired(s, channel_id)
            await s.commit()
        return True

    async def watch_list(self, connection_id: uuid.UUID) -> bool:
        """Give the connection a fresh calendarList channel (the new one first, then the old
        one stopped); False when it should have none or Google refused (logged)."""
        async with self.db.session() as s:
            wanted = await stored.list_wanted(s, connection_id)
            old = await stored.list_of_connection(s, connection_id)
            await s.commit()
        if not wanted:
            return False
        channel_id = new_list_channel_id(connection_id)
        token = secrets.token_urlsafe(32)
        try:
            client = await self._client_of(connection_id)
            if client is None:
                return False
            try:
                channel = await client.watch_calendar_list(
                    channel_id=channel_id,
                    address=webhook_address(self.settings),
                    token=token,
                    ttl_seconds=self.settings.push_channel_ttl_seconds,
                )
            finally:
                await client.aclose()
        except errors.GoogleError as exc:
            log.warning(
                "calendar list channel not created",
                extra={"connection": str(connection_id), "code": exc.code, "reason": exc.message},
            )
            return False
        async with self.db.session() as s:
            swapped = await stored.replace_list(
                s,
                connection_id,
                expected=old.channel_id if old else None,
                channel_id=channel_id,
                resource_id=channel.resource_id,
                token=token,
                expires_at=_expiry(channel, self.settings),
            )
            await s.commit()
        if not swapped:  # renewed elsewhere meanwhile: theirs stays, ours goes
            await self.stop_with_connection(connection_id, channel_id, channel.resource_id or "")
            return False
        log.info(
            "calendar list channel watching",
            extra={"connection": str(connection_id), "channel": channel_id},
        )
        if old is not None and old.resource_id:
            await self.stop_with_connection(connection_id, old.channel_id, old.resource_id)
        return True

    async def unwatch_list(self, connection_id: uuid.UUID) -> bool | None:
        """Forget the connection's calendarList channel and stop it at Google: None when it had
        none, else whether Google confirmed the stop (a revoked grant cannot stop it; Google
        then ends it at its expiry, and its notifications are answered as unknown)."""
        async with self.db.session() as s:
            old = await stored.list_of_connection(s, connection_id)
            if old is None:
                return None
            await stored.replace_list(s, connection_id, expected=old.channel_id, channel_id=None)
            await s.commit()
        if not old.resource_id:
            return False
        return await self.stop_with_connection(connection_id, old.channel_id, old.resource_id)

    async def reconcile_list(self, connection_id: uuid.UUID, *, renew: bool = False) -> None:
        async with self.db.session() as s:
            wanted = await stored.list_wanted(s, connection_id)
            current = await stored.list_of_connection(s, connection_id)
            await s.commit()
        if wanted and (current is None or renew):
            await self.watch_list(connection_id)
        elif not wanted and current is not None:
            await self.unwatch_list(connection_id)

    async def check_calendars(self, connection_id: uuid.UUID) -> ListCheck:
        """What a calendarList notification triggers: one list request, compared with the
        connection's bindings. A calendar gone from the list (deleted, unshared) disables its
        binding with the engine's 404 message; an export calendar without write access
        disables its binding with a message naming it; nothing in the CRM is deleted. A binding
        disabled that way resumes when the list shows its calendar with enough access again.
        Channels then follow (disabled bindings' stopped, resumed ones' made)."""
        try:
            client = await self._client_of(connection_id)
            if client is None:
                return ListCheck()
            try:
                live = await client.calendars()
            finally:
                await client.aclose()
        except errors.GoogleError as exc:
            log.warning(
                "calendar list check failed",
                extra={"connection": str(connection_id), "code": exc.code},
            )
            if exc.needs_reauth and not isinstance(exc, NotConnected):
                async with self.db.session() as s:
                    await connections.mark_needs_reauth(
                        s, connection_id, code=exc.code, message=exc.message
                    )
                    await s.commit()
                await self.unwatch_list(connection_id)
            return ListCheck()
        listed = {entry.id: entry for entry in live if not entry.deleted}
        disabled: list[uuid.UUID] = []
        resumed: list[uuid.UUID] = []
        async with self.db.session() as s:
            conn = await connections.get(s, connection_id)
            if conn is None or conn.status != connections.CONNECTED:
                return ListCheck()
            for binding in await bindings.for_connection(s, connection_id):
                entry = listed.get(binding.google_calendar_id)
                if (
                    entry is not None
                    and entry.access_role
                    and entry.access_role != binding.access_role
                ):
                    binding.access_role = entry.access_role
                verdict = list_verdict(binding, entry)
                if binding.stage == bindings.DISABLED:
                    if not disabled_by_list(binding.paused_reason):
                        continue  # disabled for another reason: not ours to lift
                    if verdict is None:
                        await bindings.resume(s, binding.id)
                        resumed.append(binding.id)
                    elif verdict != binding.paused_reason:
                        await bindings.set_stage(s, binding.id, bindings.DISABLED, verdict)
                elif verdict is not None:
                    await bindings.set_stage(s, binding.id, bindings.DISABLED, verdict)
                    disabled.append(binding.id)
                    log.warning(
                        "binding disabled by the calendar list",
                        extra={"binding": str(binding.id), "connection": str(connection_id)},
                    )
            await s.commit()
        if disabled or resumed:
            await self.reconcile_connection(connection_id)
        return ListCheck(disabled=tuple(disabled), resumed=tuple(resumed))


async def renew_due_channels(
    db: Database,
    access: GoogleAccess,
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = 500,
) -> Renewal:
    """The periodic renewal task (job runners schedule it; tests call it with a moved `now`)."""
    return await Channels(db, access, settings).renew_due(now=now, limit=limit)
