"""`sync_binding`: one call syncs one calendar binding — lock, pull, push, record the run.

The lock is a row-level compare-and-set with an expiry (store.bindings.try_lock), so two workers
never sync one binding at once and a crashed worker's binding is free again after `lock_ttl`.
Every event is applied in its own transaction; the sync token and the push cursor move only
after the work they cover is stored, so a crash loses nothing and the next run finishes it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.direction import Direction
from calsync.domain.merge import Policy
from calsync.google import errors
from calsync.google.calendar import RequestCount, count_requests
from calsync.store import bindings, connections, runs, schedule, tenants
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.statuses import BindingRole, BindingStage, Code, ConnectionStatus, PrivateEvents

from . import scans, transitions
from .codes import TEXTS
from .context import Ctx, Hooks, RunProgress, RunSettings
from .errors import Failure, Outcome, backoff_delay, run_failure
from .owner import holder_dead, process_identity
from .pull import MassDelete, pull
from .push import push
from .tokens import GoogleAccess

log = logging.getLogger(__name__)

DEFAULT_LOCK_TTL = timedelta(minutes=15)
COUNTS = ("pulled", "pushed", "created", "updated", "deleted", "conflicts", "issues")


def worker_id() -> str:
    """A lock owner: this process's identity (sync.owner) and a token of its own."""
    return f"{process_identity()}:{uuid.uuid4().hex[:8]}"


@dataclass
class RunResult:
    """What one sync did: the stored run's id, its outcome and counts, and the error if any."""

    outcome: Outcome
    run_id: uuid.UUID | None = None
    counts: dict[str, int] = field(default_factory=dict)
    error: Failure | None = None
    google_requests: int = 0  # HTTP requests this run sent to Google (the request budget)

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.OK, Outcome.PARTIAL)


async def sync_binding(
    db: Database,
    binding_id: uuid.UUID,
    google: GoogleAccess,
    *,
    trigger: str = "manual",
    full: bool = False,
    allow_mass_delete: bool = False,
    owner: str | None = None,
    lock_ttl: timedelta = DEFAULT_LOCK_TTL,
    hooks: Hooks | None = None,
    now: datetime | None = None,
) -> RunResult:
    """Sync one binding now. Returns SKIPPED without touching anything when another worker
    holds it, it is paused or disabled, or its connection waits for the user."""
    owner = owner or worker_id()
    async with db.session() as session:
        locked = await _lock(session, binding_id, owner, lock_ttl)
        owed = await bindings.owed_since(session, binding_id) if locked else None
        if locked:
            # holding the lock, any run of this binding still "running" is a dead worker's
            # (a live one renews its lock): close it now, not after this run
            await schedule.abandon_runs(session, binding_id, utcnow(), before=utcnow())
        await session.commit()
    if not locked:
        return RunResult(Outcome.SKIPPED, error=_busy())
    hooks = hooks or Hooks()
    try:
        await hooks.fire("after_lock")
        # every HTTP request to Google this run sends, stored with the run (/metrics)
        with count_requests() as sent:
            result = await _locked(
                db, binding_id, google, trigger, full, allow_mass_delete, owner, hooks, now, sent
            )
        result.google_requests = sent.n
        if owed is not None and result.ok:  # this run covered the acknowledged webhook
            async with db.session() as session:
                await bindings.settle_owed(session, binding_id, owed)
                await session.commit()
        return result
    finally:
        await hooks.fire("before_release")
        async with db.session() as session:
            await bindings.release(session, binding_id, owner)
            await session.commit()


async def _lock(session: AsyncSession, binding_id: uuid.UUID, owner: str, ttl: timedelta) -> bool:
    """The binding's lock, taken over at once from a holder on this machine that died."""
    if await bindings.try_lock(session, binding_id, owner, ttl):
        return True
    holder = await schedule.lock_holder(session, binding_id)
    if holder is not None and holder_dead(holder):
        log.warning("took over a binding locked by a dead process", extra={"holder": holder})
        return await bindings.take_over(session, binding_id, owner, holder, ttl)
    return False


def _busy() -> Failure:
    return _failure(Outcome.SKIPPED, Code.SYNC_IN_PROGRESS)


def _failure(outcome: Outcome, code: Code, message: str | None = None) -> Failure:
    """A run stopped for one of calsync's own reasons: the message and remedy of its code
    (sync/codes.py), the message replaced by one that says more when there is one."""
    texts = TEXTS[code]
    return Failure(outcome, code, message or texts.message, texts.remedy or "")


