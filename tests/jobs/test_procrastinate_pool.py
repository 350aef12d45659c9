"""procrastinate's pooled connections are in autocommit (jobs/procrastinate_runner.py,
`connector`): each of its queries — a defer, a worker's fetch, a job's finish — is one statement,
sent without psycopg's BEGIN before it and COMMIT after it (two round trips of three), and a
refused defer (the binding's job already waiting) leaves nothing open. PostgreSQL only: these
tests exist when CALSYNC_TEST_POSTGRES_URL is set, as in CI.

PostgreSQL says whether a statement began its transaction: `transaction_timestamp()` equals
`statement_timestamp()` only during a transaction's first command (its documentation of the
date/time functions), so after a separate BEGIN it is false."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from procrastinate import App

from calsync.jobs.port import Reason
from calsync.jobs.procrastinate_runner import connector
from calsync.store import liveness
from tests.sync.conftest import Harness

from .conftest import PG
from .test_procrastinate_hold import ONLY_PROCRASTINATE, sync_jobs

FIRST = "SELECT transaction_timestamp() = statement_timestamp() AS first"


async def first_of_its_transaction(app: App) -> bool:
    row = await app.connector.execute_query_one_async(FIRST)
    return bool(row["first"])


if PG:

    @ONLY_PROCRASTINATE
    async def test_each_query_is_its_own_transaction(
        db_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app = App(connector=connector(db_url))
        async with app.open_async():
            # several at once: new connections, each set up by the pool
            firsts = await asyncio.gather(*(first_of_its_transaction(app) for _ in range(6)))
            assert all(firsts)
            assert all([await first_of_its_transaction(app) for _ in range(6)])  # reused
            # a connection that sat idle is checked first (store/liveness.py); still autocommit
            monkeypatch.setattr(liveness, "IDLE_SECONDS", 0.0)
            assert all([await first_of_its_transaction(app) for _ in range(3)])

    @ONLY_PROCRASTINATE
    async def test_a_refused_defer_leaves_the_pool_clean_and_the_job_waiting(
        h: Harness, db_url: str, make_runner: Any
    ) -> None:
        """A push deferred while the binding's push waits: procrastinate's queueing lock
        refuses the INSERT (a unique violation, AlreadyEnqueued, coalesced by the runner).
        In autocommit no transaction is left aborted: the next queries and defers go on."""
        runner = await make_runner()
        await runner.start()  # a web process: defers, runs nothing
        for _ in range(3):
            await runner.enqueue_sync(h.binding_id, Reason.CHANGE)
        (job,) = await sync_jobs(db_url, h.binding_id)
        assert job["status"] == "todo" and job["args"]["reason"] == Reason.CHANGE.value
        pool = runner.app.connector.pool
        assert pool.get_stats().get("returns_bad", 0) == 0  # none had to be discarded
        assert all([await first_of_its_transaction(runner.app) for _ in range(4)])
        await runner.enqueue_sync(h.binding_id, Reason.WEBHOOK)  # another lane: a second job
        assert sorted(j["args"]["reason"] for j in await sync_jobs(db_url, h.binding_id)) == [
            Reason.CHANGE.value,
            Reason.WEBHOOK.value,
        ]
