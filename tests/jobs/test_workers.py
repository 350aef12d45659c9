"""`calsync worker` processes (both runners) sharing one database: many bindings split between
two workers, a worker killed mid-sync, a worker stopped mid-sync."""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from calsync.jobs.procrastinate_runner import apply_schema
from calsync.store.db import Database
from calsync.store.models import Activity, EventLink
from calsync.store.statuses import BindingStage
from tests.sync.conftest import Harness, at

from .conftest import (
    Workers,
    add_bindings,
    assert_never_concurrent,
    runs_of,
    wait_until,
    worker_env,
)


async def prepare(kind: str, db_url: str) -> None:
    if kind == "procrastinate":
        await apply_schema(db_url)


async def count(db: Database, model: Any, **where: Any) -> int:
    async with db.session() as s:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(await s.scalar(query) or 0)


BINDINGS = 120  # enough that both workers contend for most of the run


async def test_two_workers_sync_every_binding_once_at_a_time(
    h: Harness, db: Database, db_url: str, secret: str, kind: str, workers: Workers
) -> None:
    await prepare(kind, db_url)
    async with db.session() as s:  # the primary calendar stays out of this test
        from calsync.store import bindings

        await bindings.set_stage(s, h.binding_id, BindingStage.DISABLED, "not in this test")
        await s.commit()
    ids = await add_bindings(h, BINDINGS)
    env = worker_env(h, db_url, secret, kind)
    first, second = workers.start(env), workers.start(env)

    async def all_synced() -> bool:
        runs = await runs_of(db, ids)
        return len({r.binding_id for r in runs if r.outcome == "ok"}) == len(ids)

    await wait_until(all_synced, within=120)
    assert workers.terminate(first) == 0 and workers.terminate(second) == 0
    runs = await runs_of(db, ids)
    assert_never_concurrent(runs)
    # one per calendar, no duplicates
    assert await count(db, Activity, tenant_id=h.tenant_id) == BINDINGS


async def test_killed_worker_is_finished_by_another(
    h: Harness, db: Database, db_url: str, secret: str, kind: str, workers: Workers
) -> None:
    await prepare(kind, db_url)
    for i in range(12):
        await h.activity(f"Meeting {i}", at(3 + i // 6, 8 + i % 6))
    h.emu.control("POST", "/latency", {"ms": 150})
    env = worker_env(h, db_url, secret, kind, google_batch_size=1)  # a slow push: 12 batches
    doomed = workers.start(env)

    async def pushing() -> bool:
        async with db.session() as s:
            pending = await s.scalar(
                select(func.count())
                .select_from(EventLink)
                .where(EventLink.binding_id == h.binding_id)
            )
        return bool(pending)

    await wait_until(pushing, within=60, every=0.02)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    h.emu.control("POST", "/latency", {"ms": 0})
    workers.start(env)

    async def finished() -> bool:
        runs = await runs_of(db, [h.binding_id])
        return any(r.outcome == "ok" for r in runs)

    await wait_until(finished, within=60)
    runs = await runs_of(db, [h.binding_id])
    assert "abandoned" in [r.outcome for r in runs]  # the killed worker's run, closed
    assert_never_concurrent([r for r in runs if r.outcome != "abandoned"])
    summaries = Counter(e.summary for e in await h.events())
    assert summaries == Counter(f"Meeting {i}" for i in range(12))  # nothing twice
    assert await count(db, EventLink, binding_id=h.binding_id, state="linked") == 12


async def test_sigterm_lets_the_sync_in_flight_finish(
    h: Harness, db: Database, db_url: str, secret: str, kind: str, workers: Workers
) -> None:
    await prepare(kind, db_url)
    for i in range(6):
        await h.activity(f"Call {i}", at(4, 8 + i))
    h.emu.control("POST", "/latency", {"ms": 150})
    proc = workers.start(worker_env(h, db_url, secret, kind, google_batch_size=1))

    async def running() -> bool:
        return any(r.outcome == "running" for r in await runs_of(db, [h.binding_id]))

    await wait_until(running, within=60, every=0.02)
    assert workers.terminate(proc) == 0
    runs = await runs_of(db, [h.binding_id])
    assert [r.outcome for r in runs] == ["ok"]
    assert len(await h.events()) == 6
