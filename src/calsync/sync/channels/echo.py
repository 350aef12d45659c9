"""The echo: evidence that a push channel works, at no request cost.

Google notifies a channel of every change to its calendar, calsync's own writes included. So
when the push writes to a watched calendar, a healthy channel announces it within seconds. The
push records the expectation before it writes (`expect`: one UPDATE per batch of writes, on the
binding's row, so a crash leaves it to be checked); the notification that answers it costs no
write of its own — the receiver's one UPDATE per notification stamps `channel_heard_at`
(store.channels, EVENTS.owed). A channel that has not been heard from `grace` after a write
(`check`, run by the poll tick of every runner) is suspect: it is re-created at once and the
binding synced now, then polled at its tenant's interval until a notification arrives.

Clocks: the write's time is taken `SKEW` early, so a web process whose clock is a few seconds
behind the worker's still counts the notification as the echo (a notification a few seconds
before the write proves the channel as well).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from calsync.domain.direction import Direction
from calsync.store import channels as stored
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


async def expect(settings: RunSettings, ops: Sequence[Op]) -> None:
    """Before the push's writes to the binding's own calendar: its channel owes their echo."""
    if not watched(settings) or all(op.from_binding is not None for op in ops):
        return
    async with settings.db.session() as session:
        await stored.expect_echo(session, settings.binding_id, utcnow() - SKEW)
        await session.commit()


async def check(
    db: Database,
    now: datetime,
    *,
    grace: timedelta = GRACE,
    rewatch: Callable[[uuid.UUID], Awaitable[object]] | None = None,
    limit: int = 500,
) -> list[uuid.UUID]:
    """Channels that missed the echo of a write made before `now - grace`: each marked
    suspect (once, whichever process gets there first) and re-created; returns their bindings,
    which the caller syncs now (what the dead channel kept quiet arrives in that run)."""
    async with db.session() as session:
        overdue = await stored.echoes_overdue(session, now - grace, limit=limit)
        await session.commit()
    missed: list[uuid.UUID] = []
    for owed in overdue:
        async with db.session() as session:
            taken = await stored.echo_missed(session, owed, now)
            await session.commit()
        if not taken:
            continue
        log.warning(
            "the push channel did not announce calsync's own write; making a new channel",
            extra={"binding": str(owed.binding_id), "channel": owed.channel_id},
        )
        missed.append(owed.binding_id)
        if rewatch is not None:
            try:
                await rewatch(owed.binding_id)
            except Exception:
                log.exception("could not re-create a push channel that missed its echo")
    return missed
