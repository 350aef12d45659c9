"""Sync now, on request ("Sync now", resuming a paused calendar), run here and waited for; and
which outcome a multi-calendar sync reports. Queueing instead is the job runner's (jobs/), one
layer up: the web's sync_requests.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

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


def worst(results: Sequence[RunResult]) -> RunResult | None:
    """The result a multi-calendar sync reports: its worst outcome (SEVERITY)."""
    if not results:
        return None
    return min(results, key=lambda r: SEVERITY.index(r.outcome))
