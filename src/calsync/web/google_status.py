"""A user's Google connection as the API and the pages show it: the status with the live
calendar list, the last run and error and what to do about it; runs, calendars and conflicts as
the API returns them.

Only the view: connecting, choosing calendars and disconnecting are rules of the service layer
(sync/connect*.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from calsync.domain.direction import Direction
from calsync.google import errors
from calsync.google.models import CalendarListEntry
from calsync.jobs.polling import DEFAULT_POLL_SECONDS, MIN_POLL_SECONDS
from calsync.store import bindings, connections, google_settings
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.models import (
    CalendarBinding,
    Conflict,
    GoogleConnection,
    SyncRun,
    Tenant,
    User,
)
from calsync.store.statuses import BindingRole, BindingStage, Code, ConnectionStatus, RunOutcome
from calsync.sync import tokens as sync_tokens
from calsync.sync.channels.kinds import binding_trusted
from calsync.sync.channels.kinds import state_of as channel_state
from calsync.sync.codes import remedy_for
from calsync.sync.connect import fetch_calendars
from calsync.sync.connect_calendars import exports, imports
from calsync.sync.errors import Outcome
from calsync.sync.google_services import GoogleServices

from .google_schemas import (
    BindingOut,
    CalendarOut,
    ConflictOut,
    ConnectionOut,
    ListChannelOut,
    Problem,
    PushChannelOut,
    PushTwinOut,
    RunCounts,
    RunOut,
    SyncState,
)

log = logging.getLogger(__name__)

# engine outcomes whose run did what it could (an error then is only informative)
GOOD_OUTCOMES = (Outcome.OK, Outcome.PARTIAL, Outcome.SKIPPED, RunOutcome.RUNNING)


def problem(exc: errors.GoogleError) -> Problem:
    return Problem(code=exc.code, message=exc.message, remedy=exc.remedy)


def stored_problem(code: str | None, message: str | None) -> Problem | None:
    if not code and not message:
        return None
    return Problem(code=code or "error", message=message or "", remedy=remedy_for(code))


# -- status ---------------------------------------------------------------------------------


def run_out(run: SyncRun, binding: CalendarBinding | None) -> RunOut:
    """A stored run, named by its calendar (an unticked calendar's runs stay in the history,
    marked as no longer syncing)."""
    error = None
    if run.error_code or run.error_message:
        error = stored_problem(run.error_code, run.error_message)
    return RunOut(
        id=run.id,
        binding_id=run.binding_id,
        calendar_id=binding.google_calendar_id if binding is not None else "",
        calendar_name=binding.summary if binding is not None else None,
        calendar_syncing=binding is not None and binding.role != BindingRole.UNSELECTED,
        trigger=run.trigger,
        full_sync=run.full_sync,
        outcome=run.outcome,
        started_at=run.started_at,
        finished_at=run.finished_at,
        counts=RunCounts(
            pulled=run.pulled,
            pushed=run.pushed,
            created=run.created,
            updated=run.updated,
            deleted=run.deleted,
            conflicts=run.conflicts,
            issues=run.issues,
        ),
        error=error,
    )


def _calendar_from_binding(binding: CalendarBinding) -> CalendarOut:
    return CalendarOut(
        id=binding.google_calendar_id,
        summary=binding.summary,
        access_role=binding.access_role,
        primary=False,
        writable=binding.access_role in ("owner", "writer"),
        import_=imports(binding),
        export=exports(binding),
    )


def merge_calendars(
    live: Sequence[CalendarListEntry] | None, stored: Sequence[CalendarBinding]
) -> list[CalendarOut]:
    """The live list marked with what syncs; stored calendars Google no longer lists, too."""
    by_id = {b.google_calendar_id: b for b in stored}
    if live is None:
        return [_calendar_from_binding(b) for b in stored]
    out: list[CalendarOut] = []
    for entry in live:
        binding = by_id.pop(entry.id, None)
        out.append(
            CalendarOut(
                id=entry.id,
                summary=entry.summary_override or entry.summary,
                access_role=entry.access_role,
                primary=bool(entry.primary),
                writable=entry.writable,
                import_=binding is not None and imports(binding),
                export=binding is not None and exports(binding),
            )
        )
    out.extend(_calendar_from_binding(b) for b in by_id.values())
    return out


def _binding_problem(stored: Sequence[CalendarBinding]) -> Problem | None:
    for b in stored:
        if b.stage in (BindingStage.PAUSED, BindingStage.DISABLED):
            # a disabled stage (calendar gone, write access lost) is not the user's off switch
            code = Code.BINDING_PAUSED
            if b.stage == BindingStage.DISABLED:
                code = Code.BINDING_DISABLED_STAGE
            return Problem(
                code=code,
                message=f"{b.summary or b.google_calendar_id}: {b.paused_reason or b.stage}",
                remedy=remedy_for(code),
            )
    return None


async def status(
    db: Database, services: GoogleServices, tenant: Tenant, user: User, *, live: bool = True
) -> ConnectionOut:
    """GET .../google: never fails because Google does (the error goes into last_error)."""
    async with db.session() as session:
        conn = await connections.for_user(session, user.id)
        stored = list(await bindings.for_connection(session, conn.id)) if conn else []
        last = await google_settings.recent_runs(session, [b.id for b in stored], limit=1)
    by_id = {b.id: b for b in stored}
    last_run = run_out(last[0], by_id.get(last[0].binding_id)) if last else None
    state = "not_connected"
    last_error: Problem | None = None
    calendars_live: list[CalendarListEntry] | None = None
    if conn is not None and conn.status == ConnectionStatus.CONNECTED:
        state = "connected"
        if live:
            try:
                calendars_live = await fetch_calendars(db, services, tenant, conn)
            except errors.GoogleError as exc:
                last_error = problem(exc)
                if exc.needs_reauth and not isinstance(exc, sync_tokens.NotConnected):
                    state = "needs_reauth"
                    async with db.session() as session:
                        await connections.mark_needs_reauth(
                            session, conn.id, code=exc.code, message=exc.message
                        )
                        await session.commit()
    elif conn is not None and conn.status == ConnectionStatus.NEEDS_REAUTH:
        state = "needs_reauth"
        last_error = stored_problem(conn.last_error_code, conn.last_error_message) or Problem(
            code=errors.GrantRevoked.code,
            message=errors.GrantRevoked.default_message,
            remedy=errors.GrantRevoked.remedy,
        )
    elif conn is not None and conn.status == ConnectionStatus.ERROR:
        state = "error"
        last_error = stored_problem(conn.last_error_code, conn.last_error_message)
    if last_error is None and state == "connected":
        if last_run is not None and last_run.outcome not in GOOD_OUTCOMES:
            last_error = last_run.error
            if last_run.outcome == Outcome.NEEDS_REAUTH:
                last_error = None  # connected again since: that problem is solved
        last_error = last_error or _binding_problem(stored)
    if conn is None or state == "not_connected":
        auth_mode = tenant.auth_mode
    else:
        auth_mode = conn.auth_mode
    syncs = [b.last_sync_at for b in stored if b.last_sync_at is not None]
    import_ids = [b.google_calendar_id for b in stored if imports(b)]
    export_id = next((b.google_calendar_id for b in stored if exports(b)), None)
    return ConnectionOut(
        status=state,  # type: ignore[arg-type]
        google_email=conn.google_email if conn is not None and state != "not_connected" else None,
        linked_at=conn.linked_at if conn is not None and state != "not_connected" else None,
        auth_mode=auth_mode,  # type: ignore[arg-type]
        enabled=bool(conn.sync_enabled) if conn is not None else False,
        sync_state=sync_state(conn if state != "not_connected" else None, stored),
        direction=stored[0].direction if stored else Direction.TWO_WAY,  # type: ignore[arg-type]
        private_events=(conn.private_events if conn is not None else "import"),  # type: ignore[arg-type]
        calendars=merge_calendars(calendars_live, stored),
        import_calendar_ids=import_ids,
        export_calendar_id=export_id,
        last_sync_at=max(syncs) if syncs else None,
        last_run=last_run,
        last_error=last_error,
        push_channels=[_push_channel(b, tenant, services) for b in stored if imports(b)],
        list_channel=_list_channel(conn if state != "not_connected" else None, services),
    )


def _push_channel(b: CalendarBinding, tenant: Tenant, services: GoogleServices) -> PushChannelOut:
    """An import calendar's channel and its twin: polled at the tenant's interval while no
    channel of it is trusted (a suspect one, and no other delivering)."""
    settings = services.settings
    first = b.channel_expires_at if b.channel_id else None
    second = b.twin_channel_expires_at if b.twin_channel_id else None
    state, twin_state = channel_state(first, settings), channel_state(second, settings)
    trusted = binding_trusted(b, utcnow())  # the poll interval's rule (jobs.polling.healthy)
    suspect = b.channel_suspect_since is not None or b.twin_channel_suspect_since is not None
    twin = None
    if b.twin_channel_id:
        twin = PushTwinOut(
            state=twin_state,  # type: ignore[arg-type]
            expires_at=second,
            suspect_since=b.twin_channel_suspect_since,
        )
    return PushChannelOut(
        calendar_id=b.google_calendar_id,
        state=state,  # type: ignore[arg-type]
        expires_at=first,
        suspect_since=b.channel_suspect_since,
        polled_every_seconds=(
            max(MIN_POLL_SECONDS, tenant.poll_interval_seconds or DEFAULT_POLL_SECONDS)
            if suspect and not trusted
            else None
        ),
        twin=twin,
    )


def sync_state(conn: GoogleConnection | None, stored: Sequence[CalendarBinding]) -> SyncState:
    """What sync does for the user, in one word: on, off, nothing_selected (on, but no
    calendar ticked), paused (every chosen calendar waits for the user) or not_connected."""
    if conn is None:
        return "not_connected"
    if not conn.sync_enabled:
        return "off"
    chosen = [b for b in stored if b.role != BindingRole.UNSELECTED]
    if not chosen:
        return "nothing_selected"
    if all(b.stage in (BindingStage.PAUSED, BindingStage.DISABLED) for b in chosen):
        return "paused"
    return "on"


def binding_state(binding: CalendarBinding) -> str:
    if binding.role == BindingRole.UNSELECTED:
        return "unselected"
    if binding.stage in (BindingStage.PAUSED, BindingStage.DISABLED):
        return binding.stage
    return "syncing" if binding.enabled else "off"


def binding_out(binding: CalendarBinding) -> BindingOut:
    return BindingOut(
        id=binding.id,
        calendar_id=binding.google_calendar_id,
        calendar_name=binding.summary,
        role=binding.role,  # type: ignore[arg-type]
        direction=binding.direction,  # type: ignore[arg-type]
        state=binding_state(binding),  # type: ignore[arg-type]
        paused_at=binding.paused_at,
        paused_reason=binding.paused_reason,
        guarded_deletions=binding.guarded_deletions,
        deletions_confirmed=bool(binding.deletions_confirmed),
        last_sync_at=binding.last_sync_at,
        last_success_at=binding.last_success_at,
    )


def conflict_out(conflict: Conflict, binding: CalendarBinding | None) -> ConflictOut:
    return ConflictOut(
        id=conflict.id,
        calendar_id=binding.google_calendar_id if binding is not None else "",
        calendar_name=binding.summary if binding is not None else None,
        activity_id=conflict.activity_id,
        google_event_id=conflict.google_event_id,
        field=conflict.field,
        base_value=conflict.base_value,
        crm_value=conflict.crm_value,
        google_value=conflict.google_value,
        decision=conflict.decision,
        policy=conflict.policy,
        decided_at=conflict.decided_at,
    )


def _list_channel(conn: GoogleConnection | None, services: GoogleServices) -> ListChannelOut:
    expires = conn.list_channel_expires_at if conn is not None and conn.list_channel_id else None
    return ListChannelOut(
        state=channel_state(expires, services.settings),  # type: ignore[arg-type]
        expires_at=expires,
    )
