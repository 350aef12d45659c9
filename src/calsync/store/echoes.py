"""The echo as rows (sync/channels/echo.py): a channel announces calsync's own writes too, and
with twins each one the changes the other announced — what each channel owes, which are
overdue, and a missed one marked suspect. Both twins' columns are named by their holders
(store.channels: `EVENTS`, `EVENTS_TWIN`), so one statement covers both."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Update, and_, bindparam, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .base import table_of
from .channels import EVENT_HOLDERS, Column, Holder, answered, holder_of
from .models import CalendarBinding


def _evidence(holder: Holder) -> tuple[Column, Column, Column]:
    assert holder.heard_at is not None and holder.echo_since is not None
    assert holder.suspect_since is not None
    return holder.heard_at, holder.echo_since, holder.suspect_since


async def expect_echo(
    session: AsyncSession | AsyncConnection, binding_id: uuid.UUID, since: datetime
) -> None:
    """calsync is about to write to the binding's calendar: each of its channels (both twins)
    owes a notification from `since` on. An expectation already owed (not yet heard) keeps its
    older time; one the channel answered since starts afresh. Nothing for a twin without a
    channel. One UPDATE (built once, on the table: every push of a change runs it)."""
    await session.execute(_expect_statement(), {"binding_id": binding_id, "since": since})


@functools.cache
def _expect_statement() -> Update:
    table = table_of(CalendarBinding)
    values: dict[str, Any] = {}
    for holder in EVENT_HOLDERS:
        heard, echo, _ = _evidence(holder)
        owes = and_(holder.channel_id.is_not(None), answered(heard, echo))
        values[echo.key] = case((owes, bindparam("since", type_=echo.type)), else_=echo)
    return (
        update(table)
        .where(
            table.c.id == bindparam("binding_id"),
            or_(*(holder.channel_id.is_not(None) for holder in EVENT_HOLDERS)),
        )
        .values(values)
    )


async def withdraw_echo(session: AsyncSession, binding_id: uuid.UUID, since: datetime) -> None:
    """Google changed nothing after all: the expectation stored at `since` is no more (an older
    one still owed stays), on both twins."""
    values: dict[str, Any] = {}
    for holder in EVENT_HOLDERS:
        _, echo, _ = _evidence(holder)
        values[echo.key] = case((echo == since, None), else_=echo)
    await session.execute(
        update(CalendarBinding)
        .where(CalendarBinding.id == binding_id)
        .values(values)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class OwedEcho:
    binding_id: uuid.UUID
    channel_id: str
    since: datetime
    kind: str = "events"  # which twin owes it (the holder's kind)


async def echoes_overdue(
    session: AsyncSession, before: datetime, *, limit: int = 500
) -> Sequence[OwedEcho]:
    """Channels (either twin) that have not announced a change made before `before` — a write
    of calsync's, or one the other twin announced — (no verified notification since it):
    through the index on each twin's echo column."""
    found: list[OwedEcho] = []
    for holder in EVENT_HOLDERS:
        heard, echo, _ = _evidence(holder)
        rows = await session.execute(
            select(holder.id, holder.channel_id, echo)
            .where(
                echo.is_not(None),
                echo < before,
                holder.channel_id.is_not(None),
                or_(heard.is_(None), heard < echo),
            )
            .order_by(echo)
            .limit(limit)
        )
        found += [
            OwedEcho(bid, cid or "", since, holder.kind)
            for bid, cid, since in rows.all()
            if since is not None
        ]
    return sorted(found, key=lambda owed: owed.since)[:limit]


async def echo_missed(session: AsyncSession, owed: OwedEcho, at: datetime) -> bool:
    """The channel missed its echo: suspect from `at` (re-created; with no twin to cover it,
    tenant-interval polls until a notification arrives), the expectation settled. A
    compare-and-set on what was read, so one process of many acts on it; False when a
    notification or a new channel came meanwhile."""
    holder = holder_of(owed.kind)
    heard, echo, suspect = _evidence(holder)
    result = await session.execute(
        update(CalendarBinding)
        .where(
            holder.id == owed.binding_id,
            holder.channel_id == owed.channel_id,
            echo == owed.since,
            or_(heard.is_(None), heard < echo),
        )
        .values({echo.key: None, suspect.key: at})
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
