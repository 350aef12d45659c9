"""Which calendars sync, and how: the rules behind a settings change (docs/sync.md, "When you
change a setting").

The diff between the calendars ticked before and after (create, change or untick bindings —
every binding keeps its links), the checks on a choice (calendars by id, a writable export
calendar), what a change will do that deserves a confirmation, and the whole change with its
push channels and the sync it queues. The settings API and page call `update_settings`; the
errors say what was wrong in terms the caller turns into its own answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.direction import Direction
from calsync.google import errors
from calsync.google.models import CalendarListEntry
from calsync.store import bindings, connections, google_settings, links
from calsync.store import channels as stored_channels
from calsync.store.db import Database
from calsync.store.models import CalendarBinding, GoogleConnection, Tenant, User
from calsync.store.statuses import AuthMode, BindingRole, ConnectionStatus
from calsync.sync.channels.service import Channels

from .connect import fetch_calendars
from .connect_service_account import enable_service_account
from .google_services import GoogleServices

log = logging.getLogger(__name__)
CALENDAR_FIELDS = frozenset({"import_calendar_ids", "export_calendar_id"})


def imports(binding: CalendarBinding) -> bool:
    return binding.role in (BindingRole.IMPORT, BindingRole.BOTH)


def exports(binding: CalendarBinding) -> bool:
    return binding.role in (BindingRole.EXPORT, BindingRole.BOTH)


@dataclass(frozen=True)
class SettingsChange:
    """A settings change: only the fields in `sent` change (`export_calendar_id` None and
    sent means CRM entries go to no calendar)."""

    sent: frozenset[str]
    enabled: bool | None = None
    import_calendar_ids: list[str] | None = None
    export_calendar_id: str | None = None
    direction: str | None = None
    private_events: str | None = None

    @property
    def calendars_sent(self) -> bool:
        return bool(self.sent & CALENDAR_FIELDS)


# -- what is wrong with a change ----------------------------------------------------------------


class NotConnected(Exception):
    """The change needs a working connection and there is none (`connection` says what there
    is: None, or one that needs a new sign-in)."""

    def __init__(self, connection: GoogleConnection | None) -> None:
        super().__init__("not connected")
        self.connection = connection


class EnableForSelfOnly(Exception):
    """In service-account mode only the user switches sync on for themselves."""


@dataclass(frozen=True)
class UnknownCalendar:
    field: str
    calendar_id: str
    # the id of the calendar whose *name* was sent instead of its id, if one matches
    id_of_name: str | None = None


class UnknownCalendars(Exception):
    def __init__(self, problems: list[UnknownCalendar]) -> None:
        super().__init__(", ".join(p.calendar_id for p in problems))
        self.problems = problems


class ExportNotWritable(Exception):
    """calsync cannot write CRM entries to the chosen export calendar."""

    def __init__(self, entry: CalendarListEntry) -> None:
        super().__init__(entry.id)
        self.entry = entry


def check_calendars(
    live: Sequence[CalendarListEntry], import_ids: Sequence[str], export_id: str | None
) -> None:
    """Calendars are chosen by id among the account's live list; the export one writable."""
    known = {c.id: c for c in live}
    names = {(c.summary_override or c.summary or "").strip().lower(): c.id for c in live}
    problems = [
        UnknownCalendar(name, cid, names.get(cid.strip().lower()))
        for name, cid in [
            *(("import_calendar_ids", cid) for cid in import_ids),
            *([("export_calendar_id", export_id)] if export_id is not None else []),
        ]
        if cid not in known
    ]
    if problems:
        raise UnknownCalendars(problems)
    if export_id is not None and not known[export_id].writable:
        raise ExportNotWritable(known[export_id])


# -- the binding diff -------------------------------------------------------------------------


