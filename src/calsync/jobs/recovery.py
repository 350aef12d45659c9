"""What a process that died owed is found in the database and synced: at start and every
`recovery_tick_seconds` (CALSYNC_RECOVERY_TICK_SECONDS).

- a webhook is acknowledged only after `sync_owed_at` is stored on its binding; a sync that
  started after it clears it on success, so a binding still owed lost its queued sync;
- a CRM edit is committed to the change feed before it is answered; the debounced push is
  only an optimisation, so an export binding whose push cursor (`push_seq`) is behind one of
  its owner's changes lost its push.

Bindings held by a lock are left to its holder (a dead holder's lock is released by the
runner's stuck-lock tick, which syncs the binding). The first pass of a process looks at
everything older than the process itself (what arrived since is its own debounce's, even when
a busy event loop runs the pass late); later ones only at what is older than `settle`, so they
never pre-empt a debounce or a sync queued in some live process.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from calsync.store import schedule
from calsync.store.base import utcnow
from calsync.store.db import Database

from .port import JobQueue, Reason

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, db: Database, jobs: JobQueue, *, settle: timedelta) -> None:
        self.db = db
        self.jobs = jobs
        self.settle = settle
        self.passes = 0
        self.started = utcnow()  # what arrives after this is this process's own to sync

    async def run(self) -> int:
        """Enqueue what is owed; returns how many bindings."""
        now = utcnow()
        before = self.started if self.passes == 0 else now - self.settle
        self.passes += 1
        async with self.db.session() as s:
            owed = await schedule.owed_syncs(s, now, before=before)
            behind = await schedule.behind_feed(s, now, before=before)
            await s.commit()
        for binding_id in owed:
            await self.jobs.enqueue_sync(binding_id, Reason.WEBHOOK)
        for binding_id in behind:
            if binding_id not in owed:
                await self.jobs.enqueue_sync(binding_id, Reason.CHANGE)
        found = len(set(owed) | set(behind))
        if found:
            log.warning(
                "recovered syncs left owed",
                extra={"webhooks": len(owed), "crm_changes": len(behind)},
            )
        return found
