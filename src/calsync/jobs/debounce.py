"""CRM changes → a push to the owner's export calendar, debounced.

Every committed activity write calls `touch(tenant, owner)`. The push is enqueued `delay`
seconds after the owner's last write (at most `max_wait` after the first), so a bulk edit of a
hundred activities goes to Google as one run with batched requests instead of a hundred runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from calsync.store import schedule
from calsync.store.db import Database

from .port import JobQueue, Reason

log = logging.getLogger(__name__)


class ChangeDebouncer:
    """Per owner: one timer, pushed back by every write until the owner is quiet."""

    def __init__(
        self, db: Database, jobs: JobQueue, *, delay: float = 1.0, max_wait: float | None = None
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.delay = max(0.0, delay)
        self.max_wait = max_wait if max_wait is not None else max(5.0, 10 * self.delay)
        self._first: dict[tuple[uuid.UUID, uuid.UUID], float] = {}
        self._last: dict[tuple[uuid.UUID, uuid.UUID], float] = {}
        self._timers: dict[tuple[uuid.UUID, uuid.UUID], asyncio.Task[None]] = {}
        self._active = False

    def start(self) -> None:
        self._active = True

    async def stop(self) -> None:
        """Flush what is waiting (enqueue it now) and stop."""
        self._active = False
        keys = list(self._timers)
        for task in self._timers.values():
            task.cancel()
        await asyncio.gather(*self._timers.values(), return_exceptions=True)
        self._timers.clear()
        for tenant_id, owner_id in keys:
            with contextlib.suppress(Exception):
                await self._push(tenant_id, owner_id)

    def touch(self, tenant_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        """An activity of this owner changed (and is committed)."""
        if not self._active:
            return
        key = (tenant_id, owner_id)
        now = time.monotonic()
        self._first.setdefault(key, now)
        self._last[key] = now
        if key not in self._timers:
            self._timers[key] = asyncio.get_running_loop().create_task(self._wait(key))

    async def _wait(self, key: tuple[uuid.UUID, uuid.UUID]) -> None:
        try:
            while True:
                now = time.monotonic()
                quiet_at = self._last[key] + self.delay
                deadline = self._first[key] + self.max_wait
                fire_at = min(quiet_at, deadline)
                if now >= fire_at:
                    break
                await asyncio.sleep(fire_at - now)
        finally:
            self._first.pop(key, None)
            self._last.pop(key, None)
            self._timers.pop(key, None)
        try:
            await self._push(*key)
        except Exception:
            log.exception("could not queue the push of CRM changes")

    async def _push(self, tenant_id: uuid.UUID, owner_id: uuid.UUID) -> None:
        async with self.db.reads() as s:  # one statement, no transaction around it on PostgreSQL
            targets = await schedule.export_bindings(s, tenant_id, owner_id)
        for binding_id in targets:
            await self.jobs.enqueue_sync(binding_id, Reason.CHANGE)
