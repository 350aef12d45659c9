"""/api/v1/users/{user_id}/google/{sync,runs,issues,calendars,conflicts}: what sync does for
a user — sync now, the run history, the entries that could not be synced, the calendars with
their state (resuming one the mass-delete guard paused) and the conflicts.

Apart from web/api/google.py (connecting and choosing what syncs): these read what the engine
recorded and start runs; they share its access rules (`target`, `module_on`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response

from calsync.jobs.port import JobQueue
from calsync.store import bindings, connections, google_settings, runs
from calsync.store.models import CalendarBinding
from calsync.store.statuses import BindingStage, ConnectionStatus
from calsync.sync import sync_now as now
from calsync.sync.codes import remedy_for
from calsync.sync.engine import COUNTS, RunResult

from .. import google_status, sync_requests
from ..deps import Session, TenantCaller
from ..errors import ApiError
from ..google_schemas import (
    BindingList,
    ConflictList,
    IssueEvent,
    IssueList,
    IssueOut,
    Problem,
    ResumeIn,
    ResumeOut,
    RunCounts,
    RunList,
    RunOut,
    SyncIn,
    SyncOut,
)
from .google import Db, Services, job_queue, module_on, not_connected, target

router = APIRouter(tags=["google"])


# -- sync now ---------------------------------------------------------------------------------


def _sum(results: Sequence[RunResult]) -> RunCounts:
    total: dict[str, int] = dict.fromkeys((*COUNTS, "linked"), 0)
    for result in results:
        for key in total:
            total[key] += int(result.counts.get(key, 0))
    return RunCounts(**{k: v for k, v in total.items() if k in RunCounts.model_fields})


def _result_out(result: RunResult, binding: CalendarBinding, stored: Any) -> RunOut:
    if stored is not None:
        out = google_status.run_out(stored, binding)
        out.counts.linked = int(result.counts.get("linked", 0))
        if result.error is not None:
            out.error = Problem(
                code=result.error.code, message=result.error.message, remedy=result.error.remedy
            )
        return out
    error = result.error
    return RunOut(
        id=result.run_id,
        binding_id=binding.id,
        calendar_id=binding.google_calendar_id,
        calendar_name=binding.summary,
        trigger="manual",
        full_sync=False,
        outcome=result.outcome.value,
        started_at=None,
        finished_at=None,
        counts=RunCounts(),
        error=Problem(code=error.code, message=error.message, remedy=error.remedy)
        if error
        else None,
    )


@router.post(
    "/users/{user_id}/google/sync",
    response_model=SyncOut,
    responses={202: {"model": SyncOut, "description": "Queued (without wait)"}},
)
async def sync_now(
    user_id: uuid.UUID,
    caller: TenantCaller,
    session: Session,
    services: Services,
    db: Db,
    response: Response,
    body: Annotated[SyncIn | None, Body()] = None,
    jobs: Annotated[JobQueue | None, Depends(job_queue)] = None,
) -> SyncOut:
    """Sync now ("Sync now" button); with `wait` the answer comes when it is done."""
    body = body or SyncIn()
    tenant, user = await target(caller, session, user_id)
    module_on(tenant)
    conn = await connections.for_user(session, user.id)
    if conn is None or conn.status != ConnectionStatus.CONNECTED:
        raise not_connected(conn, tenant, user)
    targets = [b for b in await bindings.for_connection(session, conn.id) if b.enabled]
    await session.commit()
    if not targets:
        raise ApiError(
            409,
            "nothing_to_sync",
            "No calendar is switched on for sync.",
            f"Choose calendars and switch sync on: PATCH /api/v1/users/{user.id}/google/settings.",
        )
    ids = [b.id for b in targets]
    calendars = [b.google_calendar_id for b in targets]
    if not body.wait:
        await sync_requests.start(db, services, jobs, ids, body.full)
        response.status_code = 202
        return SyncOut(
            status="queued",
            full=body.full,
            outcome=None,
            counts=None,
            runs=[],
            calendars=calendars,
        )
    results = await now.run_all(db, services, ids, body.full)
    outs: list[RunOut] = []
    async with db.session() as rs:
        for binding, result in zip(targets, results, strict=True):
            stored = await runs.get(rs, result.run_id) if result.run_id else None
            outs.append(_result_out(result, binding, stored))
    worst = now.worst(results)
    error = None
    if worst is not None and worst.error is not None and not worst.ok:
        error = Problem(
            code=worst.error.code, message=worst.error.message, remedy=worst.error.remedy
        )
    return SyncOut(
        status="finished",
        full=body.full,
        outcome=worst.outcome.value if worst else None,
        counts=_sum(results),
        runs=outs,
        calendars=calendars,
        error=error,
    )


# -- history ----------------------------------------------------------------------------------


@router.get("/users/{user_id}/google/runs", response_model=RunList)
async def list_runs(
    user_id: uuid.UUID,
    caller: TenantCaller,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RunList:
    """The user's sync runs, newest first, with counts and errors."""
    _, user = await target(caller, session, user_id)
    conn = await connections.for_user(session, user.id)
    if conn is None:
        return RunList(runs=[])
    # unticked calendars' runs too: their history stays, marked as no longer syncing
    by_id = {b.id: b for b in await bindings.for_connection(session, conn.id)}
    rows = await google_settings.recent_runs(session, list(by_id), limit=limit)
    return RunList(runs=[google_status.run_out(r, by_id.get(r.binding_id)) for r in rows])


