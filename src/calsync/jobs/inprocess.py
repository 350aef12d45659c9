"""The embedded runner: syncs run as asyncio tasks in this process.

- bounded concurrency (`jobs_concurrency`, default 4);
- one sync per binding at a time: in this process by bookkeeping, across processes sharing the
  database by the engine's lock (a request that finds the binding busy elsewhere tries again
  after `busy_retry_seconds`);
- coalescing: a request for a queued binding merges into it (`full` upgrades it, the earlier
  due time wins); one arriving while the binding runs becomes exactly one follow-up run;
- MANUAL ("Sync now") goes ahead of every other ready request, Google's notifications ahead
  of the pushes of CRM changes, and safety-net polls never
  take the last free slots (`reserved` of them stay for webhooks, CRM changes and Sync now),
  so a poll pass that queues every binding (a restart, an outage) cannot make a change wait
  for a poll to finish;
- periodic ticks: polling of due bindings, release of bindings a dead worker left locked, and
  whatever else is registered (channel renewal);
- `stop()`: in-flight syncs get `grace` seconds to finish, then are cancelled and handed back;
  queued requests are handed back to the database (due now) for whichever process polls next.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from calsync.store import schedule
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.sync.engine import RunResult
from calsync.sync.tokens import GoogleAccess

from . import polling
from .budget import Budget
from .execute import Executor, busy
from .port import Periodic, Reason, holds

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 300.0

# Who runs first when syncs queue up: a person who pressed Sync now, then Google's changes
# (webhooks, retries, first syncs), then the pushes of CRM edits, and the safety-net polls last,
# so a first poll pass that queues every binding never delays a webhook, and a busy CRM's
# pushes never make a change made in Google wait behind them (issue 16). Google's notification
# of a push's own write (Reason.ECHO, web/webhooks.py) ranks with the pushes, and joins a push
# of its binding already waiting. A push is at most a few seconds behind: its debounce already
# waits a second.
RANK = {Reason.MANUAL: 0, Reason.CHANGE: 2, Reason.ECHO: 2, Reason.POLL: 3}


def reserved_slots(concurrency: int) -> int:
    """Slots polls may not take: a quarter of them, at least one, none with a single slot
    (then polls would never run)."""
    return 0 if concurrency < 2 else max(1, concurrency // 4)


@dataclass
class _Pending:
    reason: Reason
    full: bool
    due: float  # monotonic
    version: int = 0
    rank: int = 1
    failures: int = 0
    held: bool = False  # a notification waiting for its twin's message (port.HELD)


@dataclass
class _Tick:
    name: str
    interval: float
    work: Periodic
    task: asyncio.Task[None] | None = None


@dataclass
class Stats:
    """What the runner did (tests and /metrics)."""

    started: int = 0
    finished: int = 0
    coalesced: int = 0
    busy_retries: int = 0
    errors: int = 0
    postponed: int = 0  # taken from the queue, then held back by the request budget
    by_outcome: dict[str, int] = field(default_factory=dict)


class InProcessRunner:
    """`JobQueue` on this process's event loop."""

    def __init__(
        self,
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
        clock: Callable[[], datetime] = utcnow,
        budget: Budget | None = None,
        rewatch: Callable[[uuid.UUID], Awaitable[object]] | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.db = db
        self.concurrency = max(1, concurrency)
        self.reserved = reserved_slots(self.concurrency)
        self.grace = grace
        self.busy_retry = busy_retry
        self.poll_policy = poll_policy or polling.PollPolicy(
            claim_hold=max(lock_ttl, timedelta(seconds=60))
        )
        self.clock = clock
        self.budget = budget
        self.executor = executor or Executor(
            db,
            google,
            lock_ttl=lock_ttl,
            heartbeat=lock_heartbeat,
            clock=clock,
            budget=budget,
            rewatch=rewatch,
        )
        self.stats = Stats()
        self._pending: dict[uuid.UUID, _Pending] = {}
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._polling: set[uuid.UUID] = set()  # running bindings whose run is a poll
        self._waiting: list[tuple[float, int, uuid.UUID, int]] = []  # delayed: (due, seq, id, v)
        self._ready: list[tuple[int, int, uuid.UUID, int]] = []  # (rank, seq, id, version)
        self._seq = itertools.count()
        self._versions = itertools.count(1)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._ticks: dict[str, _Tick] = {}
        if poll_every:
            self.register_periodic("poll", poll_every, self.poll_once)
        if stuck_every:
            self.register_periodic("release_stuck", stuck_every, self.release_stuck)

    # -- the port -----------------------------------------------------------------------------

    async def enqueue_sync(
        self, binding_id: uuid.UUID, reason: Reason, *, full: bool = False, delay: float = 0.0
    ) -> None:
        self._request(binding_id, reason, full, delay)

    def _request(
        self, binding_id: uuid.UUID, reason: Reason, full: bool, delay: float, failures: int = 0
    ) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        due = now + max(0.0, delay)
        rank = RANK.get(reason, 1)
        held = holds(reason, delay)
        pending = self._pending.get(binding_id)
        if pending is not None:
            self.stats.coalesced += 1
            if held and pending.held and pending.due > now:
                due = now  # the twin's message is in: the wait is over (port.HELD)
                pending.held = False
            changed = rank < pending.rank or due < pending.due
            pending.full = pending.full or full
            pending.failures = max(pending.failures, failures)
            if rank < pending.rank:  # e.g. a webhook for a binding queued for a poll
                pending.rank, pending.reason = rank, reason
            pending.due = min(pending.due, due)
            if not changed:
                return
        else:
            pending = _Pending(reason, full, due, rank=rank, failures=failures, held=held)
            self._pending[binding_id] = pending
        pending.version = next(self._versions)
        self._schedule(binding_id, pending)
        self._idle.clear()
        self._wake.set()

    def _schedule(self, binding_id: uuid.UUID, pending: _Pending) -> None:
        if pending.due > time.monotonic():
            heapq.heappush(
                self._waiting, (pending.due, next(self._seq), binding_id, pending.version)
            )
        else:
            rank = pending.rank
            heapq.heappush(self._ready, (rank, next(self._seq), binding_id, pending.version))

    def periodic_names(self) -> list[str]:
        """The periodic work registered (tests, diagnostics)."""
        return sorted(self._ticks)

    def register_periodic(self, name: str, interval: float, work: Periodic) -> None:
        tick = _Tick(name, interval, work)
        old = self._ticks.get(name)
        if old is not None and old.task is not None:
            old.task.cancel()
        self._ticks[name] = tick
        if self._dispatcher is not None and not self._stopping:
            tick.task = asyncio.create_task(self._tick_loop(tick), name=f"calsync-tick-{name}")

    async def start(self) -> None:
        if self._dispatcher is not None:
            return
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch(), name="calsync-dispatcher")
        for tick in self._ticks.values():
            tick.task = asyncio.create_task(self._tick_loop(tick), name=f"calsync-tick-{tick.name}")

    async def stop(self) -> None:
        """Stop taking work; in-flight syncs get `grace` seconds, then are handed back."""
        self._stopping = True
        self._wake.set()
        ticks = [t.task for t in self._ticks.values() if t.task is not None]
        for task in ticks:
            task.cancel()
        await asyncio.gather(*ticks, return_exceptions=True)
        for tick in self._ticks.values():
            tick.task = None
        if self._dispatcher is not None:
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None
        running = list(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=self.grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("cancelled %d syncs still running after the grace period", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        if self.budget is not None:
            with contextlib.suppress(Exception):
                await self.budget.flush()
        leftover = [b for b, p in self._pending.items() if p.reason is not Reason.POLL]
        self._pending.clear()
        self._waiting.clear()
        self._ready.clear()
        if leftover:
            with contextlib.suppress(Exception):
                async with self.db.session() as s:
                    await schedule.hand_back(s, leftover, self.clock())
                    await s.commit()
        self._idle.set()

    def healthy(self) -> bool:
        return self._dispatcher is not None and not self._dispatcher.done()

    def queue_depth(self) -> int:
        return len(self._pending)

    # -- extras -------------------------------------------------------------------------------

    def running(self) -> set[uuid.UUID]:
        return set(self._running)

    async def drain(self) -> None:
        """Run until nothing is queued or running (tests; Sync now in tests without a
        lifespan). Starts the dispatcher if nobody has."""
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="calsync-dispatcher")
        await self._idle.wait()

    async def poll_once(self) -> None:
        """Enqueue the bindings due for a poll (claimed, so other pollers skip them), as many
        as the request budget allows: the rest stay due (postponed)."""
        for binding_id in await polling.missed_echoes(  # a channel silent after our write
            self.db,
            self.poll_policy,
            self.clock(),
            rewatch=self.executor.rewatch,
            budget=self.budget,
        ):
            self._request(binding_id, Reason.RETRY, False, 0.0)
        limit = await polling.allowance(self.budget)
        for binding_id in await polling.due_bindings(
            self.db, self.poll_policy, self.clock(), limit=limit
        ):
            self._request(binding_id, Reason.POLL, False, 0.0)

    async def release_stuck(self) -> None:
        for binding_id in await self.executor.release_stuck():
            self._request(binding_id, Reason.RETRY, False, 0.0)

    # -- internals ----------------------------------------------------------------------------

    async def _tick_loop(self, tick: _Tick) -> None:
        while True:
            try:
                await tick.work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic job %s failed", tick.name)
            await asyncio.sleep(tick.interval)

    def _promote(self) -> float | None:
        """Move due delayed requests to the ready heap; seconds until the next one is due."""
        now = time.monotonic()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, binding_id, version = heapq.heappop(self._waiting)
            pending = self._pending.get(binding_id)
            if pending is not None and pending.version == version:
                rank = pending.rank
                heapq.heappush(self._ready, (rank, next(self._seq), binding_id, version))
        return self._waiting[0][0] - now if self._waiting else None

    def _next_ready(self) -> tuple[uuid.UUID, _Pending] | None:
        parked: list[tuple[int, int, uuid.UUID, int]] = []
        found: tuple[uuid.UUID, _Pending] | None = None
        poll_slots = self.concurrency - self.reserved - len(self._polling)
        while self._ready:
            entry = heapq.heappop(self._ready)
            rank, _, binding_id, version = entry
            pending = self._pending.get(binding_id)
            if pending is None or pending.version != version:
                continue  # superseded
            if binding_id in self._running:
                parked.append(entry)  # the follow-up waits for the run in flight
                continue
            if rank == RANK[Reason.POLL] and poll_slots <= 0:
                parked.append(entry)  # the heap is ordered: only polls are left
                break
            found = (binding_id, pending)
            break
        for entry in parked:
            heapq.heappush(self._ready, entry)
        return found

    async def _dispatch(self) -> None:
        while not self._stopping:
            wait_for = self._promote()
            while len(self._running) < self.concurrency:
                item = self._next_ready()
                if item is None:
                    break
                binding_id, pending = item
                del self._pending[binding_id]
                if pending.rank == RANK[Reason.POLL]:
                    self._polling.add(binding_id)
                self._running[binding_id] = asyncio.create_task(
                    self._run(binding_id, pending), name=f"calsync-sync-{binding_id}"
                )
            if not self._pending and not self._running:
                self._idle.set()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait_for)
            except TimeoutError:
                pass

    async def _run(self, binding_id: uuid.UUID, pending: _Pending) -> None:
        self.stats.started += 1
        try:
            if await self._over_budget(binding_id, pending):
                self.stats.postponed += 1
                return
            result = await self.executor.run(binding_id, pending.reason, pending.full)
            self._after(binding_id, pending, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.errors += 1
            failures = pending.failures + 1
            delay = min(MAX_RETRY_SECONDS, 2.0**failures)
            log.exception("sync of binding %s failed; retrying in %.0f s", binding_id, delay)
            self._request(binding_id, Reason.RETRY, pending.full, delay, failures)
        finally:
            self.stats.finished += 1
            self._running.pop(binding_id, None)
            self._polling.discard(binding_id)
            self._wake.set()

    async def _over_budget(self, binding_id: uuid.UUID, pending: _Pending) -> bool:
        """The request budget is spent: a poll is dropped (it stays due and is polled when its
        claim runs out), anything else waits for the next minute. True → not run now."""
        if self.budget is None:
            return False
        wait = await self.budget.wait_for(pending.reason)
        if wait <= 0:
            return False
        if pending.reason is not Reason.POLL:
            self._request(binding_id, pending.reason, pending.full, wait, pending.failures)
        return True

    def _after(self, binding_id: uuid.UUID, pending: _Pending, result: RunResult) -> None:
        key = result.outcome.value
        self.stats.by_outcome[key] = self.stats.by_outcome.get(key, 0) + 1
        if busy(result) and pending.reason is not Reason.POLL:
            # another process holds it: its run may have started before this change
            self.stats.busy_retries += 1
            self._request(binding_id, pending.reason, pending.full, self.busy_retry)
