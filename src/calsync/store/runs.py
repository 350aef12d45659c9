"""Sync runs, sync issues and conflicts: what the engine did, what it could not, what it decided."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Update, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from . import webhook_events
from .base import table_of, utcnow
from .models import Conflict, SyncIssue, SyncRun
from .statuses import RunOutcome

#: what a run counts, each a column of sync_run
RUN_COUNTS = ("pulled", "pushed", "created", "updated", "deleted", "conflicts", "issues")


async def start(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    *,
    trigger: str,
    full_sync: bool,
) -> SyncRun:
    run = SyncRun(
        tenant_id=tenant_id,
        binding_id=binding_id,
        trigger=trigger,
        full_sync=full_sync,
        started_at=utcnow(),
        outcome=RunOutcome.RUNNING,
    )
    session.add(run)
    await session.flush()
    return run


async def finish(
    session: AsyncConnection | AsyncSession,
    run_id: uuid.UUID,
    *,
    outcome: str,
    counts: dict[str, int],
    full_sync: bool,
    error_code: str | None = None,
    error_message: str | None = None,
    google_requests: int = 0,
) -> None:
    """Close a run; `google_requests`: the HTTP requests it sent to Google (for /metrics).
    `counts`: some of RUN_COUNTS (the others are 0)."""
    unknown = set(counts) - set(RUN_COUNTS)
    if unknown:
        raise ValueError(f"not a run count: {sorted(unknown)}")
    await session.execute(
        _finish_statement(),
        {
            "run_id": run_id,
            "outcome": outcome,
            "finished_at": utcnow(),
            "full_sync": full_sync,
            "error_code": error_code,
            "error_message": error_message,
            "google_requests": google_requests,
            **{k: int(counts.get(k, 0)) for k in RUN_COUNTS},
        },
    )


@functools.cache
def _finish_statement() -> Update:
    """Built once, on the table (every sync ends with it: the ORM's bulk-update path and the
    statement's construction cost more than the UPDATE itself)."""
    table = table_of(SyncRun)
    columns = ("outcome", "finished_at", "full_sync", "error_code", "error_message")
    return (
        update(table)
        .where(table.c.id == bindparam("run_id"))
        .values({name: bindparam(name) for name in (*columns, "google_requests", *RUN_COUNTS)})
    )


async def get(session: AsyncSession, run_id: uuid.UUID) -> SyncRun | None:
    return await session.get(SyncRun, run_id)


async def running(session: AsyncSession, binding_ids: Collection[uuid.UUID]) -> Sequence[SyncRun]:
    """The runs of these bindings that have not finished yet (the pages show them as going on)."""
    if not binding_ids:
        return []
    result = await session.scalars(
        select(SyncRun).where(
            SyncRun.binding_id.in_(list(binding_ids)), SyncRun.outcome == RunOutcome.RUNNING
        )
    )
    return result.all()


async def report_issue(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    run_id: uuid.UUID | None,
    *,
    code: str,
    message: str,
    remedy: str | None,
    activity_id: uuid.UUID | None = None,
    google_event_id: str | None = None,
) -> SyncIssue:
    """Open an issue, or count one more occurrence of the same open issue."""
    existing = await session.scalar(
        select(SyncIssue).where(
            SyncIssue.binding_id == binding_id,
            SyncIssue.resolved_at.is_(None),
            SyncIssue.code == code,
            SyncIssue.activity_id.is_(None)
            if activity_id is None
            else SyncIssue.activity_id == activity_id,
            SyncIssue.google_event_id.is_(None)
            if google_event_id is None
            else SyncIssue.google_event_id == google_event_id,
        )
    )
    now = utcnow()
    if existing is not None:
        existing.occurrences += 1
        existing.last_seen_at = now
        existing.message = message
        existing.run_id = run_id
        return existing
    issue = SyncIssue(
        tenant_id=tenant_id,
        binding_id=binding_id,
        run_id=run_id,
        activity_id=activity_id,
        google_event_id=google_event_id,
        code=code,
        message=message,
        remedy=remedy,
        occurrences=1,
        first_seen_at=now,
        last_seen_at=now,
    )
    session.add(issue)
    await webhook_events.sync_issue(session, issue)
    return issue


async def resolve_issues(
    session: AsyncSession | AsyncConnection,
    binding_id: uuid.UUID,
    *,
    activity_id: uuid.UUID | None = None,
    google_event_id: str | None = None,
) -> None:
    """Close the open issues of an entry that synced fine after all."""
    query = update(SyncIssue).where(
        SyncIssue.binding_id == binding_id, SyncIssue.resolved_at.is_(None)
    )
    if activity_id is not None:
        query = query.where(SyncIssue.activity_id == activity_id)
    elif google_event_id is not None:
        query = query.where(SyncIssue.google_event_id == google_event_id)
    else:
        return
    await session.execute(
        query.values(resolved_at=utcnow()).execution_options(synchronize_session=False)
    )


async def open_issues(session: AsyncSession, binding_id: uuid.UUID) -> Sequence[SyncIssue]:
    result = await session.scalars(
        select(SyncIssue)
        .where(SyncIssue.binding_id == binding_id, SyncIssue.resolved_at.is_(None))
        .order_by(SyncIssue.first_seen_at)
    )
    return result.all()


def record_conflict(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    run_id: uuid.UUID | None,
    *,
    field: str,
    base: Any,
    crm: Any,
    google: Any,
    decision: str,
    policy: str,
    activity_id: uuid.UUID | None,
    link_id: uuid.UUID | None,
    google_event_id: str | None,
) -> Conflict:
    conflict = Conflict(
        tenant_id=tenant_id,
        binding_id=binding_id,
        run_id=run_id,
        activity_id=activity_id,
        event_link_id=link_id,
        google_event_id=google_event_id,
        field=field,
        base_value=base,
        crm_value=crm,
        google_value=google,
        decision=decision,
        policy=policy,
        decided_at=utcnow(),
    )
    session.add(conflict)
    return conflict


async def conflicts_for_bindings(
    session: AsyncSession, binding_ids: Collection[uuid.UUID], *, limit: int, offset: int = 0
) -> tuple[Sequence[Conflict], int]:
    """A page of the bindings' conflicts, newest first, and how many there are in all."""
    if not binding_ids:
        return [], 0
    where = Conflict.binding_id.in_(list(binding_ids))
    total = await session.scalar(select(func.count()).select_from(Conflict).where(where))
    result = await session.scalars(
        select(Conflict)
        .where(where)
        .order_by(Conflict.decided_at.desc(), Conflict.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return result.all(), int(total or 0)