@router.get("/users/{user_id}/google/issues", response_model=IssueList)
async def list_issues(user_id: uuid.UUID, caller: TenantCaller, session: Session) -> IssueList:
    """Entries that could not be synced, with what to do about each."""
    _, user = await target(caller, session, user_id)
    conn = await connections.for_user(session, user.id)
    if conn is None:
        return IssueList(issues=[])
    calendar_of = {
        b.id: b.google_calendar_id for b in await bindings.for_connection(session, conn.id)
    }
    rows = await google_settings.open_issues(session, list(calendar_of))
    return IssueList(
        issues=[
            IssueOut(
                id=i.id,
                code=i.code,
                message=i.message,
                remedy=i.remedy or remedy_for(i.code),
                event=IssueEvent(
                    calendar_id=calendar_of.get(i.binding_id, ""),
                    google_event_id=i.google_event_id,
                    activity_id=i.activity_id,
                ),
                occurrences=i.occurrences,
                first_seen_at=i.first_seen_at,
                last_seen_at=i.last_seen_at,
            )
            for i in rows
        ]
    )


# -- calendars: paused ones and resuming them --------------------------------------------------


@router.get("/users/{user_id}/google/calendars", response_model=BindingList)
async def list_calendars(user_id: uuid.UUID, caller: TenantCaller, session: Session) -> BindingList:
    """The calendars calsync keeps for the user (unticked ones too), each with its state; a
    paused one says when and why, and how many deletions the mass-delete guard held back."""
    _, user = await target(caller, session, user_id)
    conn = await connections.for_user(session, user.id)
    if conn is None:
        return BindingList(calendars=[])
    stored = await bindings.for_connection(session, conn.id)
    return BindingList(calendars=[google_status.binding_out(b) for b in stored])


@router.post(
    "/users/{user_id}/google/calendars/{binding_id}/resume",
    response_model=ResumeOut,
    responses={202: {"model": ResumeOut, "description": "Resumed, sync queued (without wait)"}},
)
async def resume_calendar(
    user_id: uuid.UUID,
    binding_id: uuid.UUID,
    body: ResumeIn,
    caller: TenantCaller,
    session: Session,
    services: Services,
    db: Db,
    response: Response,
    jobs: Annotated[JobQueue | None, Depends(job_queue)] = None,
) -> ResumeOut:
    """Resume a calendar the mass-delete guard paused, and start its sync at once.
    `confirm_deletions: true` applies the deletions Google reported to the CRM; `false` means
    the entries were restored in Google: the sync finds them and deletes nothing (still
    missing, the calendar pauses again). The user or an admin of the tenant may resume."""
    tenant, user = await target(caller, session, user_id)
    module_on(tenant)
    conn = await connections.for_user(session, user.id)
    binding = await bindings.get(session, binding_id)
    if conn is None or binding is None or binding.connection_id != conn.id:
        raise ApiError(
            404,
            "calendar_not_found",
            f"No calendar {binding_id} for this user.",
            f"GET /api/v1/users/{user.id}/google/calendars lists the user's calendars.",
        )
    if binding.stage != BindingStage.PAUSED:
        raise ApiError(
            409,
            "calendar_not_paused",
            f"{binding.summary or binding.google_calendar_id} is not paused "
            f"(it is {google_status.binding_state(binding)}).",
            "Nothing to resume; POST .../google/sync syncs now.",
        )
    if conn.status != ConnectionStatus.CONNECTED:
        raise not_connected(conn, tenant, user)
    resumed = await bindings.resume(session, binding.id, confirm_deletions=body.confirm_deletions)
    assert resumed is not None
    await session.commit()
    out = google_status.binding_out(resumed)
    if not body.wait:
        await sync_requests.start(db, services, jobs, [binding.id], False)
        response.status_code = 202
        return ResumeOut(calendar=out, status="queued", run=None)
    (result,) = await now.run_all(db, services, [binding.id], False)
    async with db.session() as rs:
        stored = await runs.get(rs, result.run_id) if result.run_id else None
        after = await bindings.get(rs, binding.id)
        run = _result_out(result, after or resumed, stored)
        out = google_status.binding_out(after or resumed)
    return ResumeOut(calendar=out, status="finished", run=run)


# -- conflicts --------------------------------------------------------------------------------


@router.get("/users/{user_id}/google/conflicts", response_model=ConflictList)
async def list_conflicts(
    user_id: uuid.UUID,
    caller: TenantCaller,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ConflictList:
    """Every field changed on both sides, newest first: the value at the last sync, the CRM's
    and Google's value, and which one calsync kept (the tenant's conflict policy)."""
    _, user = await target(caller, session, user_id)
    conn = await connections.for_user(session, user.id)
    if conn is None:
        return ConflictList(conflicts=[], total=0, limit=limit, offset=offset)
    by_id = {b.id: b for b in await bindings.for_connection(session, conn.id)}
    rows, total = await runs.conflicts_for_bindings(
        session, list(by_id), limit=limit, offset=offset
    )
    return ConflictList(
        conflicts=[google_status.conflict_out(c, by_id.get(c.binding_id)) for c in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
