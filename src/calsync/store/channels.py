"""Push channels as rows: lookup by channel id, compare-and-set replacement, which rows want a
channel (or a renewal), replays, retired channels, retry times and calendarList checks.

Three holders, one implementation: an `events` channel and its twin (`events_twin`, migration
0020: a second channel on the same calendar) live on their calendar_binding row, a
`calendar_list` channel on its google_connection row, in columns of the same meaning. A
`Holder` names one kind's table and columns; every query here takes the holder, so all kinds
are watched, replaced, retired and counted by the same statements. SQL only; the Google side
is calsync.sync.channels.

Twins vouch for each other at no request cost: a twin's verified notification, in the one
UPDATE that records it, makes the other twin owe an echo when the other has not been heard from
within `TWIN_SLACK` (both announce every change, so a healthy other answers within seconds); a
twin that does not is suspect after the echo grace, like a channel that missed calsync's own
write (sync/channels/echo.py).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from calsync.domain.direction import Direction

from .base import Base, utcnow
from .models import CalendarBinding, GoogleConnection, RetiredChannel
from .statuses import BindingRole, BindingStage, ConnectionStatus

IMPORT_ROLES = (BindingRole.IMPORT, BindingRole.BOTH)
SYNCING_STAGES = (BindingStage.INITIAL, BindingStage.INCREMENTAL)
RETIRED_KEPT = timedelta(days=31)
#: a calendarList check that has not finished in this long died with its process: the next
#: notification may start another
LIST_CHECK_LEASE = timedelta(minutes=5)
#: a twin heard from this shortly before the other's notification announced the same change:
#: it owes no echo (both twins' messages for one change arrive within milliseconds)
TWIN_SLACK = timedelta(seconds=60)
#: the echo a twin owes for the other's notification counts from this much before it: the two
#: messages of one change are received concurrently (each takes its time before the other's
#: write commits), and web processes' clocks may differ by seconds (as sync/channels/echo.py)
TWIN_SKEW = timedelta(seconds=5)

Column = InstrumentedAttribute[Any]


@dataclass(frozen=True)
class Holder:
    """Where one kind of channel is stored: the owning row's table and its channel columns,
    which of those rows want a channel, and what a verified notification owes."""

    kind: str  # `events` / `calendar_list` (the /metrics label)
    model: type[Base]
    id: Column  # the owner: a binding (events) or a connection (calendar_list)
    connection_id: Column
    tenant_id: Column
    channel_id: Column
    resource_id: Column
    token: Column
    expires_at: Column
    message_seq: Column
    retry_after: Column
    #: `select(owner id)` of the rows that should have a channel now
    wanted: Callable[[], Select[Any]]
    #: the values a verified, first-seen notification writes with its message number
    owed: Callable[[datetime], dict[str, Any]]
    #: what a new channel resets besides the channel columns (an echo the old one owed)
    fresh: Callable[[], dict[str, Any]] = dict
    #: an events channel's evidence (None for calendarList channels): the last verified
    #: notification, an echo owed since, a missed change or echo since
    heard_at: Column | None = None
    echo_since: Column | None = None
    suspect_since: Column | None = None


def _bindings_wanted() -> Select[Any]:
    """Import bindings that sync from Google, of connected connections."""
    return (
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .where(
            CalendarBinding.role.in_(IMPORT_ROLES),
            CalendarBinding.enabled.is_(True),
            CalendarBinding.stage.in_(SYNCING_STAGES),
            CalendarBinding.direction != Direction.CRM_TO_GOOGLE,
            GoogleConnection.status == ConnectionStatus.CONNECTED,
        )
    )


def _connections_wanted() -> Select[Any]:
    """Connected, with at least one binding switched on (whatever its stage: a binding disabled
    because its calendar vanished is resumed when the list shows the calendar again)."""
    return select(GoogleConnection.id).where(
        GoogleConnection.status == ConnectionStatus.CONNECTED,
        exists().where(
            CalendarBinding.connection_id == GoogleConnection.id,
            CalendarBinding.enabled.is_(True),
        ),
    )


def answered(heard_at: Column, echo_since: Column) -> Any:
    """No echo owed, or the channel was heard from since it was owed."""
    return or_(echo_since.is_(None), and_(heard_at.is_not(None), heard_at >= echo_since))


def _before(at: Any, delta: timedelta, column: Column) -> Any:
    """`at - delta`, computed here: for a datetime at once; for `note_message`'s statement built
    once (`at` a bind parameter) another parameter, `at_minus_<seconds>`, which note_message
    fills — `bindparam - interval` would be SQL arithmetic, and SQLite's on a stored datetime
    string is a number."""
    if isinstance(at, datetime):
        return at - delta
    return bindparam(_before_key(delta), type_=column.type)


def _before_key(delta: timedelta) -> str:
    return f"at_minus_{int(delta.total_seconds())}"


def _events_owed(
    this: tuple[Column, Column, Column], other: tuple[Column, Column, Column]
) -> Callable[[datetime], dict[str, Any]]:
    """What a verified notification of one twin writes: a sync owed, durable before the 200
    (jobs/recovery.py); evidence this twin delivers — trusted again after a poll found it
    silent (migration 0017), the echo of calsync's own writes heard (migration 0019); and, when
    the other twin has not been heard from within `TWIN_SLACK`, an echo the other owes from now
    (`TWIN_SKEW` early; an older one still owed keeps its time) — all in the one write per
    notification. An echo this twin owed from before `at` is settled (NULL again), so the poll
    tick's scan of owed echoes holds only what is still owed, not every calendar ever written
    to; one owed from after `at` (a message older than the write) stays."""
    suspect, heard, echo = this
    other_id, other_heard, other_echo = other

    def owed(at: datetime) -> dict[str, Any]:
        lagging = and_(
            other_id.is_not(None),
            or_(other_heard.is_(None), other_heard < _before(at, TWIN_SLACK, other_heard)),
            answered(other_heard, other_echo),
        )
        return {
            "sync_owed_at": at,
            suspect.key: None,
            heard.key: at,
            echo.key: case((echo <= at, None), else_=echo),
            other_echo.key: case((lagging, _before(at, TWIN_SKEW, other_echo)), else_=other_echo),
        }

    return owed


def _events_holder(kind: str, prefix: str, other: str) -> Holder:
    """An events channel's holder: its columns on calendar_binding start with `prefix`
    (`channel_…` for the first, `twin_channel_…` for the twin); `other` is the other twin's."""

    def col(name: str) -> Column:
        column: Column = getattr(CalendarBinding, f"{prefix}channel_{name}")
        return column

    def other_col(name: str) -> Column:
        column: Column = getattr(CalendarBinding, f"{other}channel_{name}")
        return column

    return Holder(
        kind=kind,
        model=CalendarBinding,
        id=CalendarBinding.id,
        connection_id=CalendarBinding.connection_id,
        tenant_id=CalendarBinding.tenant_id,
        channel_id=col("id"),
        resource_id=col("resource_id"),
        token=col("token"),
        expires_at=col("expires_at"),
        message_seq=col("message_seq"),
        retry_after=col("retry_after"),
        wanted=_bindings_wanted,
        owed=_events_owed(
            (col("suspect_since"), col("heard_at"), col("echo_since")),
            (other_col("id"), other_col("heard_at"), other_col("echo_since")),
        ),
        # a new channel never announces what was written before it existed
        fresh=lambda: {col("echo_since").key: None},
        heard_at=col("heard_at"),
        echo_since=col("echo_since"),
        suspect_since=col("suspect_since"),
    )