async def apply_calendars(
    session: AsyncSession,
    tenant: Tenant,
    conn: GoogleConnection,
    existing: Sequence[CalendarBinding],
    live: Sequence[CalendarListEntry],
    import_ids: list[str],
    export_id: str | None,
    direction: str,
) -> None:
    """Create, change or untick bindings; every binding keeps its links (docs/sync.md, "When
    you change a setting"): an unticked calendar's entries stay in the CRM and re-ticking it
    relinks them; a new export calendar's sync moves the CRM's entries over."""
    desired: dict[str, str] = dict.fromkeys(import_ids, BindingRole.IMPORT)
    if export_id is not None:
        desired[export_id] = BindingRole.BOTH if export_id in desired else BindingRole.EXPORT
    known = {c.id: c for c in live}
    for binding in existing:
        role = desired.pop(binding.google_calendar_id, None)
        if role is None:
            if binding.role != BindingRole.UNSELECTED:
                await google_settings.unselect_binding(session, binding)
            continue
        entry = known.get(binding.google_calendar_id)
        await google_settings.configure_binding(
            session,
            binding,
            role=role,
            direction=direction,
            enabled=conn.sync_enabled,
            summary=entry.summary if entry else None,
            access_role=entry.access_role if entry else None,
            time_zone=entry.time_zone if entry else None,
        )
    for cid, role in desired.items():
        entry = known[cid]
        binding = await bindings.create(
            session,
            tenant.id,
            conn.id,
            cid,
            role=role,
            direction=direction,
            summary=entry.summary,
            time_zone=entry.time_zone,
            access_role=entry.access_role,
        )
        if not conn.sync_enabled:
            await google_settings.configure_binding(
                session, binding, role=role, direction=direction, enabled=False
            )


# -- the whole change -------------------------------------------------------------------------


async def update_settings(
    session: AsyncSession,
    db: Database,
    services: GoogleServices,
    tenant: Tenant,
    user: User,
    change: SettingsChange,
    *,
    by_self: bool,
) -> uuid.UUID | None:
    """Apply `change` to the user's connection: switch sync on (through the service account
    in that mode), choose calendars (checked against the live list), direction, private
    events. Push channels follow the choice. Returns the connection to sync at once (calendars
    chosen or sync switched on; the caller queues `connect.bindings_to_sync`), else None.
    Raises `EnableForSelfOnly`, `NotConnected`, `UnknownCalendars`,
    `ExportNotWritable`, the service-account errors, or `errors.GoogleError` when the live
    calendar list cannot be read."""
    sent = change.sent
    conn = await connections.for_user(session, user.id)
    await session.commit()
    connected = conn is not None and conn.status == ConnectionStatus.CONNECTED
    service_account = tenant.auth_mode == AuthMode.SERVICE_ACCOUNT
    switching_on = change.enabled is True and (
        conn is None or not connected or not conn.sync_enabled
    )
    calendars_sent = change.calendars_sent
    if service_account and switching_on and not by_self:
        raise EnableForSelfOnly()
    if (
        service_account
        and change.enabled is True
        and (conn is None or not connected or conn.auth_mode != AuthMode.SERVICE_ACCOUNT)
    ):
        conn = await enable_service_account(session, services, tenant, user, conn)
        await session.commit()
        connected = True
    if conn is None:
        raise NotConnected(conn)
    existing = list(await bindings.for_connection(session, conn.id))
    watched = [c for b in existing for c in await stored_channels.of_binding(session, b.id)]
    direction = change.direction or (existing[0].direction if existing else Direction.TWO_WAY)
    live: list[CalendarListEntry] = []
    if calendars_sent:
        if not connected:
            raise NotConnected(conn)
        await session.commit()
        live = await fetch_calendars(db, services, tenant, conn)
    import_ids = (
        list(dict.fromkeys(change.import_calendar_ids))
        if change.import_calendar_ids is not None
        else [b.google_calendar_id for b in existing if imports(b)]
    )
    export_id = (
        change.export_calendar_id
        if "export_calendar_id" in sent
        else next((b.google_calendar_id for b in existing if exports(b)), None)
    )
    if calendars_sent:
        sent_export = change.export_calendar_id if "export_calendar_id" in sent else None
        check_calendars(live, list(change.import_calendar_ids or []), sent_export)
        await apply_calendars(
            session, tenant, conn, existing, live, import_ids, export_id, direction
        )
    elif "direction" in sent and change.direction is not None:
        for binding in existing:
            await google_settings.configure_binding(
                session, binding, role=binding.role, direction=direction, enabled=binding.enabled
            )
    if change.private_events is not None:
        conn.private_events = change.private_events
    if change.enabled is not None:
        await google_settings.set_enabled(session, conn, change.enabled)
    remaining = {b.id for b in await bindings.for_connection(session, conn.id)}
    await session.commit()
    # push channels follow the choice: import calendars watched, removed ones stopped
    removed = [c for c in watched if c.binding_id not in remaining]
    await Channels(db, services.access, services.settings).reconcile_connection(
        conn.id, removed=removed
    )
    return conn.id if calendars_sent or switching_on else None


