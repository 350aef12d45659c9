"""The scale-out runner: jobs in PostgreSQL through procrastinate, run by `calsync worker`s.

- one task, `calsync.sync_binding`, deferred with `lock=<binding id>` (procrastinate never runs
  two jobs with one lock at once) and a `queueing_lock` per binding and lane, so a burst of
  notifications coalesces into the one job waiting (`AlreadyEnqueued` is the coalescing, not an
  error) and a request arriving while the job runs waits as exactly one follow-up;
- lanes: MANUAL has its own lane at a higher priority (it jumps the queue even when an ordinary
  job is waiting), the pushes of CRM changes one below Google's notifications (a busy CRM's
  writes never hold back a change made in Google) — with them the echoes of calsync's own
  writes (Reason.ECHO), which join a push already waiting —, polls below those (a poll pass
  never delays a webhook), delayed requests have their own at a lower one (a job waiting for
  its time never holds back a due one: procrastinate lets a lower-priority job of a lock wait);
- a notification's wait of up to 0.3 s for its twin's message (web/webhooks.py) is held in the
  process that received it, as the CRM changes' debounce is: one request per binding and wait,
  its twin's joins it and ends the wait, and the job is then deferred due now, so LISTEN/NOTIFY
  wakes a worker at once (a job deferred for later is found only by the workers' fetch poll,
  so the poll had to run 4 times a second). Nothing is lost if the process dies meanwhile:
  the webhook answered Google only after `sync_owed_at` was stored, and jobs/recovery.py
  syncs what is owed; a process that stops defers what it holds at once;
- periodic tasks (once per cluster per tick): polling, release of stalled jobs and of binding
  locks a dead worker left, and anything registered (channel renewal);
- failures: a run that raises is deferred again with exponential delay (our own retry, so a
  retry never collides with the follow-up's queueing lock); a run the engine backs off is
  picked up by polling at the binding's `next_sync_at`;
- the web processes only defer (`start()` opens the connector); `run_worker()` runs jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from procrastinate import App, PsycopgConnector
from procrastinate import exceptions as pexc
from procrastinate.jobs import Status

from calsync.store import liveness, schedule
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.sync.errors import Outcome
from calsync.sync.owner import holder_dead
from calsync.sync.tokens import GoogleAccess

from . import polling
from .budget import Budget
from .execute import Executor, busy
from .port import HELD, Periodic, Reason, holds
from .postgres_url import conninfo

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SYNC_TASK = "calsync.sync_binding"
QUEUE = "calsync"
#: a notification's wait for its twin's message (port.HELD) is held in this process (the
#: module's docstring)
_Held = tuple[uuid.UUID, bool]  # binding, full
PRIORITY = {"manual": 10, "now": 0, "change": -2, "poll": -5, "later": -10}
MAX_RETRY_SECONDS = 300.0
# how often an idle worker looks for a job that has come due (retries, a busy binding's
# follow-up); what is due now wakes a worker through LISTEN/NOTIFY
FETCH_POLL_SECONDS = 1.0


def connector(database_url: str) -> PsycopgConnector:
    """procrastinate's connector, its pool checking only connections that sat idle (a check
    on every checkout is a round trip before each of its queries: store/liveness.py), its
    connections in autocommit (`_autocommit`)."""
    return PsycopgConnector(
        conninfo=conninfo(database_url),
        pool_factory=liveness.psycopg_pool,
        configure=_autocommit,
    )


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    """Every query procrastinate sends through its pool is one statement (a call of one of its
    functions: defer, fetch, finish, retry; its schema is one script, which PostgreSQL runs
    as one implicit transaction). psycopg's default wraps each in a BEGIN and a COMMIT of
    their own, two more round trips around every one; in autocommit the statement is its own
    transaction, with the same effect. (procrastinate opens its LISTEN connection in
    autocommit itself.)"""
    await conn.set_autocommit(True)


def cron_for(seconds: float) -> str:
    """A cron line (procrastinate's croniter takes a sixth field for seconds) for roughly
    every `seconds`: sub-minute steps divide a minute, longer ones a whole minute/hour/day."""
    s = max(1, round(seconds))
    if s < 60:
        step = next(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d >= s)
        return f"* * * * * */{step}"
    m = max(1, round(s / 60))
    if m < 60:
        step = next(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d >= m)
        return f"*/{step} * * * *"
    h = max(1, round(m / 60))
    if h < 24:
        step = next(d for d in (1, 2, 3, 4, 6, 8, 12) if d >= h)
        return f"0 */{step} * * *"
    return "0 0 * * *"


async def apply_schema(database_url: str) -> bool:
    """Create procrastinate's tables unless they exist (its own schema SQL, through its own
    SchemaManager). True if it was applied now."""
    app = App(connector=connector(database_url))
    async with app.open_async():
        row = await app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"
        )
        if row["present"]:
            return False
        await app.schema_manager.apply_schema_async()
    return True


class ProcrastinateQueue:
    """`JobQueue` over procrastinate."""

    def __init__(
        self,
        database_url: str,
        db: Database,
        google: GoogleAccess,
        *,
        concurrency: int = 4,
        lock_ttl: timedelta = timedelta(seconds=20),
        lock_heartbeat: float = 5.0,
        grace: float = 30.0,
        busy_retry: float = 5.0,
        poll_policy: polling.PollPolicy | None = None,
        poll_every: float | None = 10.0,
        stuck_every: float | None = 30.0,
        heartbeat: float = 10.0,
        stalled_after: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
        budget: Budget | None = None,
        rewatch: Callable[[uuid.UUID], Awaitable[object]] | None = None,
    ) -> None:
        self.db = db
        self.concurrency = max(1, concurrency)
        self.grace = grace
        self.busy_retry = busy_retry
        self.heartbeat = heartbeat
        self.stalled_after = stalled_after
        self.clock = clock
        self.poll_policy = poll_policy or polling.PollPolicy(
            claim_hold=max(lock_ttl, timedelta(seconds=60))
        )
        self.budget = budget
        self.executor = Executor(
            db,
            google,
            lock_ttl=lock_ttl,
            heartbeat=lock_heartbeat,
            clock=clock,
            budget=budget,
            rewatch=rewatch,
        )
        self.app = App(connector=connector(database_url))
        self._opened = False
        self._worker: asyncio.Task[None] | None = None
        self._depth = 0
        self._depth_task: asyncio.Task[None] | None = None
        self._on_start: list[Periodic] = []
        #: notifications waiting for their twin's message here: (binding, full) → the wait and
        #: the reason the job will have
        self._held: dict[_Held, tuple[asyncio.Task[None], Reason]] = {}
        self._sync = self.app.task(name=SYNC_TASK, queue=QUEUE, pass_context=False)(self._sync_job)
        if poll_every:
            self.register_periodic("poll", poll_every, self.poll_once)
        if stuck_every:
            self.register_periodic("release_stuck", stuck_every, self.release_stuck)

    # -- the port -----------------------------------------------------------------------------

    async def enqueue_sync(
        self, binding_id: uuid.UUID, reason: Reason, *, full: bool = False, delay: float = 0.0
    ) -> None:
        if holds(reason, delay):
            self._hold((binding_id, full), reason, delay)
            return
        await self._open()
        if reason is Reason.MANUAL:
            lane = "manual"
        elif delay > 0 and reason not in HELD:
            lane = "later"  # (a notification's short wait for its twin's keeps its lane)
        elif reason is Reason.POLL:
            lane = "poll"  # behind webhooks and CRM changes someone is waiting to see
        elif reason in (Reason.CHANGE, Reason.ECHO):
            # behind Google's notifications (issue 16); the echo of a push joins a push waiting
            # for the binding (the notification is owed, so that run reads Google first)
            lane = "change"
        else:
            lane = "now"
        key = f"{binding_id}:{lane}" + (":full" if full else "")
        options: dict[str, Any] = {
            "lock": str(binding_id),
            "queueing_lock": key,
            "priority": PRIORITY[lane],
        }
        if delay > 0:
            options["schedule_at"] = utcnow() + timedelta(seconds=delay)
        try:
            await self._sync.configure(**options).defer_async(
                binding_id=str(binding_id), reason=reason.value, full=full, attempt=0
            )
        except pexc.AlreadyEnqueued:
            pass  # coalesced into the job already waiting for this binding

    def register_periodic(self, name: str, interval: float, work: Periodic) -> None:
        task_name = f"calsync.periodic.{name}"

        async def run(timestamp: int) -> None:
            await work()

        task = self.app.task(name=task_name, queue=QUEUE, pass_context=False)(run)
        self.app.periodic(cron=cron_for(interval), periodic_id=name)(task)

    async def start(self) -> None:
        """Open the connection pool (web processes: defer jobs, run none)."""
        await self._open()
        if self._depth_task is None:
            self._depth_task = asyncio.create_task(self._watch_depth())

    async def stop(self) -> None:
        await self._release_held()
        if self._worker is not None:
            self._worker.cancel()  # procrastinate stops gracefully: waits `grace`, then aborts
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self.budget is not None:
            with contextlib.suppress(Exception):
                await self.budget.flush()
        if self._depth_task is not None:
            self._depth_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._depth_task
            self._depth_task = None
        if self._opened:
            await self.app.close_async()
            self._opened = False

    def healthy(self) -> bool:
        if not self._opened:
            return False
        return self._worker is None or not self._worker.done()

    def queue_depth(self) -> int:
        return self._depth

    # -- the worker ---------------------------------------------------------------------------

    def on_worker_start(self, work: Periodic) -> None:
        """Run `work` when this process starts its worker (after dead workers' jobs and locks
        are released): the recovery of what a dead process owed."""
        self._on_start.append(work)

    async def start_worker(self) -> None:
        """Run jobs in the background of this event loop (`calsync worker`, tests); first
        release what dead workers held and enqueue what they owed."""
        await self.start()
        if self._worker is None:
            for work in [self.release_stuck, *self._on_start]:
                try:
                    await work()
                except Exception:
                    log.exception("start-up recovery failed")
            self._worker = asyncio.create_task(self.run_worker(), name="calsync-worker")

    async def run_worker(self) -> None:
        await self._open()
        await self.app.run_worker_async(
            queues=[QUEUE],
            concurrency=self.concurrency,
            wait=True,
            install_signal_handlers=False,
            shutdown_graceful_timeout=self.grace,
            update_heartbeat_interval=self.heartbeat,
            stalled_worker_timeout=self.stalled_after,
            # LISTEN/NOTIFY wakes a worker when a job is deferred due now; one deferred for
            # later (a retry) is found by this poll. A notification's wait for its twin's is
            # held in the receiving process (`_hold`), so its job is due when deferred
            fetch_job_polling_interval=FETCH_POLL_SECONDS,
            delete_jobs="successful",
        )

    async def poll_once(self) -> None:
        """Enqueue the bindings due for a poll, as many as the request budget allows."""
        for binding_id in await polling.missed_echoes(  # a channel silent after our write
            self.db,
            self.poll_policy,
            self.clock(),
            rewatch=self.executor.rewatch,
            budget=self.budget,
        ):
            await self.enqueue_sync(binding_id, Reason.RETRY)
        limit = await polling.allowance(self.budget)
        for binding_id in await polling.due_bindings(
            self.db, self.poll_policy, self.clock(), limit=limit
        ):
            await self.enqueue_sync(binding_id, Reason.POLL)

    async def release_stuck(self) -> None:
        """Jobs of workers that stopped heartbeating, or whose binding is locked by a process
        of this machine known dead, are failed and deferred again; binding locks that ran out
        (or whose holder is known dead) are released and their bindings synced."""
        stalled = list(
            await self.app.job_manager.get_stalled_jobs(
                task_name=SYNC_TASK, seconds_since_heartbeat=self.stalled_after
            )
        )
        seen = {job.id for job in stalled}
        for job in await self._jobs_of_dead_holders():
            if job.id not in seen:
                stalled.append(job)
        for job in stalled:
            with contextlib.suppress(Exception):
                await self.app.job_manager.finish_job(
                    job=job, status=Status.FAILED, delete_job=False
                )
            raw = job.task_kwargs.get("binding_id")
            if isinstance(raw, str):
                await self.enqueue_sync(uuid.UUID(raw), Reason.RETRY)
        for binding_id in await self.executor.release_stuck():
            await self.enqueue_sync(binding_id, Reason.RETRY)

    # -- internals ----------------------------------------------------------------------------

    def _hold(self, key: _Held, reason: Reason, delay: float) -> None:
        """Defer the binding's sync `delay` seconds from now, due at once then. A second
        message for it while it waits (the twin's, whatever reason it was given: a twin's
        message can make the other twin owe an echo) joins it and ends the wait: the job is
        deferred now, a WEBHOOK if either was one (its lane is ahead of the echoes')."""
        waiting = self._held.get(key)
        if waiting is not None:
            task, first = waiting
            task.cancel()  # its `_after` ends in its sleep: the key is the new task's
            reason = Reason.WEBHOOK if Reason.WEBHOOK in (first, reason) else reason
            delay = 0.0
        self._held[key] = (asyncio.create_task(self._after(key, delay)), reason)

    async def _after(self, key: _Held, delay: float) -> None:
        await asyncio.sleep(delay)
        # a message from now on waits anew (and joins the job while it is queued)
        held = self._held.pop(key, None)
        if held is not None:  # (None: stopping took it, and defers it)
            await self._defer_held(key, held[1])

    async def _defer_held(self, key: _Held, reason: Reason) -> None:
        binding_id, full = key
        try:
            await self.enqueue_sync(binding_id, reason, full=full)
        except Exception:  # the notification stays owed (sync_owed_at): recovery syncs it
            log.exception("could not queue the sync a notification asked for")

    async def _release_held(self) -> None:
        """Stopping: what waits for its twin is deferred now, not left to recovery."""
        held, self._held = self._held, {}
        for key, (task, reason) in held.items():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._defer_held(key, reason)

    async def _jobs_of_dead_holders(self) -> list[Any]:
        """Running sync jobs whose binding's lock holder is a dead process of this machine
        (killed mid-sync): procrastinate's `lock` would hold back every later job of the
        binding until the dead worker's heartbeat counts as stalled."""
        doing = await self.app.job_manager.get_stalled_jobs(
            task_name=SYNC_TASK, seconds_since_heartbeat=0
        )
        found: list[Any] = []
        for job in doing:
            raw = job.task_kwargs.get("binding_id")
            if not isinstance(raw, str):
                continue
            async with self.db.session() as s:
                holder = await schedule.lock_holder(s, uuid.UUID(raw))
                await s.commit()
            if holder_dead(holder):
                found.append(job)
        return found

    async def _open(self) -> None:
        if not self._opened:
            await self.app.open_async()
            self._opened = True

    async def _watch_depth(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                row = await self.app.connector.execute_query_one_async(
                    "SELECT count(*) AS n FROM procrastinate_jobs "
                    "WHERE status = 'todo' AND task_name = %(task)s",
                    task=SYNC_TASK,
                )
                self._depth = int(row["n"])
            await asyncio.sleep(5.0)

    async def _sync_job(self, binding_id: str, reason: str, full: bool, attempt: int = 0) -> str:
        target = uuid.UUID(binding_id)
        why = Reason(reason)
        wait = await self.budget.wait_for(why) if self.budget is not None else 0.0
        if wait > 0:  # the request budget is spent: a poll stays due, the rest waits
            if why is not Reason.POLL:
                await self._again(target, why, full, wait, attempt)
            return "postponed"
        try:
            result = await self.executor.run(target, why, full)
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = min(MAX_RETRY_SECONDS, 2.0 ** (attempt + 1))
            log.exception("sync of binding %s failed; retrying in %.0f s", binding_id, delay)
            await self._again(target, Reason.RETRY, full, delay, attempt + 1)
            return "error"
        if busy(result) and why is not Reason.POLL:
            await self._again(target, why, full, self.busy_retry, attempt)
        return result.outcome.value if result.outcome is not Outcome.OK else "ok"

    async def _again(
        self, binding_id: uuid.UUID, reason: Reason, full: bool, delay: float, attempt: int
    ) -> None:
        key = f"{binding_id}:later" + (":full" if full else "")
        try:
            await self._sync.configure(
                lock=str(binding_id),
                queueing_lock=key,
                priority=PRIORITY["later"],
                schedule_at=utcnow() + timedelta(seconds=delay),
            ).defer_async(
                binding_id=str(binding_id), reason=reason.value, full=full, attempt=attempt
            )
        except pexc.AlreadyEnqueued:
            pass
