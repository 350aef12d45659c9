"""One sync as both runners run it: the engine call with its lock kept alive, and the release of
locks left behind by workers that died.

The engine's lock (store.bindings.try_lock) expires after `lock_ttl`; a live worker renews it
every `heartbeat` seconds (at most a third of the TTL), so only a dead worker's binding ever
becomes free while "in progress". A holder on this machine known dead (sync.owner) is released
at once, without waiting for its lock to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from calsync.google.calendar import count_requests
from calsync.store import bindings, schedule
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.statuses import Code
from calsync.sync.context import Hooks
from calsync.sync.engine import RunResult, sync_binding, worker_id
from calsync.sync.errors import Failure, Outcome
from calsync.sync.owner import holder_dead
from calsync.sync.tokens import GoogleAccess

from .budget import Budget
from .port import Reason

log = logging.getLogger(__name__)


@dataclass
class Executor:
    """Runs the engine for a runner: same lock TTL, owner prefix and clock for every sync."""

    db: Database
    google: GoogleAccess
    lock_ttl: timedelta = timedelta(seconds=20)
    heartbeat: float = 5.0
    clock: Callable[[], datetime] = utcnow  # polling's clock; locks and runs use real time
    owner_prefix: str = field(default_factory=worker_id)
    #: the shared request budget every run's requests are counted in (None: not counted)
    budget: Budget | None = None
    #: makes a new channel for a binding whose channel a poll caught silent (None: the poll's
    #: evidence is not looked at)
    rewatch: Callable[[uuid.UUID], Awaitable[object]] | None = None
    #: the lease's clock (a process's stall shows as a jump in it; tests move it)
    monotonic: Callable[[], float] = time.monotonic

    async def run(self, binding_id: uuid.UUID, reason: Reason, full: bool) -> RunResult:
        """Sync one binding now; cancelled (shutdown past the grace period) → the lock is
        released by the engine and the open run is closed as abandoned. After a poll that found
        changes no notification announced, the binding's channel is not trusted any more."""
        result = await self._run(binding_id, reason, full)
        if self.budget is not None:
            await self.budget.spend(result.google_requests)
        # the channel as the run found it at its start (read with the binding, under the lock)
        evidence = result.evidence if reason is Reason.POLL and self.rewatch is not None else None
        if evidence is not None and _caught_silent(evidence, result):
            await self._silent(binding_id, evidence)
        return result

    async def _silent(self, binding_id: uuid.UUID, evidence: schedule.ChannelEvidence) -> None:
        """Poll at the tenant's interval until a notification arrives, and re-create the
        channel at once (a new channel is the usual cure; its notification lifts the doubt)."""
        async with self.db.session() as s:
            marked = await schedule.mark_suspect(s, binding_id, evidence, self.clock())
            await s.commit()
        if not marked or self.rewatch is None:
            return
        log.warning(
            "a poll found changes the push channel did not announce; making a new channel",
            extra={
                "binding": str(binding_id),
                "channel": evidence.channel_id or evidence.twin_channel_id,
            },
        )
        with count_requests() as sent:
            try:
                await self.rewatch(binding_id)
            except Exception:
                log.exception("could not re-create a silent push channel")
        if self.budget is not None:
            await self.budget.spend(sent.n)

    async def _run(self, binding_id: uuid.UUID, reason: Reason, full: bool) -> RunResult:
        owner = f"{self.owner_prefix}:{uuid.uuid4().hex[:6]}"
        started = utcnow()
        this = asyncio.current_task()
        assert this is not None
        # taken before the lock is, so the lease is never thought longer than the lock's
        lease = _Lease(self, binding_id, owner, this, since=self.monotonic())
        keeper: asyncio.Task[None] | None = None

        async def keep() -> None:  # the engine holds the lock now
            nonlocal keeper
            keeper = asyncio.create_task(self._keep_lock(lease))

        async def stop_keeping() -> None:  # the engine is about to release it
            if keeper is not None:
                keeper.cancel()
                await asyncio.wait([keeper])  # (a cancellation of this task still propagates)

        # a busy calendar's rate (jobs/polling.py) counts the Google-side changes of every run
        # but a first or full one, stored with the run's end
        counted = reason is not Reason.INITIAL and not full
        try:
            # a dead worker's run of this binding is closed when the engine takes its lock
            return await sync_binding(
                self.db,
                binding_id,
                self.google,
                trigger=reason.value,
                full=full,
                owner=owner,
                lock_ttl=self.lock_ttl,
                hooks=Hooks(
                    after_lock=keep, before_release=stop_keeping, before_google_write=lease.check
                ),
                rate_clock=self.clock if counted else None,
            )
        except asyncio.CancelledError:
            if lease.lost and this.uncancel() == 0:
                # stopped because the lock is another's, not by a shutdown: the binding is the
                # new holder's (it closes this run as abandoned when it takes the lock), so
                # nothing is handed back
                log.error(
                    "lost the lock of a binding during its sync (renewals failed for longer than "
                    "the lock timeout) and stopped the sync; the new holder syncs it",
                    extra={"binding": str(binding_id)},
                )
                return RunResult(Outcome.SKIPPED, error=lock_lost())
            with contextlib.suppress(Exception):
                await asyncio.shield(self._abandon(binding_id, started))
            raise
        finally:
            await stop_keeping()

    async def _keep_lock(self, lease: _Lease) -> None:
        """Renew the lock while the sync runs. Renewals that failed for longer than the TTL
        (a stalled process, a database that did not answer) let another worker take the
        binding: the renewal then finds the lock not ours, and the sync is stopped at once so
        two workers never go on writing one binding's events (a fence; the new holder redoes
        whatever this one left half done, as after a crash). Google writes are fenced by the
        lease's own check (`_Lease.check`), which does not wait for this loop to wake."""
        every = max(0.05, min(self.heartbeat, self.lock_ttl.total_seconds() / 3))
        while True:
            await asyncio.sleep(every)
            try:
                held = await lease.renew()
            except Exception:  # a failed renewal is retried; the TTL leaves room for two
                log.warning("could not renew a binding lock", exc_info=True)
                continue
            if not held:
                lease.lose()
                return

    async def _abandon(self, binding_id: uuid.UUID, since: datetime) -> None:
        async with self.db.session() as s:
            now = utcnow()
            await schedule.abandon_runs(s, binding_id, now, since=since)
            await schedule.hand_back(s, [binding_id], now)
            await s.commit()

    async def release_stuck(self) -> list[uuid.UUID]:
        """Free bindings whose lock holder stopped renewing (it died); returns them so the
        runner syncs them again."""
        now = utcnow()
        async with self.db.session() as s:
            held = await schedule.held_locks(s)
            await s.commit()
        freed: list[uuid.UUID] = []
        for binding_id, owner in held:
            dead = holder_dead(owner)
            async with self.db.session() as s:
                if await schedule.release_expired(s, binding_id, owner, now, dead=dead):
                    freed.append(binding_id)
                await s.commit()
        if freed:
            log.warning("released bindings left in progress by a dead worker: %d", len(freed))
        return freed


