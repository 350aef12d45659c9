"""Watch, renew and stop push channels — one implementation for both kinds (kinds.py).

Renewal makes the new channel first and stops the old one after, so no change falls between
two channels; a replaced channel is remembered as retired until Google confirms its stop.
`renew_due_channels` is the periodic task the job runners schedule: it watches owners without a
channel, renews those expiring within the margin, and leaves one whose watch failed to polling
for `WATCH_RETRY` — a time stored on its row, so every process's tick honours it.

A binding's two events channels (the first and its twin) are kept apart in time: a channel
made while its twin would expire within the renewal margin of it asks for half the lifetime,
so the two are never renewed (nor lapse) together.
"""

from __future__ import annotations

import logging
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from calsync.google import errors
from calsync.google.calendar import CalendarClient
from calsync.settings import Settings
from calsync.store import bindings, connections, tenants
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.sync.tokens import GoogleAccess

from .kinds import (
    CALENDAR_LIST,
    EVENT_KINDS,
    EVENTS,
    EVENTS_TWIN,
    KINDS,
    Kind,
    WatchRequest,
    expiry,
    renew_margin,
    webhook_address,
)

log = logging.getLogger(__name__)

CHANNEL_RENEWAL_SECONDS = 3600.0  # how often the periodic renewal task runs
# an owner whose watch failed is retried by the periodic task after this long, not every tick
WATCH_RETRY = timedelta(minutes=30)


def ttl_of(settings: Settings) -> int:
    """The lifetime asked for one channel: up to `push_channel_ttl_jitter` less, at random, so
    channels made in one go (a deployment, a reconnect of many) expire, and are renewed, spread
    over hours instead of in one renewal pass."""
    ttl = settings.push_channel_ttl_seconds
    return max(60, int(ttl * (1 - settings.push_channel_ttl_jitter * random.random())))


@dataclass(frozen=True)
class Renewal:
    """What one pass of `renew_due_channels` did (binding channels, then calendarList ones)."""

    watched: int = 0
    failed: int = 0
    stopped: int = 0
    lists_watched: int = 0
    lists_failed: int = 0
    lists_stopped: int = 0
    twins_watched: int = 0
    twins_failed: int = 0
    twins_stopped: int = 0


@dataclass(frozen=True)
class _Target:
    """What a watch needs to know about the owner, read in one session."""

    connection_id: uuid.UUID
    calendar_id: str
    old: stored.StoredChannel | None
    #: the other events channel of the binding (its twin), if any
    twin: stored.StoredChannel | None = None


