"""Asking the app's job runner for syncs on behalf of a request: the first sync after a connect
or a settings change, and "Sync now" without waiting.

In web, not in the service layer: the runner (jobs/) sits above sync/, so the service says which
calendars to sync (`connect.bindings_to_sync`) and the web queues them on the app's runner."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from calsync.jobs.port import JobQueue, Reason
from calsync.store.db import Database
from calsync.sync import connect
from calsync.sync.google_services import GoogleServices
from calsync.sync.sync_now import run_all

log = logging.getLogger(__name__)


async def enqueue_sync(
    db: Database, jobs: JobQueue | None, connection_id: uuid.UUID, reason: Reason = Reason.INITIAL
) -> list[uuid.UUID]:
    """Queue a sync of every switched-on calendar of the connection at once (connect,
    reconnect, calendars chosen, sync switched on). Without a runner (an app whose lifespan has
    not started) nothing is queued; the safety poll catches up."""
    ids = await connect.bindings_to_sync(db, connection_id)
    if jobs is None:
        return []
    try:
        for binding_id in ids:
            await jobs.enqueue_sync(binding_id, reason)
    except Exception:  # the connection is stored; the safety poll still finds the calendars
        log.exception("queueing the sync after a connect or settings change failed")
        return []
    return ids


async def start(
    db: Database,
    services: GoogleServices,
    jobs: JobQueue | None,
    binding_ids: Sequence[uuid.UUID],
    full: bool,
) -> None:
    """Start syncs without waiting: on the app's runner, where MANUAL jumps the queue; an app
    whose lifespan has not run (embedded in tests) runs them in the background."""
    if jobs is not None:
        for binding_id in binding_ids:
            await jobs.enqueue_sync(binding_id, Reason.MANUAL, full=full)
    else:
        services.spawn(run_all(db, services, list(binding_ids), full))
