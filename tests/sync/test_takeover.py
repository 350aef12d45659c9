"""A sync that takes over the lock of a worker that died closes that worker's run at once: a
run "running" never stands beside a newer one of the same binding (status pages, /metrics)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from calsync.store import bindings, runs
from calsync.store.base import utcnow
from calsync.store.models import SyncRun
from calsync.sync.context import Hooks

from .conftest import Harness, at


async def test_taking_over_a_dead_workers_lock_closes_its_run_first(h: Harness) -> None:
    await h.ginsert("Dentist", at(2, 9))
    async with h.db.session() as s:
        dead = await runs.start(s, h.tenant_id, h.binding_id, trigger="poll", full_sync=False)
        assert await bindings.try_lock(s, h.binding_id, "dead-worker", timedelta(seconds=-1))
        await s.commit()
    seen: dict[str, Any] = {}

    async def during(_ctx: Any) -> None:  # the new run is in progress
        async with h.db.session() as s:
            seen["dead"] = await s.get(SyncRun, dead.id)

    result = await h.sync(hooks=Hooks(after_pull=during))
    assert result.ok, result
    closed = seen["dead"]
    assert closed.outcome == "abandoned" and closed.error_code == "calsync.run_abandoned"
    assert closed.finished_at is not None and closed.finished_at <= utcnow()