EVENTS = _events_holder("events", "", "twin_")
#: the calendar's second events channel (migration 0020): the same statements, other columns
EVENTS_TWIN = _events_holder("events_twin", "twin_", "")
CALENDAR_LIST = Holder(
    kind="calendar_list",
    model=GoogleConnection,
    id=GoogleConnection.id,
    connection_id=GoogleConnection.id,
    tenant_id=GoogleConnection.tenant_id,
    channel_id=GoogleConnection.list_channel_id,
    resource_id=GoogleConnection.list_channel_resource_id,
    token=GoogleConnection.list_channel_token,
    expires_at=GoogleConnection.list_channel_expires_at,
    message_seq=GoogleConnection.list_channel_message_seq,
    retry_after=GoogleConnection.list_channel_retry_after,
    wanted=_connections_wanted,
    owed=lambda _at: {"list_check_owed": True},  # a check of the calendar list
)
HOLDERS = (EVENTS, EVENTS_TWIN, CALENDAR_LIST)
EVENT_HOLDERS = (EVENTS, EVENTS_TWIN)


@dataclass(frozen=True)
class StoredChannel:
    """A channel as calsync knows it (enough to verify a notification and to stop it)."""

    kind: str  # the holder's kind
    owner_id: uuid.UUID  # the binding (events) or the connection (calendar_list)
    connection_id: uuid.UUID
    tenant_id: uuid.UUID
    channel_id: str
    resource_id: str | None
    token: str | None
    expires_at: datetime | None
    #: since when an events channel owes the echo of calsync's own write (None: it owes none);
    #: read only by the notification's lookup (`by_channel_id`)
    echo_since: datetime | None = None
    #: an events channel whose calendar has the other twin too (read by `by_channel_id`)
    twinned: bool = False

    @property
    def binding_id(self) -> uuid.UUID | None:
        """The binding of an events channel or its twin (None for a calendarList one)."""
        return self.owner_id if self.kind != CALENDAR_LIST.kind else None


