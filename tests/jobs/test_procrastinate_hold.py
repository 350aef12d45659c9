"""The procrastinate runner holds a notification's wait for its twin's message in the process
that received it (jobs/procrastinate_runner.py): no job waits in the queue for its time — one
is deferred, due at once, when the wait ends (LISTEN/NOTIFY wakes a worker then; a job
deferred for later would be found only by the workers' once-a-second fetch poll) — the twin's
message joins it, and a process that stops during the wait defers it then. PostgreSQL only:
these tests exist when CALSYNC_TEST_POSTGRES_URL is set, as in CI."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from calsync.jobs.port import HOLD_SECONDS, Reason
from calsync.jobs.procrastinate_runner import PRIORITY, SYNC_TASK, conninfo
from calsync.web.webhooks import TWIN_COALESCE_SECONDS
from tests.sync.conftest import Harness

from .conftest import PG

ONLY_PROCRASTINATE = pytest.mark.parametrize(
    "combo", [("postgres", "procrastinate")], indirect=True
)


async def sync_jobs(db_url: str, binding_id: Any) -> list[dict[str, Any]]:
    """The binding's sync jobs, as another process would see them."""
    async with await psycopg.AsyncConnection.connect(conninfo(db_url)) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT status, scheduled_at, args FROM procrastinate_jobs "
            "WHERE task_name = %s AND args->>'binding_id' = %s",
            (SYNC_TASK, str(binding_id)),
        )
        return list(await cur.fetchall())


if PG:

    @ONLY_PROCRASTINATE
    @pytest.mark.parametrize("reason", [Reason.WEBHOOK, Reason.ECHO])
    async def test_a_notifications_wait_for_its_twin_is_held_here_then_deferred_due(
        h: Harness, db_url: str, make_runner: Any, reason: Reason
    ) -> None:
        runner = await make_runner()
        await runner.start()  # a web process: defers, runs nothing
        await runner.enqueue_sync(h.binding_id, reason, delay=TWIN_COALESCE_SECONDS)
        await asyncio.sleep(TWIN_COALESCE_SECONDS / 3)
        assert await sync_jobs(db_url, h.binding_id) == []  # waiting for its twin, here
        await asyncio.sleep(TWIN_COALESCE_SECONDS + 0.3)
        (job,) = await sync_jobs(db_url, h.binding_id)  # no twin came: deferred at the end
        assert job["status"] == "todo" and job["args"]["reason"] == reason.value
        assert job["scheduled_at"] is None  # due now: a worker is woken, none polls for it

    @ONLY_PROCRASTINATE
    @pytest.mark.parametrize(
        ("first", "second", "job"),
        [
            (Reason.WEBHOOK, Reason.WEBHOOK, Reason.WEBHOOK),
            (Reason.ECHO, Reason.ECHO, Reason.ECHO),
            # one twin's message can make the other owe an echo (store.channels), so a
            # change's two messages may come as WEBHOOK and ECHO: their one job is a
            # WEBHOOK's, in the lane ahead of the echoes'
            (Reason.WEBHOOK, Reason.ECHO, Reason.WEBHOOK),
            (Reason.ECHO, Reason.WEBHOOK, Reason.WEBHOOK),
        ],
    )
    async def test_the_twins_message_ends_the_wait_and_joins_the_first(
        h: Harness, db_url: str, make_runner: Any, first: Reason, second: Reason, job: Reason
    ) -> None:
        runner = await make_runner()
        await runner.start()
        await runner.enqueue_sync(h.binding_id, first, delay=HOLD_SECONDS)
        await asyncio.sleep(0.1)
        assert await sync_jobs(db_url, h.binding_id) == []
        await runner.enqueue_sync(h.binding_id, second, delay=HOLD_SECONDS)  # the twin's
        await asyncio.sleep(0.2)
        (queued,) = await sync_jobs(db_url, h.binding_id)  # deferred now, one for both
        assert queued["status"] == "todo" and queued["args"]["reason"] == job.value
        assert queued["scheduled_at"] is None
        await asyncio.sleep(HOLD_SECONDS + 0.3)
        assert len(await sync_jobs(db_url, h.binding_id)) == 1  # nothing more came of it

    @ONLY_PROCRASTINATE
    async def test_a_process_that_stops_during_the_wait_defers_what_it_held(
        h: Harness, db_url: str, make_runner: Any
    ) -> None:
        runner = await make_runner()
        await runner.start()
        await runner.enqueue_sync(h.binding_id, Reason.WEBHOOK, delay=TWIN_COALESCE_SECONDS)
        await runner.stop()
        (job,) = await sync_jobs(db_url, h.binding_id)
        assert job["status"] == "todo" and job["scheduled_at"] is None
        await asyncio.sleep(TWIN_COALESCE_SECONDS + 0.3)
        assert len(await sync_jobs(db_url, h.binding_id)) == 1  # and nothing more came of it

    @ONLY_PROCRASTINATE
    async def test_an_echo_joins_a_waiting_push_and_queues_behind_google_news(
        h: Harness, db_url: str, make_runner: Any
    ) -> None:
        """Google's notification of calsync's own write (Reason.ECHO) takes the pushes' lane:
        it joins a push of the binding already waiting (whose run reads Google first), and
        alone it waits at the pushes' priority, behind a change made in Google."""
        runner = await make_runner()
        await runner.start()  # a web process: defers, runs nothing
        await runner.enqueue_sync(h.binding_id, Reason.CHANGE)
        await runner.enqueue_sync(h.binding_id, Reason.ECHO)
        (job,) = await sync_jobs(db_url, h.binding_id)
        assert job["args"]["reason"] == Reason.CHANGE.value

        async with await psycopg.AsyncConnection.connect(conninfo(db_url)) as conn:
            await conn.execute(
                "DELETE FROM procrastinate_jobs WHERE args->>'binding_id' = %s",
                (str(h.binding_id),),
            )
            await conn.commit()
        await runner.enqueue_sync(h.binding_id, Reason.ECHO)
        await runner.enqueue_sync(h.binding_id, Reason.WEBHOOK)  # its own lane: a second job
        async with await psycopg.AsyncConnection.connect(conninfo(db_url)) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT args->>'reason' AS reason, priority FROM procrastinate_jobs "
                "WHERE args->>'binding_id' = %s ORDER BY priority DESC",
                (str(h.binding_id),),
            )
            rows = [(r["reason"], r["priority"]) for r in await cur.fetchall()]
        assert rows == [("webhook", PRIORITY["now"]), ("echo", PRIORITY["change"])]
        await runner.stop()