@dataclass
class _Lease:
    """How long this run can count on its binding's lock: since its last renewal (by this
    process's monotonic clock, which a stall moves on) plus the lock's TTL."""

    executor: Executor
    binding_id: uuid.UUID
    owner: str
    sync: asyncio.Task[Any]
    since: float
    lost: bool = False

    async def renew(self) -> bool:
        """Extend the lock; False when it is another worker's now."""
        at = self.executor.monotonic()
        async with self.executor.db.session() as s:
            held = await bindings.extend_lock(
                s, self.binding_id, self.owner, self.executor.lock_ttl
            )
            await s.commit()
        if held:
            self.since = max(self.since, at)
        return held

    def lose(self) -> None:
        """Stop the sync: another worker holds the binding."""
        self.lost = True
        self.sync.cancel()

    async def check(self) -> None:
        """Before a request that changes Google. The keeper renews every few seconds, but a
        process that stalled past the lock's TTL wakes with the sync and the keeper both due,
        in no set order: a lease older than half the TTL is renewed here first, and a lock
        found taken stops the sync before the write leaves (no statement while it is fresh)."""
        if self.executor.monotonic() - self.since < self.executor.lock_ttl.total_seconds() / 2:
            return
        if await self.renew():
            return
        self.lose()
        await asyncio.sleep(0)  # the cancellation lands here, in the sync's own task
        raise asyncio.CancelledError  # (only if it ran outside the sync's task)


def _caught_silent(evidence: schedule.ChannelEvidence, result: RunResult) -> bool:
    """A poll of a watched binding listed changes since its sync token, and no notification
    had announced any: the channel missed them."""
    return (
        evidence.watched
        and evidence.incremental
        and not evidence.notified
        and result.ok
        and result.counts.get("pulled", 0) > 0
    )


def lock_lost() -> Failure:
    """The run stopped because another worker holds the binding now (counted as busy)."""
    return Failure(
        Outcome.SKIPPED,
        Code.SYNC_IN_PROGRESS,
        "Another worker took over this calendar's sync; this one stopped.",
        "",
    )


def busy(result: RunResult) -> bool:
    """Skipped because another process holds the binding (not paused or disconnected)."""
    return (
        result.outcome is Outcome.SKIPPED
        and result.error is not None
        and result.error.code == Code.SYNC_IN_PROGRESS
    )