def _columns(holder: Holder) -> tuple[Column, ...]:
    return (
        holder.id,
        holder.connection_id,
        holder.tenant_id,
        holder.channel_id,
        holder.resource_id,
        holder.token,
        holder.expires_at,
    )


def _stored(
    holder: Holder, row: Any, echo_since: datetime | None = None, twinned: bool = False
) -> StoredChannel:
    owner, connection, tenant, channel_id, resource_id, token, expires_at = row
    return StoredChannel(
        holder.kind,
        owner,
        connection,
        tenant,
        channel_id or "",
        resource_id,
        token,
        expires_at,
        echo_since,
        twinned,
    )


async def by_channel_id(
    session: AsyncSession | AsyncConnection, holder: Holder, channel_id: str
) -> StoredChannel | None:
    """The channel a notification names: one indexed lookup (the webhook's fast path)."""
    row = (
        await session.execute(_by_channel_statement(holder.kind), {"channel": channel_id})
    ).first()
    if row is None:
        return None
    return _stored(holder, row[:-2], echo_since=row[-2], twinned=bool(row[-1]))


def holder_of(kind: str) -> Holder:
    """The holder of a kind (`Holder.kind`)."""
    return next(h for h in HOLDERS if h.kind == kind)


def _table_column(attribute: Column) -> Any:
    """The table's column behind a mapped attribute (statements on the table, not the entity,
    skip the ORM's per-execution work)."""
    return attribute.property.columns[0]


@functools.cache
def _by_channel_statement(kind: str) -> Select[Any]:
    """Built once a kind, on the table (every notification runs it: building the SELECT and
    its cache key cost more than the lookup)."""
    holder = holder_of(kind)
    echo = null() if holder.echo_since is None else _table_column(holder.echo_since)
    other = [h for h in EVENT_HOLDERS if h.kind != kind] if holder in EVENT_HOLDERS else []
    twin = _table_column(other[0].channel_id).is_not(None) if other else null()
    return select(*(_table_column(c) for c in _columns(holder)), echo, twin).where(
        _table_column(holder.channel_id) == bindparam("channel")
    )


async def current(
    session: AsyncSession, holder: Holder, owner_id: uuid.UUID
) -> StoredChannel | None:
    """The owner's channel now (None: it has none)."""
    row = (await session.execute(select(*_columns(holder)).where(holder.id == owner_id))).first()
    if row is None or not row[3]:
        return None
    return _stored(holder, row)


async def of_binding(session: AsyncSession, binding_id: uuid.UUID) -> list[StoredChannel]:
    """The binding's events channels, both twins (remembered before bindings are removed, to
    stop them)."""
    found = [await current(session, holder, binding_id) for holder in EVENT_HOLDERS]
    return [channel for channel in found if channel is not None]


