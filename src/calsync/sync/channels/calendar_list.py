"""What a connection's calendarList notification triggers: one list request, compared with the
connection's bindings.

A calendar gone from the list (deleted, unshared) disables its binding with the engine's own
"calendar gone" message; an export calendar without write access disables its binding with a
message naming the calendar; nothing in the CRM is deleted. A binding disabled that way resumes
when the list shows its calendar with enough access again. Channels then follow.

Checks are coalesced across every process: the notification stores "a check is owed" with its
message number (store.channels.note_message); whoever claims it runs the check, and owed checks
arriving meanwhile — in this process or another — make one more check after it, not one each.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from calsync.google import errors
from calsync.google.models import CalendarListEntry
from calsync.store import bindings, connections
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.models import CalendarBinding
from calsync.store.statuses import BindingRole, BindingStage, ConnectionStatus
from calsync.sync.errors import CalendarGone
from calsync.sync.tokens import NotConnected

from .service import Channels

log = logging.getLogger(__name__)

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
    if binding.role in (BindingRole.EXPORT, BindingRole.BOTH) and entry.access_role not in WRITERS:
        name = entry.summary_override or entry.summary or binding.summary
        return write_lost_message(name or binding.google_calendar_id)
    return None


@dataclass(frozen=True)
class ListCheck:
    """What one calendarList check changed."""

    disabled: tuple[uuid.UUID, ...] = ()
    resumed: tuple[uuid.UUID, ...] = ()


async def check_calendars(service: Channels, connection_id: uuid.UUID) -> ListCheck:
    """One check: the list fetched, bindings disabled or resumed by its verdicts, then the
    channels made to follow (disabled bindings' stopped, resumed ones' made). A grant Google
    refuses marks the connection for reauthorisation and stops its calendarList channel."""
    db = service.db
    try:
        client = await service.client_of(connection_id)
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
            async with db.session() as s:
                await connections.mark_needs_reauth(
                    s, connection_id, code=exc.code, message=exc.message
                )
                await s.commit()
            await service.unwatch_list(connection_id)
        return ListCheck()
    listed = {entry.id: entry for entry in live if not entry.deleted}
    disabled: list[uuid.UUID] = []
    resumed: list[uuid.UUID] = []
    async with db.session() as s:
        conn = await connections.get(s, connection_id)
        if conn is None or conn.status != ConnectionStatus.CONNECTED:
            return ListCheck()
        for binding in await bindings.for_connection(s, connection_id):
            entry = listed.get(binding.google_calendar_id)
            if entry is not None and entry.access_role and entry.access_role != binding.access_role:
                binding.access_role = entry.access_role
            verdict = list_verdict(binding, entry)
            if binding.stage == BindingStage.DISABLED:
                if not disabled_by_list(binding.paused_reason):
                    continue  # disabled for another reason: not ours to lift
                if verdict is None:
                    await bindings.resume(s, binding.id)
                    resumed.append(binding.id)
                elif verdict != binding.paused_reason:
                    await bindings.set_stage(s, binding.id, BindingStage.DISABLED, verdict)
            elif verdict is not None:
                await bindings.set_stage(s, binding.id, BindingStage.DISABLED, verdict)
                disabled.append(binding.id)
                log.warning(
                    "binding disabled by the calendar list",
                    extra={"binding": str(binding.id), "connection": str(connection_id)},
                )
        await s.commit()
    if disabled or resumed:
        await service.reconcile_connection(connection_id)
    return ListCheck(disabled=tuple(disabled), resumed=tuple(resumed))


async def run_owed_checks(
    service: Channels,
    connection_id: uuid.UUID,
    on_resumed: Callable[[uuid.UUID], Awaitable[None]],
) -> int:
    """Run the checks owed to the connection unless another process (or task) runs them: claim
    the owed check, check, and check again while notifications owed another meanwhile.
    `on_resumed` gets each binding a check resumed (back in the list: catch up now). Returns
    how many checks ran here (0: none was owed, or someone else is on it)."""
    db = service.db
    async with db.session() as s:
        claimed = await stored.claim_list_check(s, connection_id, utcnow())
        await s.commit()
    if not claimed:
        return 0
    ran = 0
    try:
        while True:
            done = await check_calendars(service, connection_id)
            ran += 1
            for binding_id in done.resumed:
                await on_resumed(binding_id)
            async with db.session() as s:
                again = await stored.end_list_check(s, connection_id, utcnow())
                await s.commit()
            if not again:
                return ran
    except BaseException:
        async with db.session() as s:
            await stored.abandon_list_check(s, connection_id)
            await s.commit()
        raise
