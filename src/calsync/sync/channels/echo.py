"""The echo: evidence that a push channel works, at no request cost.

Google notifies a channel of every change to its calendar, calsync's own writes included. So
when the push writes to a watched calendar, a healthy channel announces it within seconds. The
push records the expectation before it writes (`Owed`: one UPDATE per batch of writes, on the
binding's row, so a crash leaves it to be checked); the notification that answers it costs no
write of its own — the receiver's one UPDATE per notification stamps `channel_heard_at` and
clears an expectation from before it (store.channels, EVENTS.owed). A channel that has not been heard from `grace` after a write
(`check`, run by the poll tick of every runner) is suspect: it is re-created at once and the
binding synced now, then polled at its tenant's interval until a notification arrives — unless
its twin still delivers.

Twins (migration 0020): both owe the echo of calsync's writes; and each twin's notification
makes the other owe one when the other has not been heard from within a minute — so a change
made in Google, announced by the healthy twin within seconds, also finds out the silent one
(store.channels, `_events_owed`), with no request either.

Clocks: the write's time is taken `SKEW` early, so a web process whose clock is a few seconds
behind the worker's still counts the notification as the echo (a notification a few seconds
before the write proves the channel as well).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.direction import Direction
from calsync.google.models import Event
from calsync.store import echoes
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.statuses import BindingRole

if TYPE_CHECKING:
    from calsync.sync.context import RunSettings
    from calsync.sync.ops import Op

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=2)  # CALSYNC_CHANNEL_ECHO_GRACE_SECONDS
SKEW = timedelta(seconds=5)


def watched(settings: RunSettings) -> bool:
    """Whether the binding's calendar has an events channel to echo (it imports)."""
    return (
        settings.role in (BindingRole.IMPORT, BindingRole.BOTH)
        and settings.direction != Direction.CRM_TO_GOOGLE
    )


async def written(
    settings: RunSettings, since: datetime | None, batch: Awaitable[list[Any]]
) -> list[Any]:
    """The push's batch of writes (`batch`, awaited here), their echo expected since `since`
    (`Owed`, stored with the plan before the request leaves — so neither a crash right
    after it nor an echo faster than the push's own bookkeeping is missed; None: nothing
    expected), the expectation withdrawn when Google changed nothing (every write refused,
    or a delete of an event gone already), which no channel would announce."""
    results = await batch
    if since is not None and not any(_changed(r) for r in results):
        async with settings.db.session() as session:
            await echoes.withdraw_echo(session, settings.binding_id, since)
            await session.commit()
    return results


def _changed(result: Any) -> bool:
    """A write Google applied: an event back (insert, patch, move) or a delete's empty answer."""
    return result is None or isinstance(result, Event)


class Owed:
    """The echo a round of the push's writes owes: stored with the plan (`store`, the plan's
    `before_commit`: one UPDATE in its transaction, committed before the request leaves),
    the time it is owed from in `since` (None: no write to the binding's own calendar)."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.since: datetime | None = None

    async def store(self, session: AsyncSession, ops: Sequence[Op]) -> None:
        settings = self.settings
        if not ops or not watched(settings) or all(op.from_binding is not None for op in ops):
            return
        self.since = utcnow() - SKEW
        await echoes.expect_echo(session, settings.binding_id, self.since)


async def check(
    db: Database,
    now: datetime,
    *,
    grace: timedelta = GRACE,
    rewatch: Callable[[uuid.UUID], Awaitable[object]] | None = None,
    limit: int = 500,
) -> list[uuid.UUID]:
    """Channels (either twin) that missed the echo of a change made before `now - grace`: each
    marked suspect (once, whichever process gets there first) and re-created (the binding's
    suspect ones, once a binding); returns their bindings, which the caller syncs now (what the
    dead channel kept quiet arrives in that run)."""
    async with db.session() as session:
        overdue = await echoes.echoes_overdue(session, now - grace, limit=limit)
        await session.commit()
    missed: list[uuid.UUID] = []
    for owed in overdue:
        async with db.session() as session:
            taken = await echoes.echo_missed(session, owed, now)
            await session.commit()
        if not taken:
            continue
        log.warning(
            "the push channel did not announce a change; making a new channel",
            extra={"binding": str(owed.binding_id), "channel": owed.channel_id},
        )
        if owed.binding_id not in missed:
            missed.append(owed.binding_id)
    for binding_id in missed:
        if rewatch is not None:
            try:
                await rewatch(binding_id)
            except Exception:
                log.exception("could not re-create a push channel that missed its echo")
    return missed