# -- what a change will do --------------------------------------------------------------------


@dataclass(frozen=True)
class Consequence:
    """Something saving a change will do that the user may not expect."""

    code: str  # nothing_to_sync | export_calendar_moves
    message: str
    count: int | None = None
    from_calendar: str | None = None
    to_calendar: str | None = None


def _calendar_name(
    cid: str, existing: Sequence[CalendarBinding], live: Sequence[CalendarListEntry]
) -> str:
    for b in existing:
        if b.google_calendar_id == cid and b.summary:
            return b.summary
    entry = next((c for c in live if c.id == cid), None)
    return (entry.summary_override or entry.summary or cid) if entry is not None else cid


async def consequences(
    session: AsyncSession,
    conn: GoogleConnection | None,
    change: SettingsChange,
    live: Sequence[CalendarListEntry] = (),
) -> list[Consequence]:
    """What saving `change` will do that deserves a warning: nothing left to sync, or CRM
    entries moving to another calendar (and how many). Changes nothing."""
    if conn is None:
        return []
    sent = change.sent
    existing = list(await bindings.for_connection(session, conn.id))
    current_export = next((b for b in existing if exports(b)), None)
    import_ids = (
        change.import_calendar_ids
        if change.import_calendar_ids is not None
        else [b.google_calendar_id for b in existing if imports(b)]
    )
    export_id = (
        change.export_calendar_id
        if "export_calendar_id" in sent
        else (current_export.google_calendar_id if current_export else None)
    )
    enabled = change.enabled if change.enabled is not None else conn.sync_enabled
    out: list[Consequence] = []
    if enabled and not import_ids and export_id is None:
        out.append(
            Consequence(
                code="nothing_to_sync",
                message="No calendar is chosen: sync stays on but has nothing to do. Entries "
                "already synced stay in the CRM and in Google.",
            )
        )
    if (
        current_export is not None
        and export_id is not None
        and export_id != current_export.google_calendar_id
    ):
        moving = await links.count_live(session, current_export.id, crm_made=True)
        if moving:
            old = current_export.summary or current_export.google_calendar_id
            new = _calendar_name(export_id, existing, live)
            out.append(
                Consequence(
                    code="export_calendar_moves",
                    message=f"{moving} entries made in the CRM move from {old!r} to {new!r} "
                    "in Google at the next sync.",
                    count=moving,
                    from_calendar=old,
                    to_calendar=new,
                )
            )
    return out


async def preview(
    session: AsyncSession,
    db: Database,
    services: GoogleServices,
    tenant: Tenant,
    user: User,
    change: SettingsChange,
) -> list[Consequence]:
    """`consequences` of `change` for the user's connection; the live list only names a new
    export calendar (its id does as well when Google does not answer)."""
    conn = await connections.for_user(session, user.id)
    live: list[CalendarListEntry] = []
    if conn is not None and conn.status == ConnectionStatus.CONNECTED and change.export_calendar_id:
        await session.commit()
        try:
            live = await fetch_calendars(db, services, tenant, conn)
        except errors.GoogleError as exc:
            log.info("calendar list for the preview failed: %s", exc)
    return await consequences(session, conn, change, live)