async def replace(
    session: AsyncSession,
    holder: Holder,
    owner_id: uuid.UUID,
    *,
    expected: str | None,
    channel_id: str | None,
    resource_id: str | None = None,
    token: str | None = None,
    expires_at: datetime | None = None,
) -> bool:
    """Point the owner at a new channel (or none) only if it still has `expected`: two
    renewals racing each other keep one channel, and the loser stops its own. The replaced
    channel is remembered as retired until its stop at Google is confirmed."""
    condition = holder.channel_id.is_(None) if expected is None else holder.channel_id == expected
    old = (
        await session.execute(
            select(holder.connection_id, holder.resource_id).where(holder.id == owner_id, condition)
        )
    ).first()
    result = await session.execute(
        update(holder.model)
        .where(holder.id == owner_id, condition)
        .values(
            {
                holder.channel_id.key: channel_id,
                holder.resource_id.key: resource_id,
                holder.token.key: token,
                holder.expires_at.key: expires_at,
                holder.message_seq.key: None,  # Google numbers each channel's messages afresh
                **holder.fresh(),
                "updated_at": utcnow(),
            }
        )
        .execution_options(synchronize_session=False)
    )
    swapped = bool(getattr(result, "rowcount", 0) == 1)
    if swapped and old is not None and expected and expected != channel_id and old[1]:
        await retire(session, expected, old[1], old[0])
    return swapped


async def note_message(
    session: AsyncSession | AsyncConnection,
    holder: Holder,
    owner_id: uuid.UUID,
    channel_id: str,
    number: int,
    at: datetime,
) -> bool:
    """Record a verified notification of the owner's current channel: its message number and
    the work it owes (a sync; a calendar-list check), in one write. False (nothing written)
    for a number already seen on this channel: a replay."""
    result = await session.execute(
        _note_statement(holder.kind),
        {
            "owner": owner_id,
            "channel": channel_id,
            "number": number,
            "seq": number,
            "at": at,
            **{_before_key(delta): at - delta for delta in (TWIN_SLACK, TWIN_SKEW)},
        },
    )
    return bool(getattr(result, "rowcount", 0) == 1)


@functools.cache
def _note_statement(kind: str) -> Update:
    """Built once a kind, on the table: the same UPDATE without the ORM's bulk-update path and
    the statement's construction, which cost more than the UPDATE (one a notification)."""
    holder = holder_of(kind)
    seq = _table_column(holder.message_seq)
    table = seq.table
    values: dict[str, Any] = {seq.name: bindparam("seq")}
    for key, value in holder.owed(bindparam("at")).items():  # type: ignore[arg-type]
        values[table.c[key].name] = value
    return (
        update(table)
        .where(
            _table_column(holder.id) == bindparam("owner"),
            _table_column(holder.channel_id) == bindparam("channel"),
            or_(seq.is_(None), seq < bindparam("number")),
        )
        .values(values)
    )


# -- retired channels: replaced or forgotten, their stop not yet confirmed by Google ----------


@dataclass(frozen=True)
class Retired:
    channel_id: str
    resource_id: str
    connection_id: uuid.UUID


async def retire(
    session: AsyncSession, channel_id: str, resource_id: str, connection_id: uuid.UUID
) -> None:
    """Remember a channel no longer in use until Google confirms its stop (or for a month:
    Google ends every channel by then)."""
    await session.execute(
        delete(RetiredChannel).where(RetiredChannel.retired_at < utcnow() - RETIRED_KEPT)
    )
    row = await session.get(RetiredChannel, channel_id)
    if row is None:
        session.add(
            RetiredChannel(
                channel_id=channel_id, resource_id=resource_id, connection_id=connection_id
            )
        )
    await session.flush()


async def retired(session: AsyncSession | AsyncConnection, channel_id: str) -> Retired | None:
    row = (await session.execute(_retired_statement(), {"channel": channel_id})).first()
    if row is None:
        return None
    return Retired(*row)


@functools.cache
def _retired_statement() -> Select[Any]:
    """On the table (the webhook reads it on a connection, without a session)."""
    table = RetiredChannel.__table__
    return select(table.c.channel_id, table.c.resource_id, table.c.connection_id).where(
        table.c.channel_id == bindparam("channel")
    )


async def forget_retired(session: AsyncSession, channel_id: str) -> None:
    await session.execute(delete(RetiredChannel).where(RetiredChannel.channel_id == channel_id))


# -- which owners want a channel --------------------------------------------------------------


async def wanted(session: AsyncSession, holder: Holder, owner_id: uuid.UUID) -> bool:
    """Whether the owner should have a channel now."""
    found = await session.scalar(holder.wanted().where(holder.id == owner_id))
    return found is not None


