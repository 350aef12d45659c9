"""`make_job_queue`: the runner the settings ask for (CALSYNC_JOBS=inprocess|procrastinate)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from calsync.google.calendar import count_requests
from calsync.settings import Settings
from calsync.store.db import Database
from calsync.sync.channels.service import CHANNEL_RENEWAL_SECONDS, Channels, renew_due_channels
from calsync.sync.tokens import GoogleAccess

from .budget import Budget, Limits
from .inprocess import InProcessRunner
from .polling import PollPolicy
from .port import JobQueue, Reason
from .postgres_url import conninfo
from .recovery import Recovery
from .webhooks import Deliverer

#: later recovery passes leave alone what is younger than this (a debounce, a queued sync)
RECOVERY_SETTLE = timedelta(seconds=30)


def poll_policy(settings: Settings) -> PollPolicy:
    return PollPolicy(
        healthy_interval=timedelta(seconds=settings.healthy_poll_interval_seconds),
        jitter=settings.poll_jitter,
        silence_changes=settings.poll_silence_changes,
        echo_grace=timedelta(seconds=settings.channel_echo_grace_seconds),
        claim_hold=max(timedelta(seconds=settings.lock_timeout_seconds), timedelta(seconds=60)),
    )


def make_job_queue(settings: Settings, db: Database, google: GoogleAccess) -> JobQueue:
    """The configured runner with its maintenance ticks (push-channel renewal) registered, so a
    web process and a `calsync worker` run the same periodic work; procrastinate refuses
    anything but PostgreSQL (NeedsPostgres)."""
    budget = make_budget(settings, db)
    queue = _runner(settings, db, google, budget)

    async def renew() -> None:
        # renewals spend from the shared budget too; they wait only for a spent minute (a
        # channel let expire would cost its binding a poll every few minutes instead)
        if await budget.wait_for(Reason.RETRY) > 0:
            return
        with count_requests() as sent:
            await renew_due_channels(db, google, settings)
        await budget.spend(sent.n)

    queue.register_periodic("renew_channels", CHANNEL_RENEWAL_SECONDS, renew)
    recovery = Recovery(db, queue, settle=RECOVERY_SETTLE)
    # in-process: its first tick runs at start; procrastinate: each worker runs it at start
    queue.register_periodic("recover", settings.recovery_tick_seconds, recovery.run)
    if settings.jobs == "procrastinate":
        from .procrastinate_runner import ProcrastinateQueue

        assert isinstance(queue, ProcrastinateQueue)
        queue.on_worker_start(recovery.run)
    # outbound webhooks: the outbox is in the database, so whichever process ticks (several
    # may) sends what is due, and a fresh process after a crash sends what the dead one owed
    deliverer = Deliverer(db, allow_private=settings.webhook_allow_private)
    if isinstance(queue, InProcessRunner):  # wakes at once for this process's own writes
        tick = settings.webhook_tick_seconds
        queue.register_periodic("webhooks", 0.0, lambda: deliverer.run_and_wait(tick))
    else:
        queue.register_periodic("webhooks", settings.webhook_tick_seconds, deliverer.run)
    return queue


def make_budget(settings: Settings, db: Database) -> Budget:
    """The project-wide Google request budget (CALSYNC_GOOGLE_BUDGET_*), shared through the
    database by every process."""
    return Budget(
        db,
        Limits(
            per_minute=settings.google_budget_per_minute,
            per_day=settings.google_budget_per_day,
            poll_share=settings.google_budget_poll_share,
        ),
    )


def _runner(settings: Settings, db: Database, google: GoogleAccess, budget: Budget) -> JobQueue:
    lock_ttl = timedelta(seconds=settings.lock_timeout_seconds)

    async def rewatch(binding_id: uuid.UUID) -> bool:
        return await Channels(db, google, settings).rewatch(binding_id)

    if settings.jobs == "procrastinate":
        url = settings.effective_database_url
        conninfo(url)  # fails early and clearly on SQLite
        from .procrastinate_runner import ProcrastinateQueue  # loaded only when chosen

        return ProcrastinateQueue(
            url,
            db,
            google,
            concurrency=settings.jobs_concurrency,
            lock_ttl=lock_ttl,
            lock_heartbeat=settings.lock_heartbeat_seconds,
            grace=settings.shutdown_grace_seconds,
            busy_retry=settings.busy_retry_seconds,
            poll_policy=poll_policy(settings),
            poll_every=settings.poll_tick_seconds,
            stuck_every=settings.stuck_tick_seconds,
            heartbeat=settings.worker_heartbeat_seconds,
            stalled_after=settings.worker_stalled_seconds,
            budget=budget,
            rewatch=rewatch,
        )
    return InProcessRunner(
        db,
        google,
        concurrency=settings.jobs_concurrency,
        lock_ttl=lock_ttl,
        lock_heartbeat=settings.lock_heartbeat_seconds,
        grace=settings.shutdown_grace_seconds,
        busy_retry=settings.busy_retry_seconds,
        poll_policy=poll_policy(settings),
        poll_every=settings.poll_tick_seconds,
        stuck_every=settings.stuck_tick_seconds,
        budget=budget,
        rewatch=rewatch,
    )
