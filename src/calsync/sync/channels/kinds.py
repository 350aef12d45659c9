"""The two kinds of push channel, and what they share.

Every binding that imports from Google gets two `events.watch` channels on its calendar, the
first and its twin (CALSYNC_PUSH_CHANNELS_PER_CALENDAR=1: the first only); every connected
connection with a binding switched on gets one `calendarList.watch` channel. All are addressed
to `CALSYNC_PUBLIC_URL/webhooks/google` with a random token stored encrypted. A channel's id
starts with its owner's id — `<binding hex>-<random>`, `twin-<binding hex>-<random>` or
`list-<connection hex>-<random>` — so the receiver tells the kinds apart by the id, looks each
up by one indexed column, and a notification for a replaced channel still says whose it was.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from calsync.google.calendar import CalendarClient
from calsync.google.models import Channel
from calsync.settings import Settings
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.models import CalendarBinding

WEBHOOK_PATH = "/webhooks/google"
RENEW_MARGIN = timedelta(days=1)  # renew when less than a day ...
RENEW_FRACTION = 0.2  # ... or a fifth of the channel's life is left
#: with twins a channel that lapses is covered by its twin (and a calendarList channel's lapse
#: costs a check's delay, not a change): renew when a tenth of the life is left (16.8 h of 7
#: days; a failed watch is tried again every 30 min), or an hour at least
TWIN_RENEW_MARGIN = timedelta(hours=1)
TWIN_RENEW_FRACTION = 0.1
ACTIVE, EXPIRING, NONE = "active", "expiring", "none"
LIST_PREFIX = "list-"
TWIN_PREFIX = "twin-"


def live(channel_id: str | None, expires_at: datetime | None, now: datetime) -> bool:
    """A channel Google still delivers to: watched, and not expired."""
    return bool(channel_id) and expires_at is not None and expires_at > now


#: an events channel as its evidence needs it: (channel id, expiry, caught missing a change)
ChannelState = tuple[str | None, datetime | None, bool]


def trusted(now: datetime, *channels: ChannelState) -> bool:
    """One of the calendar's channels (the first, its twin) is live and has not been caught
    missing a change or an echo since it last notified (sync/channels/echo.py): what it has
    not announced, Google has not changed — up to its delivery's delay."""
    return any(
        not suspect and live(channel_id, expires, now) for channel_id, expires, suspect in channels
    )


def binding_trusted(binding: CalendarBinding, now: datetime) -> bool:
    """`trusted` for a binding's stored channels."""
    return trusted(
        now,
        (binding.channel_id, binding.channel_expires_at, binding.channel_suspect_since is not None),
        (
            binding.twin_channel_id,
            binding.twin_channel_expires_at,
            binding.twin_channel_suspect_since is not None,
        ),
    )


@dataclass(frozen=True)
class WatchRequest:
    """What a watch call needs besides the client: where to, with what, and for how long."""

    calendar_id: str  # the binding's calendar (unused by a calendarList watch)
    channel_id: str
    address: str
    token: str
    ttl_seconds: int


async def _watch_events(client: CalendarClient, request: WatchRequest) -> Channel:
    return await client.watch_events(
        request.calendar_id,
        channel_id=request.channel_id,
        address=request.address,
        token=request.token,
        ttl_seconds=request.ttl_seconds,
    )


async def _watch_calendar_list(client: CalendarClient, request: WatchRequest) -> Channel:
    return await client.watch_calendar_list(
        channel_id=request.channel_id,
        address=request.address,
        token=request.token,
        ttl_seconds=request.ttl_seconds,
    )