async def due(
    session: AsyncSession, holder: Holder, *, renew_before: datetime, now: datetime, limit: int
) -> Sequence[uuid.UUID]:
    """Owners that should be watched and have no channel, or one expiring before
    `renew_before` — oldest expiry first; those whose last watch failed wait for their retry
    time (`retry_after`, set by any process)."""
    result = await session.scalars(
        holder.wanted()
        .where(
            or_(
                holder.channel_id.is_(None),
                holder.expires_at.is_(None),
                holder.expires_at < renew_before,
            ),
            or_(holder.retry_after.is_(None), holder.retry_after <= now),
        )
        .order_by(holder.expires_at.asc().nulls_first())
        .limit(limit)
    )
    return result.all()


async def unwatched(
    session: AsyncSession, holder: Holder, connection_id: uuid.UUID, *, renew: bool = False
) -> Sequence[uuid.UUID]:
    """The connection's owners that should be watched and have no channel yet (with `renew`:
    those that have one too)."""
    query = holder.wanted().where(holder.connection_id == connection_id)
    if not renew:
        query = query.where(or_(holder.channel_id.is_(None), holder.channel_id == ""))
    return (await session.scalars(query)).all()


async def unwanted(
    session: AsyncSession,
    holder: Holder,
    *,
    connection_id: uuid.UUID | None = None,
    limit: int | None = None,
    every: bool = False,
) -> Sequence[StoredChannel]:
    """Channels on owners that should not have one any more — of one connection, or of all
    (one query, not one `wanted` per owner); with `every`, all of the holder's channels (a
    kind switched off: CALSYNC_PUSH_CHANNELS_PER_CALENDAR=1 stops the twins)."""
    query = select(*_columns(holder)).where(holder.channel_id.is_not(None))
    if not every:
        query = query.where(holder.id.not_in(holder.wanted()))
    if connection_id is not None:
        query = query.where(holder.connection_id == connection_id)
    rows = await session.execute(query.limit(limit))
    return [_stored(holder, row) for row in rows.all()]


async def set_retry_after(
    session: AsyncSession, holder: Holder, owner_id: uuid.UUID, at: datetime | None
) -> None:
    """After a failed watch: leave the owner to polling until `at` (None: a watch worked)."""
    await session.execute(
        update(holder.model)
        .where(holder.id == owner_id)
        .values({holder.retry_after.key: at})
        .execution_options(synchronize_session=False)
    )


# -- the calendarList check of a connection, coalesced across processes -----------------------


async def claim_list_check(session: AsyncSession, connection_id: uuid.UUID, now: datetime) -> bool:
    """Start the check a notification owed (`note_message` set `list_check_owed`) unless one
    runs in any process (or none is owed any more): True → the caller checks now."""
    result = await session.execute(
        update(GoogleConnection)
        .where(
            GoogleConnection.id == connection_id,
            GoogleConnection.list_check_owed.is_(True),
            or_(
                GoogleConnection.list_check_started_at.is_(None),
                GoogleConnection.list_check_started_at < now - LIST_CHECK_LEASE,
            ),
        )
        .values(list_check_started_at=now, list_check_owed=False)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def end_list_check(session: AsyncSession, connection_id: uuid.UUID, now: datetime) -> bool:
    """After a check: end it, unless a notification owed another meanwhile — then that one is
    taken (True → the caller checks again), so N notifications make one more check, not N."""
    ended = await session.execute(
        update(GoogleConnection)
        .where(GoogleConnection.id == connection_id, GoogleConnection.list_check_owed.is_(False))
        .values(list_check_started_at=None)
        .execution_options(synchronize_session=False)
    )
    if getattr(ended, "rowcount", 0) == 1:
        return False
    again = await session.execute(
        update(GoogleConnection)
        .where(GoogleConnection.id == connection_id, GoogleConnection.list_check_owed.is_(True))
        .values(list_check_started_at=now, list_check_owed=False)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(again, "rowcount", 0) == 1)


async def abandon_list_check(session: AsyncSession, connection_id: uuid.UUID) -> None:
    """A check failed unexpectedly: end it, and the checks owed with it (the next notification
    starts afresh)."""
    await session.execute(
        update(GoogleConnection)
        .where(GoogleConnection.id == connection_id)
        .values(list_check_started_at=None, list_check_owed=False)
        .execution_options(synchronize_session=False)
    )
