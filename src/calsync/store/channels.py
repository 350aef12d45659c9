"""Push channels of calendar bindings and the calendarList channel of each connection: lookup by
channel id, compare-and-set replacement, and which need a channel (new) or a renewal (expiring).
SQL only; see calsync.channels."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .models import CalendarBinding, GoogleConnection, RetiredChannel

IMPORT_ROLES = ("import", "both")
SYNCING_STAGES = ("initial", "incremental")
RETIRED_KEPT = timedelta(days=31)


@dataclass(frozen=True)
class StoredChannel:
    """A channel as calsync knows it (enough to verify a notification and to stop it)."""

    binding_id: uuid.UUID
    connection_id: uuid.UUID
    tenant_id: uuid.UUID
    channel_id: str
    resource_id: str | None
    token: str | None
    expires_at: datetime | None


def _stored(b: CalendarBinding) -> StoredChannel:
    return StoredChannel(
        binding_id=b.id,
        connection_id=b.connection_id,
        tenant_id=b.tenant_id,
        channel_id=b.channel_id or "",
        resource_id=b.channel_resource_id,
        token=b.channel_token,
        expires_at=b.channel_expires_at,
    )


async def by_channel_id(session: AsyncSession, channel_id: str) -> StoredChannel | None:
    binding = await session.scalar(
        select(CalendarBinding).where(CalendarBinding.channel_id == channel_id)
    )
    return _stored(binding) if binding is not None else None


async def of_binding(session: AsyncSession, binding_id: uuid.UUID) -> StoredChannel | None:
    binding = await session.get(CalendarBinding, binding_id)
    if binding is None or not binding.channel_id:
        return None
    return _stored(binding)


async def replace(
    session: AsyncSession,
    binding_id: uuid.UUID,
    *,
    expected: str | None,
    channel_id: str | None,
    resource_id: str | None = None,
    token: str | None = None,
    expires_at: datetime | None = None,
) -> bool:
    """Point the binding at a new channel (or none) only if it still has `expected`: two
    renewals racing each other keep one channel, and the loser stops its own. The replaced
    channel is remembered as retired until its stop at Google is confirmed."""
    condition = (
        CalendarBinding.channel_id.is_(None)
        if expected is None
        else CalendarBinding.channel_id == expected
    )
    old = (
        await session.execute(
            select(CalendarBinding.connection_id, CalendarBinding.channel_resource_id).where(
                CalendarBinding.id == binding_id, condition
            )
        )
    ).first()
    result = await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id, condition)
        .values(
            channel_id=channel_id,
            channel_resource_id=resource_id,
            channel_token=token,
            channel_expires_at=expires_at,
            channel_message_seq=None,  # Google numbers each channel's messages afresh
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    swapped = bool(getattr(result, "rowcount", 0) == 1)
    if swapped and old is not None and expected and expected != channel_id and old[1]:
        await retire(session, expected, old[1], old[0])
    return swapped


async def note_message(
    session: AsyncSession, binding_id: uuid.UUID, channel_id: str, number: int, at: datetime
) -> bool:
    """Record a verified notification of the binding's current channel: its message number
    and that a sync is owed, in one write. False (nothing written) for a number already seen
    on this channel: a replay."""
    result = await session.execute(
        update(CalendarBinding)
        .where(
            CalendarBinding.id == binding_id,
            CalendarBinding.channel_id == channel_id,
            or_(
                CalendarBinding.channel_message_seq.is_(None),
                CalendarBinding.channel_message_seq < number,
            ),
        )
        .values(channel_message_seq=number, sync_owed_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def note_list_message(
    session: AsyncSession, connection_id: uuid.UUID, channel_id: str, number: int
) -> bool:
    """`note_message` for a connection's calendarList channel (no sync is owed: a check)."""
    result = await session.execute(
        update(GoogleConnection)
        .where(
            GoogleConnection.id == connection_id,
            GoogleConnection.list_channel_id == channel_id,
            or_(
                GoogleConnection.list_channel_message_seq.is_(None),
                GoogleConnection.list_channel_message_seq < number,
            ),
        )
        .values(list_channel_message_seq=number)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


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


async def retired(session: AsyncSession, channel_id: str) -> Retired | None:
    row = await session.get(RetiredChannel, channel_id)
    if row is None:
        return None
    return Retired(row.channel_id, row.resource_id, row.connection_id)


async def forget_retired(session: AsyncSession, channel_id: str) -> None:
    await session.execute(delete(RetiredChannel).where(RetiredChannel.channel_id == channel_id))


def _wants_channel() -> list[object]:
    return [
        CalendarBinding.role.in_(IMPORT_ROLES),
        CalendarBinding.enabled.is_(True),
        CalendarBinding.stage.in_(SYNCING_STAGES),
        CalendarBinding.direction != "crm_to_google",
        GoogleConnection.status == "connected",
    ]


async def due(
    session: AsyncSession, *, renew_before: datetime, limit: int = 500
) -> Sequence[uuid.UUID]:
    """Bindings that should be watched and have no channel, or one expiring before
    `renew_before` — oldest expiry first."""
    result = await session.scalars(
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .where(
            *_wants_channel(),  # type: ignore[arg-type]
            or_(
                CalendarBinding.channel_id.is_(None),
                CalendarBinding.channel_expires_at.is_(None),
                CalendarBinding.channel_expires_at < renew_before,
            ),
        )
        .order_by(CalendarBinding.channel_expires_at.asc().nulls_first())
        .limit(limit)
    )
    return result.all()


async def should_watch(session: AsyncSession, binding_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .where(CalendarBinding.id == binding_id, *_wants_channel())  # type: ignore[arg-type]
    )
    return found is not None


async def unwanted(session: AsyncSession, connection_id: uuid.UUID) -> Sequence[StoredChannel]:
    """The connection's channels on bindings that should not be watched any more (one query,
    not one `should_watch` per binding)."""
    wanted = (
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .where(CalendarBinding.connection_id == connection_id, *_wants_channel())  # type: ignore[arg-type]
    )
    rows = await session.scalars(
        select(CalendarBinding).where(
            CalendarBinding.connection_id == connection_id,
            CalendarBinding.channel_id.is_not(None),
            CalendarBinding.id.not_in(wanted),
        )
    )
    return [_stored(binding) for binding in rows.all()]


async def unwatched(session: AsyncSession, connection_id: uuid.UUID) -> Sequence[uuid.UUID]:
    """The connection's bindings that should be watched and have no channel yet."""
    rows = await session.scalars(
        select(CalendarBinding.id)
        .join(GoogleConnection, GoogleConnection.id == CalendarBinding.connection_id)
        .where(
            CalendarBinding.connection_id == connection_id,
            or_(CalendarBinding.channel_id.is_(None), CalendarBinding.channel_id == ""),
            *_wants_channel(),  # type: ignore[arg-type]
        )
    )
    return rows.all()


async def bindings_by_state(session: AsyncSession, now: datetime) -> dict[str, int]:
    """For /metrics: bindings counted by stage, and those switched off."""
    counts: dict[str, int] = {}
    rows = await session.execute(
        select(CalendarBinding.stage, CalendarBinding.enabled, func.count()).group_by(
            CalendarBinding.stage, CalendarBinding.enabled
        )
    )
    for stage, enabled, n in rows.all():
        key = stage if enabled else "off"
        counts[key] = counts.get(key, 0) + int(n)
    return counts


CHANNEL_KINDS = ("events", "calendar_list")
CHANNEL_STATES = ("active", "expiring", "expired")


async def channels_by_state(
    session: AsyncSession, now: datetime, soon: datetime
) -> dict[tuple[str, str], int]:
    """For /metrics: (kind, state) → count, kind `events` (a binding's) or `calendar_list` (a
    connection's), state active, expiring (renewal due) or expired; counted in SQL, so a scrape
    costs two small queries however many channels there are."""
    counts = {(kind, state): 0 for kind in CHANNEL_KINDS for state in CHANNEL_STATES}
    for kind, expires, channel_id in (
        ("events", CalendarBinding.channel_expires_at, CalendarBinding.channel_id),
        (
            "calendar_list",
            GoogleConnection.list_channel_expires_at,
            GoogleConnection.list_channel_id,
        ),
    ):
        state = case(
            (or_(expires.is_(None), expires <= now), "expired"),
            (expires < soon, "expiring"),
            else_="active",
        )
        rows = await session.execute(
            select(state, func.count()).where(channel_id.is_not(None)).group_by(state)
        )
        for name, n in rows.all():
            counts[(kind, str(name))] = int(n)
    return counts


# -- the calendarList channel of a connection ---------------------------------------------------


@dataclass(frozen=True)
class StoredListChannel:
    """A connection's calendarList channel (enough to verify a notification and to stop it)."""

    connection_id: uuid.UUID
    tenant_id: uuid.UUID
    channel_id: str
    resource_id: str | None
    token: str | None
    expires_at: datetime | None


def _stored_list(c: GoogleConnection) -> StoredListChannel:
    return StoredListChannel(
        connection_id=c.id,
        tenant_id=c.tenant_id,
        channel_id=c.list_channel_id or "",
        resource_id=c.list_channel_resource_id,
        token=c.list_channel_token,
        expires_at=c.list_channel_expires_at,
    )


async def list_by_channel_id(session: AsyncSession, channel_id: str) -> StoredListChannel | None:
    conn = await session.scalar(
        select(GoogleConnection).where(GoogleConnection.list_channel_id == channel_id)
    )
    return _stored_list(conn) if conn is not None else None


async def list_of_connection(
    session: AsyncSession, connection_id: uuid.UUID
) -> StoredListChannel | None:
    conn = await session.get(GoogleConnection, connection_id)
    if conn is None or not conn.list_channel_id:
        return None
    return _stored_list(conn)


async def replace_list(
    session: AsyncSession,
    connection_id: uuid.UUID,
    *,
    expected: str | None,
    channel_id: str | None,
    resource_id: str | None = None,
    token: str | None = None,
    expires_at: datetime | None = None,
) -> bool:
    """Point the connection at a new calendarList channel (or none) only if it still has
    `expected`, as `replace` does for bindings (the replaced one is remembered as retired)."""
    condition = (
        GoogleConnection.list_channel_id.is_(None)
        if expected is None
        else GoogleConnection.list_channel_id == expected
    )
    old_resource = await session.scalar(
        select(GoogleConnection.list_channel_resource_id).where(
            GoogleConnection.id == connection_id, condition
        )
    )
    result = await session.execute(
        update(GoogleConnection)
        .where(GoogleConnection.id == connection_id, condition)
        .values(
            list_channel_id=channel_id,
            list_channel_resource_id=resource_id,
            list_channel_token=token,
            list_channel_expires_at=expires_at,
            list_channel_message_seq=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    swapped = bool(getattr(result, "rowcount", 0) == 1)
    if swapped and expected and expected != channel_id and old_resource:
        await retire(session, expected, old_resource, connection_id)
    return swapped


def _wants_list_channel() -> list[object]:
    """Connected, with at least one binding switched on (whatever its stage: a binding disabled
    because its calendar vanished is resumed when the list shows the calendar again)."""
    return [
        GoogleConnection.status == "connected",
        exists().where(
            CalendarBinding.connection_id == GoogleConnection.id,
            CalendarBinding.enabled.is_(True),
        ),
    ]


async def list_wanted(session: AsyncSession, connection_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(GoogleConnection.id).where(
            GoogleConnection.id == connection_id,
            *_wants_list_channel(),  # type: ignore[arg-type]
        )
    )
    return found is not None


async def lists_due(
    session: AsyncSession, *, renew_before: datetime, limit: int = 500
) -> Sequence[uuid.UUID]:
    """Connections that want a calendarList channel and have none, or one expiring before
    `renew_before` — oldest expiry first."""
    result = await session.scalars(
        select(GoogleConnection.id)
        .where(
            *_wants_list_channel(),  # type: ignore[arg-type]
            or_(
                GoogleConnection.list_channel_id.is_(None),
                GoogleConnection.list_channel_expires_at.is_(None),
                GoogleConnection.list_channel_expires_at < renew_before,
            ),
        )
        .order_by(GoogleConnection.list_channel_expires_at.asc().nulls_first())
        .limit(limit)
    )
    return result.all()


async def lists_unwanted(session: AsyncSession, *, limit: int = 500) -> Sequence[uuid.UUID]:
    """Connections holding a calendarList channel they should not have any more (disconnected,
    waiting for reauthorisation, or no binding left)."""
    wanted = select(GoogleConnection.id).where(*_wants_list_channel())  # type: ignore[arg-type]
    result = await session.scalars(
        select(GoogleConnection.id)
        .where(GoogleConnection.list_channel_id.is_not(None), GoogleConnection.id.not_in(wanted))
        .limit(limit)
    )
    return result.all()
