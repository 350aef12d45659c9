"""Sync now, on request ("Sync now", resuming a paused calendar): queued on the app's runner,
run in the background, or run here and waited for — the same for the API, the pages and the
cli's summary."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from calsync.jobs.port import JobQueue, Reason
from calsync.store.db import Database

from .engine import RunResult, sync_binding
from .errors import Outcome
from .google_services import GoogleServices

# worst first: the outcome a multi-calendar sync reports
SEVERITY = [
    Outcome.NEEDS_REAUTH,
    Outcome.FAILED,
    Outcome.DISABLED,
    Outcome.PAUSED,
    Outcome.BACKOFF,
    Outcome.PARTIAL,
    Outcome.SKIPPED,
    Outcome.OK,
]


async def run_all(
    db: Database, services: GoogleServices, binding_ids: Sequence[uuid.UUID], full: bool
) -> list[RunResult]:
    """Run the calendars' syncs one after the other, here (the caller waits)."""
    results: list[RunResult] = []
    for binding_id in binding_ids:
        results.append(
            await sync_binding(db, binding_id, services.access, trigger="manual", full=full)
        )
    return results


async def start(
    db: Database,
    services: GoogleServices,
    jobs: JobQueue | None,
    binding_ids: Sequence[uuid.UUID],
    full: bool,
) -> None:
    """Start the syncs without waiting: on the app's runner, where MANUAL jumps the queue; an
    app whose lifespan has not run (embedded in tests) runs them in the background."""
    if jobs is not None:
        for binding_id in binding_ids:
            await jobs.enqueue_sync(binding_id, Reason.MANUAL, full=full)
    else:
        services.spawn(run_all(db, services, list(binding_ids), full))


def worst(results: Sequence[RunResult]) -> RunResult | None:
    """The result a multi-calendar sync reports: its worst outcome (SEVERITY)."""
    if not results:
        return None
    return min(results, key=lambda r: SEVERITY.index(r.outcome))