@dataclass(frozen=True)
class Kind:
    """One kind of channel: where it is stored, its id prefix, its watch call at Google, and
    its names in the log."""

    holder: stored.Holder
    prefix: str
    watch_at_google: Callable[[CalendarClient, WatchRequest], Awaitable[Channel]]
    name: str  # in log messages: "<name> watching", "<name> not created"
    owner: str  # the log field naming the owner: binding / connection
    #: whether the renewal tick also stops channels no longer wanted. An events channel stops
    #: where its binding stops importing (settings, disconnect, the calendar-list check); a
    #: calendarList channel's connection may need reauthorisation after any token refresh
    #: anywhere, which nothing else follows.
    swept: bool
    #: how many events channels a calendar must have for this kind to be made
    needs: int = 1

    def enabled(self, settings: Settings) -> bool:
        """Whether this kind is made at all (the twin: CALSYNC_PUSH_CHANNELS_PER_CALENDAR=2)."""
        return settings.push_channels_per_calendar >= self.needs

    def new_id(self, owner_id: uuid.UUID) -> str:
        """Unique per watch, and traceable to its owner (never mistaken for the other kind)."""
        return f"{self.prefix}{owner_id.hex}-{secrets.token_hex(8)}"

    def owner_of(self, channel_id: str) -> uuid.UUID | None:
        """The owner a channel id names (None: not an id of this kind)."""
        if not channel_id.startswith(self.prefix):
            return None
        head = channel_id[len(self.prefix) :].split("-", 1)[0]
        try:
            return uuid.UUID(hex=head) if len(head) == 32 else None
        except ValueError:
            return None


EVENTS = Kind(
    holder=stored.EVENTS,
    prefix="",
    watch_at_google=_watch_events,
    name="push channel",
    owner="binding",
    swept=False,
)
#: the calendar's second channel: swept, so CALSYNC_PUSH_CHANNELS_PER_CALENDAR=1 stops every
#: twin on the next renewal tick
EVENTS_TWIN = Kind(
    holder=stored.EVENTS_TWIN,
    prefix=TWIN_PREFIX,
    watch_at_google=_watch_events,
    name="twin push channel",
    owner="binding",
    swept=True,
    needs=2,
)
CALENDAR_LIST = Kind(
    holder=stored.CALENDAR_LIST,
    prefix=LIST_PREFIX,
    watch_at_google=_watch_calendar_list,
    name="calendar list channel",
    owner="connection",
    swept=True,
)
KINDS = (EVENTS, EVENTS_TWIN, CALENDAR_LIST)
EVENT_KINDS = (EVENTS, EVENTS_TWIN)


def kind_of(channel_id: str) -> Kind:
    """The kind a notification's channel id says (`list-...`: a connection's calendar list,
    `twin-...`: a binding's second channel)."""
    if channel_id.startswith(LIST_PREFIX):
        return CALENDAR_LIST
    return EVENTS_TWIN if channel_id.startswith(TWIN_PREFIX) else EVENTS


def webhook_address(settings: Settings) -> str:
    return settings.webhook_url or settings.public_url.rstrip("/") + WEBHOOK_PATH


def renew_margin(settings: Settings) -> timedelta:
    """How long before its expiry a channel is renewed: shorter with twins (each covers the
    other's lapse)."""
    ttl = settings.push_channel_ttl_seconds
    if settings.push_channels_per_calendar >= 2:
        return max(TWIN_RENEW_MARGIN, timedelta(seconds=ttl * TWIN_RENEW_FRACTION))
    return max(RENEW_MARGIN, timedelta(seconds=ttl * RENEW_FRACTION))


def state_of(expires_at: datetime | None, settings: Settings, now: datetime | None = None) -> str:
    """What the connection status shows: active, expiring (renewal due) or none."""
    now = now or utcnow()
    if expires_at is None or expires_at <= now:
        return NONE
    return EXPIRING if expires_at - now < renew_margin(settings) else ACTIVE


def expiry(channel: Channel, settings: Settings) -> datetime:
    """When Google ends the channel (what it answered, else the lifetime asked for)."""
    if channel.expiration is not None:
        return datetime.fromtimestamp(channel.expiration / 1000, UTC)
    return utcnow() + timedelta(seconds=settings.push_channel_ttl_seconds)