class Channels:
    """Watch, replace and stop the push channels of bindings and connections (one per process
    is enough; it holds no state of its own)."""

    def __init__(self, db: Database, access: GoogleAccess, settings: Settings) -> None:
        self.db = db
        self.access = access
        self.settings = settings

    async def _target(self, kind: Kind, owner_id: uuid.UUID) -> _Target | None:
        if not kind.enabled(self.settings):
            return None
        async with self.db.session() as s:
            if not await stored.wanted(s, kind.holder, owner_id):
                return None
            old = await stored.current(s, kind.holder, owner_id)
            if kind in EVENT_KINDS:
                binding = await bindings.get(s, owner_id)
                assert binding is not None
                other = EVENTS_TWIN if kind is EVENTS else EVENTS
                twin = (
                    await stored.current(s, other.holder, owner_id)
                    if other.enabled(self.settings)
                    else None
                )
                target = _Target(binding.connection_id, binding.google_calendar_id, old, twin)
            else:
                target = _Target(owner_id, "", old)
            await s.commit()
        return target

    async def client_of(self, connection_id: uuid.UUID) -> CalendarClient | None:
        """A client acting as the connection (raises `errors.GoogleError` without tokens)."""
        async with self.db.session() as s:
            conn = await connections.get(s, connection_id)
            tenant = await tenants.get(s, conn.tenant_id) if conn is not None else None
            await s.commit()
        if conn is None or tenant is None:
            return None
        return self.access.client(self.access.tokens(self.db, tenant, conn))

    async def watch(self, owner_id: uuid.UUID, kind: Kind = EVENTS) -> bool:
        """Give the owner (a binding; with `kind=CALENDAR_LIST` a connection) a fresh channel,
        the new one first, then any old one stopped; False when the owner should not be watched
        or Google refused (logged, polling covers it)."""
        target = await self._target(kind, owner_id)
        if target is None:
            return False
        request = WatchRequest(
            calendar_id=target.calendar_id,
            channel_id=kind.new_id(owner_id),
            address=webhook_address(self.settings),
            token=secrets.token_urlsafe(32),
            ttl_seconds=self._staggered(ttl_of(self.settings), target.twin),
        )
        try:
            client = await self.client_of(target.connection_id)
            if client is None:
                return False
            try:
                channel = await kind.watch_at_google(client, request)
            finally:
                await client.aclose()
        except errors.GoogleError as exc:
            log.warning(
                f"{kind.name} not created",
                extra={kind.owner: str(owner_id), "code": exc.code, "reason": exc.message},
            )
            return False
        old = target.old
        async with self.db.session() as s:
            swapped = await stored.replace(
                s,
                kind.holder,
                owner_id,
                expected=old.channel_id if old else None,
                channel_id=request.channel_id,
                resource_id=channel.resource_id,
                token=request.token,
                expires_at=expiry(channel, self.settings),
            )
            await s.commit()
        if not swapped:  # someone else renewed meanwhile: theirs stays, ours goes
            await self.stop_at_google(
                target.connection_id, request.channel_id, channel.resource_id or ""
            )
            return False
        log.info(
            f"{kind.name} watching",
            extra={kind.owner: str(owner_id), "channel": request.channel_id},
        )
        if old is not None and old.resource_id:
            await self.stop_at_google(old.connection_id, old.channel_id, old.resource_id)
        return True

    def _staggered(self, ttl: int, twin: stored.StoredChannel | None) -> int:
        """Half the lifetime when the twin would expire within the renewal margin of this
        channel: the two then renew half a lifetime apart, and stay so."""
        if twin is None or twin.expires_at is None:
            return ttl
        ends = utcnow() + timedelta(seconds=ttl)
        if abs(ends - twin.expires_at) < renew_margin(self.settings):
            return max(60, ttl // 2)
        return ttl

    async def rewatch(self, binding_id: uuid.UUID) -> bool:
        """A new channel for each of the binding's events channels that is suspect (missed a
        change or an echo) or missing — the other twin, still delivering, is kept; the first
        channel when neither is (a poll's evidence marks both). Whether one was made."""
        async with self.db.session() as s:
            binding = await bindings.get(s, binding_id)
            await s.commit()
        if binding is None:
            return False
        suspect = {
            EVENTS: binding.channel_suspect_since is not None or not binding.channel_id,
            EVENTS_TWIN: binding.twin_channel_suspect_since is not None
            or not binding.twin_channel_id,
        }
        kinds = [k for k in EVENT_KINDS if suspect[k] and k.enabled(self.settings)] or [EVENTS]
        made = False
        for kind in kinds:
            made = await self.watch(binding_id, kind) or made
        return made

    async def stop_at_google(
        self, connection_id: uuid.UUID, channel_id: str, resource_id: str
    ) -> bool:
        """channels.stop with the connection's credentials, for either kind; best effort (404 =
        gone already). Once Google confirmed, the channel is no longer retired: a later
        notification on it is unknown."""
        try:
            client = await self.client_of(connection_id)
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
        async with self.db.session() as s:
            await stored.forget_retired(s, channel_id)
            await s.commit()
        return True

    async def unwatch(self, owner_id: uuid.UUID, kind: Kind = EVENTS) -> bool | None:
        """Forget the owner's channel and stop it at Google: None when it had none, else
        whether Google confirmed the stop (a revoked grant cannot stop it; Google then ends it
        at its expiry, and its notifications are answered as unknown)."""
        async with self.db.session() as s:
            old = await stored.current(s, kind.holder, owner_id)
            if old is None:
                return None
            await stored.replace(s, kind.holder, owner_id, expected=old.channel_id, channel_id=None)
            await s.commit()
        if not old.resource_id:
            return False
        return await self.stop_at_google(old.connection_id, old.channel_id, old.resource_id)

    async def unwatch_list(self, connection_id: uuid.UUID) -> bool | None:
        """`unwatch` of the connection's calendarList channel (disconnect, reconnect)."""
        return await self.unwatch(connection_id, CALENDAR_LIST)

    async def reconcile_connection(
        self,
        connection_id: uuid.UUID,
        *,
        removed: list[stored.StoredChannel] | None = None,
        renew_list: bool = False,
    ) -> None:
        """After calendars were chosen or sync switched on/off: channels of removed bindings
        stopped, then for each kind the connection's unwanted channels stopped and the wanted
        ones made — every import binding watched, and the calendarList channel made or stopped
        (made afresh with `renew_list`: a reconnect may have changed the Google account it
        must watch)."""
        for gone in removed or []:
            if gone.resource_id:
                await self.stop_at_google(gone.connection_id, gone.channel_id, gone.resource_id)
        for kind in KINDS:
            on = kind.enabled(self.settings)
            async with self.db.session() as s:
                unwanted = await stored.unwanted(
                    s, kind.holder, connection_id=connection_id, every=not on
                )
                wanted = (
                    await stored.unwatched(
                        s, kind.holder, connection_id, renew=renew_list and kind is CALENDAR_LIST
                    )
                    if on
                    else []
                )
                await s.commit()
            for channel in unwanted:
                await self.unwatch(channel.owner_id, kind)
            for owner_id in wanted:
                await self.watch(owner_id, kind)

    async def renew_due(self, *, now: datetime | None = None, limit: int = 500) -> Renewal:
        """For each kind: stop channels no longer wanted (where the kind is swept), watch owners
        without a channel and renew those expiring within the margin."""
        now = now or utcnow()
        renew_before = now + renew_margin(self.settings)
        counts: dict[str, tuple[int, int, int]] = {}
        for kind in KINDS:
            on = kind.enabled(self.settings)
            async with self.db.session() as s:
                due = (
                    await stored.due(
                        s, kind.holder, renew_before=renew_before, now=now, limit=limit
                    )
                    if on
                    else []
                )
                unwanted = (
                    await stored.unwanted(s, kind.holder, limit=limit, every=not on)
                    if kind.swept
                    else []
                )
                await s.commit()
            stopped = 0
            for channel in unwanted:
                stopped += await self.unwatch(channel.owner_id, kind) is not None
            watched = failed = 0
            for owner_id in due:
                ok = await self.watch(owner_id, kind)
                watched, failed = watched + ok, failed + (not ok)
                # a failure leaves the owner to polling for a while, in every process
                async with self.db.session() as s:
                    retry = None if ok else now + WATCH_RETRY
                    await stored.set_retry_after(s, kind.holder, owner_id, retry)
                    await s.commit()
            counts[kind.holder.kind] = (watched, failed, stopped)
        events, lists = counts[EVENTS.holder.kind], counts[CALENDAR_LIST.holder.kind]
        return Renewal(*events, *lists, *counts[EVENTS_TWIN.holder.kind])


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