async def _locked(
    db: Database,
    binding_id: uuid.UUID,
    google: GoogleAccess,
    trigger: str,
    full: bool,
    allow_mass_delete: bool,
    owner: str,
    hooks: Hooks | None,
    now: datetime | None,
    sent: RequestCount,
) -> RunResult:
    async with db.session() as session:
        binding = await bindings.get(session, binding_id)
        if binding is None:
            raise LookupError(f"no binding {binding_id}")
        connection = await connections.get(session, binding.connection_id)
        tenant = await tenants.get(session, binding.tenant_id)
        assert connection is not None and tenant is not None
        scan_key = scans.settings_key(
            tenant,
            binding,
            await bindings.for_connection(session, connection.id),
            connection.google_email,
        )
        skip = _skip_reason(
            binding.enabled, binding.stage, connection.status, connection, role=binding.role
        )
        if skip is not None:
            return RunResult(Outcome.SKIPPED, error=skip)
        run = await runs.start(
            session,
            tenant.id,
            binding.id,
            trigger=trigger,
            full_sync=full or binding.sync_token is None,
        )
        await session.commit()
    ctx: Ctx | None = None
    failure: Failure | None = None
    outcome = Outcome.OK
    try:
        tokens = google.tokens(db, tenant, connection)
        client = google.client(tokens)
        private_events = connection.private_events or PrivateEvents.IMPORT
        # the user changed the private-events policy: list everything and re-apply it
        reapply = (
            binding.private_events_applied is not None
            and binding.private_events_applied != private_events
        )
        full_run = full or reapply or binding.sync_token is None
        ctx = Ctx(
            RunSettings(
                db=db,
                client=client,
                tenant=tenant,
                tenant_id=tenant.id,
                user_id=connection.user_id,
                connection_id=connection.id,
                binding_id=binding.id,
                calendar_id=binding.google_calendar_id,
                role=binding.role,
                direction=binding.direction,
                time_zone=binding.time_zone,
                sync_token=None if full or reapply else binding.sync_token,
                run_id=run.id,
                now=now or utcnow(),
                lookback=timedelta(days=tenant.lookback_days or 30),
                policy=Policy(tenant.conflict_policy or "latest_wins"),
                hooks=hooks or Hooks(),
                lock_owner=owner,
                # the user confirmed the deletions the guard held back (bindings.resume)
                allow_mass_delete=allow_mass_delete or binding.deletions_confirmed,
                private_events=private_events,
                google_email=connection.google_email,
                reapply=reapply,
                scan_key=scan_key,
            ),
            RunProgress(
                push_seq=binding.push_seq,
                full=full_run,
                scan=scans.needs_scan(
                    binding,
                    scan_key,
                    full=full,
                    reapply=reapply,
                    pulls=binding.direction != Direction.CRM_TO_GOOGLE,
                ),
            ),
        )
        try:
            # an account used before: its old export calendar's events come here first
            await transitions.gather(ctx)
            if ctx.settings.pulls:
                await pull(ctx)
            if ctx.settings.pushes:
                await push(ctx)
        finally:
            await client.aclose()
        if ctx.progress.counts["issues"]:
            # partial means: something was parked as an issue the user can see. Entries
            # deliberately not written (type not exported, import-only calendar, direction)
            # are no news, and a write Google answered with a passing error is retried by
            # the next run (the push cursor waits for it)
            outcome = Outcome.PARTIAL
    except MassDelete as exc:
        outcome = Outcome.PAUSED
        failure = _failure(Outcome.PAUSED, Code.MASS_DELETE_GUARD, str(exc))
    except errors.GoogleError as exc:
        failure = run_failure(exc)
        outcome = failure.outcome
        log.warning("sync failed", extra={"binding": str(binding_id), "code": exc.code})
    counts = dict(ctx.progress.counts) if ctx is not None else {}
    await _record(db, binding_id, connection.id, run.id, outcome, failure, counts, ctx, sent.n)
    return RunResult(outcome, run.id, counts, failure)


def _skip_reason(
    enabled: bool, stage: str, status: str, connection: object, *, role: str = ""
) -> Failure | None:
    if role == BindingRole.UNSELECTED:
        return _failure(Outcome.SKIPPED, Code.CALENDAR_UNSELECTED)
    if not enabled:
        return _failure(Outcome.SKIPPED, Code.BINDING_DISABLED)
    if stage == BindingStage.PAUSED:
        return _failure(Outcome.SKIPPED, Code.BINDING_PAUSED)  # only the mass-delete guard pauses
    if stage == BindingStage.DISABLED:
        return _failure(Outcome.SKIPPED, Code.BINDING_DISABLED_STAGE)
    if status != ConnectionStatus.CONNECTED:
        return _failure(Outcome.SKIPPED, Code.NOT_CONNECTED)
    return None


async def _record(
    db: Database,
    binding_id: uuid.UUID,
    connection_id: uuid.UUID,
    run_id: uuid.UUID,
    outcome: Outcome,
    failure: Failure | None,
    counts: dict[str, int],
    ctx: Ctx | None,
    google_requests: int,
) -> None:
    at = utcnow()
    async with db.session() as session:
        stored = {k: int(counts.get(k, 0)) for k in COUNTS}
        await runs.finish(
            session,
            run_id,
            outcome=outcome.value,
            counts=stored,
            full_sync=bool(ctx and ctx.progress.full),
            error_code=failure.code if failure else None,
            error_message=failure.message if failure else None,
            google_requests=google_requests,
        )
        if outcome is Outcome.NEEDS_REAUTH and failure is not None:
            await connections.mark_needs_reauth(
                session, connection_id, code=failure.code, message=failure.message
            )
        if outcome is Outcome.DISABLED and failure is not None:
            await bindings.set_stage(
                session, binding_id, BindingStage.DISABLED, f"{failure.message} {failure.remedy}"
            )
        binding = await bindings.get(session, binding_id)
        failures = binding.failure_count if binding is not None else 0
        ok = outcome in (Outcome.OK, Outcome.PARTIAL)
        if ok and ctx is not None and ctx.settings.allow_mass_delete:
            await bindings.deletions_applied(session, binding_id)
        await bindings.finished(
            session,
            binding_id,
            ok=ok,
            at=at,
            retry_in=None if ok else backoff_delay(failures),
        )
        await session.commit()
