"""Google push channels for import bindings: watch, renew before expiry, stop.

Every binding that imports from Google gets an `events.watch` channel addressed to
`CALSYNC_PUBLIC_URL/webhooks/google`, with a random token stored encrypted. A channel's id starts
with its binding's id, so a notification for a replaced channel still says whose it was and can
be stopped. Renewal makes the new channel first and stops the old one after, so no change falls
between two channels; `renew_due_channels` is the periodic task the job runners schedule.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from calsync.google import errors
from calsync.settings import Settings
from calsync.store import bindings, connections, tenants
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.sync.tokens import GoogleAccess

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
    head = channel_id.split("-", 1)[0]
    try:
        return uuid.UUID(hex=head) if len(head) == 32 else None
    except ValueError:
        return None


def state_of(expires_at: datetime | None, settings: Settings, now: datetime | None = None) -> str:
    """What the connection status shows: active, expiring (renewal due) or none."""
    now = now or utcnow()
    if expires_at is None or expires_at <= now:
        return NONE
    return EXPIRING if expires_at - now < renew_margin(settings) else ACTIVE


@dataclass(frozen=True)
class Renewal:
    """What one pass of `renew_due_channels` did."""

    watched: int = 0
    failed: int = 0
    stopped: int = 0


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
        expires = (
            datetime.fromtimestamp(channel.expiration / 1000, UTC)
            if channel.expiration is not None
            else utcnow() + timedelta(seconds=self.settings.push_channel_ttl_seconds)
        )
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
            if binding is None:
                return False
            conn = await connections.get(s, binding.connection_id)
            tenant = await tenants.get(s, binding.tenant_id)
            await s.commit()
        if conn is None or tenant is None:
            return False
        try:
            client = self.access.client(self.access.tokens(self.db, tenant, conn))
            try:
                await client.stop_channel(channel_id, resource_id)
            finally:
                await client.aclose()
        except errors.NotFound:
            return True
        except errors.GoogleError as exc:
            log.warning("push channel not stopped", extra={"channel": channel_id, "code": exc.code})
            return False
        return True

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
        self, connection_id: uuid.UUID, *, removed: list[stored.StoredChannel] | None = None
    ) -> None:
        """After calendars were chosen or sync switched on/off: every import binding watched,
        channels of bindings that no longer import (or were removed) stopped."""
        for gone in removed or []:
            if gone.resource_id:
                await self._stop_for_connection(gone)
        async with self.db.session() as s:
            unwanted = await stored.unwanted(s, connection_id)
            wanted = [
                b.id
                for b in await bindings.for_connection(s, connection_id)
                if not b.channel_id and await stored.should_watch(s, b.id)
            ]
            await s.commit()
        for channel in unwanted:
            await self.unwatch(channel.binding_id)
        for binding_id in wanted:
            await self.watch(binding_id)

    async def _stop_for_connection(self, channel: stored.StoredChannel) -> None:
        """Stop a removed binding's channel with its connection's credentials."""
        async with self.db.session() as s:
            conn = await connections.get(s, channel.connection_id)
            tenant = await tenants.get(s, channel.tenant_id)
            await s.commit()
        if conn is None or tenant is None:
            return
        try:
            client = self.access.client(self.access.tokens(self.db, tenant, conn))
            try:
                await client.stop_channel(channel.channel_id, channel.resource_id or "")
            finally:
                await client.aclose()
        except errors.GoogleError as exc:
            if not isinstance(exc, errors.NotFound):
                log.warning("push channel not stopped", extra={"code": exc.code})

    async def renew_due(self, *, now: datetime | None = None, limit: int = 500) -> Renewal:
        """Watch bindings without a channel and renew those expiring within the margin."""
        now = now or utcnow()
        async with self.db.session() as s:
            due = await stored.due(s, renew_before=now + renew_margin(self.settings), limit=limit)
            await s.commit()
        watched = failed = 0
        for binding_id in due:
            if _retry_after.get(binding_id, now) > now:
                continue
            if await self.watch(binding_id):
                watched += 1
                _retry_after.pop(binding_id, None)
            else:
                failed += 1
                _retry_after[binding_id] = now + WATCH_RETRY
        return Renewal(watched=watched, failed=failed)


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
