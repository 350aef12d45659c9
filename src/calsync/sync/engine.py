"""`sync_binding`: one call syncs one calendar binding — lock, pull, push, record the run.

The lock is a row-level compare-and-set with an expiry (store.bindings.try_lock), so two workers
never sync one binding at once and a crashed worker's binding is free again after `lock_ttl`.
Every event is applied in its own transaction; the sync token and the push cursor move only
after the work they cover is stored (both with the run's end, store.sync_rows.end_binding), so
a crash loses nothing and the next run finishes it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from calsync.domain.direction import Direction
from calsync.domain.merge import Policy
from calsync.domain.rates import added
from calsync.google import errors
from calsync.google.calendar import RequestCount, count_requests
from calsync.store import bindings, connections, runs, schedule, sync_rows
from calsync.store.base import utcnow
from calsync.store.db import Database, Transaction, joined, writes_first
from calsync.store.models import CalendarBinding
from calsync.store.schedule import ChannelEvidence
from calsync.store.sqlite_driver import writes_on_loop
from calsync.store.statuses import BindingRole, BindingStage, Code, ConnectionStatus, PrivateEvents

from . import scans, transitions
from .channels.kinds import binding_trusted
from .codes import TEXTS
from .context import Ctx, Hooks, RunProgress, RunSettings
from .errors import Failure, Outcome, backoff_delay, run_failure
from .owner import holder_dead, process_identity
from .pull import MassDelete, pull
from .push import push
from .tokens import GoogleAccess

log = logging.getLogger(__name__)

DEFAULT_LOCK_TTL = timedelta(minutes=15)
COUNTS = runs.RUN_COUNTS


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
    #: the binding's push channel as the run found it under its lock (None: not started): a
    #: poll that lists changes no notification announced is evidence against the channel
    evidence: ChannelEvidence | None = None

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
    rate_clock: Callable[[], datetime] | None = None,
) -> RunResult:
    """Sync one binding now. Returns SKIPPED without touching anything when another worker
    holds it, it is paused or disabled, or its connection waits for the user.

    `rate_clock` given: a run that applies Google-side changes adds them to the binding's
    change rate (domain.rates) as of that clock's time, with the run's end (the runners pass
    their poll clock for every run but a first or full one: an import is the calendar's past,
    not its traffic).

    Transactions when nothing fails: the start (lock, one read of binding, connection and
    tenant, the run's row), the pull's and push's own (none when nothing changed), and the end
    (the push's read of what it owes Google — a transaction of its own when it owes something,
    ended before the first request; the run's outcome; the binding's sync token, push cursor,
    end of run and lock release in one UPDATE). A no-op sync: two transactions. On SQLite
    a run for news from Google or a user's "Sync now" is handed the write turn before the CRM
    API's writes (`store.db.writes_first`, `WRITES_FIRST`)."""
    with writes_first(trigger in WRITES_FIRST):
        owner = owner or worker_id()
        hooks = hooks or Hooks()
        run = _Run(owner, trigger)
        try:
            async with db.connection() as conn:
                # a few small writes after the lock's: on SQLite on the loop's thread
                with writes_on_loop():
                    loaded = await _start(conn, binding_id, owner, lock_ttl, run, full)
                await conn.commit()
            if loaded is None:
                return RunResult(Outcome.SKIPPED, error=_busy())
            run.locked = True
            if run.id is None:  # paused, disabled, not connected: nothing was started
                assert run.skip is not None
                return RunResult(Outcome.SKIPPED, error=run.skip)
            binding = loaded.binding
            await hooks.fire("after_lock")
            # every HTTP request to Google this run sends, stored with the run (/metrics)
            with count_requests() as sent:
                result = await _locked(
                    db, loaded, run, google, full, allow_mass_delete, hooks, now, sent, rate_clock
                )
            result.google_requests = sent.n
            result.evidence = ChannelEvidence(
                binding.channel_id or None,
                binding.twin_channel_id or None,
                run.owed is not None,
                binding.sync_token is not None,
            )
            return result
        finally:
            if run.locked and not run.ended:
                # skipped, or an unexpected error before the run's end was stored: free the
                # binding, and close the run so it never stays "running" beside a newer one
                await hooks.fire("before_release")
                async with db.session() as session:
                    if run.id is not None:
                        await sync_rows.close_running(session, run.id)
                    await bindings.release(session, binding_id, owner)
                    await session.commit()


#: the runs whose writes go first on SQLite: Google's news (its notification) and a user's
#: "Sync now". Not a CRM change's push: those come with the CRM API's own writes, and ahead of
#: them they ran once per write instead of once per burst, and the API starved (bench/api_load:
#: 52 req/s of 100, p99 2.8 s)
WRITES_FIRST = frozenset({"webhook", "manual"})
#: the trigger of a CRM change's push (jobs.port.Reason.CHANGE)
CRM_CHANGE = "change"


@dataclass
class _Run:
    """One call's state between its transactions."""

    owner: str
    trigger: str
    locked: bool = False
    ended: bool = False
    id: uuid.UUID | None = None
    skip: Failure | None = None
    owed: datetime | None = None


async def _start(
    conn: AsyncConnection,
    binding_id: uuid.UUID,
    owner: str,
    ttl: timedelta,
    run: _Run,
    full: bool,
) -> sync_rows.Loaded | None:
    """Lock, read, and start the run in the caller's transaction (None: not locked): table
    statements on a connection, an ORM session only to take the lock over."""
    if not await sync_rows.lock_free(conn, binding_id, owner, ttl):
        async with joined(conn) as session:
            if not await _lock(session, binding_id, owner, ttl):
                return None
            # the lock was taken from an expired or dead holder: its run of this binding is
            # still "running" — close it now, not after this run
            await schedule.abandon_runs(session, binding_id, utcnow(), before=utcnow())
    run.locked = True
    loaded = await sync_rows.load(conn, binding_id)
    if loaded is None:
        raise LookupError(f"no binding {binding_id}")
    binding, connection = loaded.binding, loaded.connection
    run.owed = binding.sync_owed_at
    run.skip = _skip_reason(
        binding.enabled, binding.stage, connection.status, connection, role=binding.role
    )
    if run.skip is None:
        run.id = await sync_rows.start_run(
            conn,
            binding.tenant_id,
            binding.id,
            trigger=run.trigger,
            full_sync=full or _first_sync(binding),
        )
    return loaded


def _reads_google(run: _Run, binding: CalendarBinding, progress: RunProgress) -> bool:
    """Whether the run lists Google's changes before it pushes. Every run does but a CRM
    change's (`CRM_CHANGE`) when nothing says Google has news for it: no notification owed
    (`sync_owed_at`, stored before the webhook's 200), a channel of the calendar live and
    trusted (`channels.kinds.trusted`, the poll interval's rule), a sync token, no deletions
    the user confirmed after the mass-delete guard (the listing applies them), no scan or
    full listing owed. Such a listing finds nothing but the last push's echo, which its own
    notification's run reads anyway: skipping it saves a request and a round trip before
    the CRM's change reaches Google. The push needs no fresh read (sync/plan.py): every
    patch and delete carries If-Match, and a 412 re-reads that one event and merges; a
    change Google made meanwhile is announced, and read by the run the notification owes."""
    return not (
        run.trigger == CRM_CHANGE
        and run.owed is None
        and binding.sync_token is not None
        and not binding.deletions_confirmed
        and not progress.full
        and not progress.scan
        and binding_trusted(binding, utcnow())
    )


def _first_sync(binding: CalendarBinding) -> bool:
    """The binding never completed a sync: no sync token, or for a calendar that does not
    pull (CRM → Google, which never has one), no completed scan (sync.scans)."""
    if binding.direction == Direction.CRM_TO_GOOGLE:
        return binding.scanned_key is None
    return binding.sync_token is None


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
    loaded: sync_rows.Loaded,
    run: _Run,
    google: GoogleAccess,
    full: bool,
    allow_mass_delete: bool,
    hooks: Hooks | None,
    now: datetime | None,
    sent: RequestCount,
    rate_clock: Callable[[], datetime] | None,
) -> RunResult:
    assert run.id is not None
    # the run's end: the push reads in it what it owes Google (sync.push), and the run's
    # outcome is stored in it — in one transaction when the push owes nothing
    async with db.transaction() as end:
        outcome, failure, ctx = await _work(
            db, loaded, run, google, full, allow_mass_delete, hooks, now, end
        )
        counts = dict(ctx.progress.counts) if ctx is not None else {}
        await (hooks or Hooks()).fire("before_release")  # the end below releases the lock
        await _record(db, end, loaded, run, outcome, failure, counts, ctx, sent.n, rate_clock)
    return RunResult(outcome, run.id, counts, failure)


async def _work(
    db: Database,
    loaded: sync_rows.Loaded,
    run: _Run,
    google: GoogleAccess,
    full: bool,
    allow_mass_delete: bool,
    hooks: Hooks | None,
    now: datetime | None,
    end: Transaction,
) -> tuple[Outcome, Failure | None, Ctx | None]:
    """Gather, pull and push; the outcome, the failure if any, and the run's context."""
    binding, connection, tenant = loaded.binding, loaded.connection, loaded.tenant
    assert run.id is not None
    scan_key = scans.settings_key(tenant, binding, loaded.calendars, connection.google_email)
    ctx: Ctx | None = None
    failure: Failure | None = None
    outcome = Outcome.OK
    try:
        tokens = google.tokens(db, tenant, connection, loaded.secrets)
        client = google.client(tokens)
        if hooks is not None:
            client.before_write = hooks.before_google_write
        private_events = connection.private_events or PrivateEvents.IMPORT
        # the user changed the private-events policy: list everything and re-apply it
        reapply = (
            binding.private_events_applied is not None
            and binding.private_events_applied != private_events
        )
        full_run = full or reapply or _first_sync(binding)
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
                lock_owner=run.owner,
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
                if _reads_google(run, binding, ctx.progress):
                    await pull(ctx)
                else:  # the point between the pull and the push is still there
                    await ctx.settings.hooks.fire("after_pull", ctx)
            if ctx.settings.pushes:
                await push(ctx, end)
                if ctx.progress.relist:
                    # a write found nothing at Google: list now (a calendar gone ends the run
                    # disabled, as a listing first would have), then write what is still owed
                    ctx.progress.relist = False
                    ctx.progress.counts["deferred"] = 0  # the second push counts what stays
                    await pull(ctx)
                    await push(ctx, end)
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
        log.warning("sync failed", extra={"binding": str(binding.id), "code": exc.code})
    return outcome, failure, ctx


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
    end: Transaction,
    loaded: sync_rows.Loaded,
    run: _Run,
    outcome: Outcome,
    failure: Failure | None,
    counts: dict[str, int],
    ctx: Ctx | None,
    google_requests: int,
    rate_clock: Callable[[], datetime] | None = None,
) -> None:
    """The run's end in the caller's transaction (committed here): its outcome, the binding's
    end of run (the push cursor and scan key the push reached, the acknowledged webhook this
    run covered, the Google-side changes it applied added to the change rate) and the lock's
    release. A run Google stopped for good (`_stop`) ends in an ORM session of its own, as
    before: the connection's or calendar's new state goes through the ORM, whose commit writes
    its webhook event to the outbox (store.webhooks), which a joined session never does."""
    assert run.id is not None
    binding = loaded.binding
    at = utcnow()
    ok = outcome in (Outcome.OK, Outcome.PARTIAL)
    push_seq = scanned_key = None
    if ctx is not None:
        if ctx.progress.push_seq != binding.push_seq:
            push_seq = ctx.progress.push_seq
        if ctx.progress.scanned:
            scanned_key = ctx.settings.scan_key
    stored = {k: int(counts.get(k, 0)) for k in COUNTS}
    run_id = run.id

    async def store(target: AsyncConnection | AsyncSession, stop: AsyncSession | None) -> None:
        await runs.finish(
            target,
            run_id,
            outcome=outcome.value,
            counts=stored,
            full_sync=bool(ctx and ctx.progress.full),
            error_code=failure.code if failure else None,
            error_message=failure.message if failure else None,
            google_requests=google_requests,
        )
        if stop is not None and failure is not None:
            await _stop(stop, loaded, outcome, failure)
        await sync_rows.end_binding(
            target,
            binding.id,
            run.owner,
            ok=ok,
            at=at,
            retry_in=None if ok else backoff_delay(binding.failure_count or 0),
            push_seq=push_seq,
            scanned_key=scanned_key,
            # this run covered the acknowledged webhook
            owed=run.owed if ok else None,
            deletions_applied=ok and ctx is not None and ctx.settings.allow_mass_delete,
            listed=_listed(ctx),
            rate=_rate(binding, counts, rate_clock) if ok else None,
        )

    if outcome in (Outcome.NEEDS_REAUTH, Outcome.DISABLED) and failure is not None:
        # the end holds nothing here (the push's reads end before its first request to Google)
        await end.commit()
        async with db.session() as session:
            await store(session, session)
            await session.commit()
    else:
        with writes_on_loop():  # two small UPDATEs (on SQLite the second on the loop's thread)
            await store(await end.connection(), None)
        await end.commit()
    run.ended = True


async def _stop(
    session: AsyncSession, loaded: sync_rows.Loaded, outcome: Outcome, failure: Failure
) -> None:
    """A run that Google stopped for good: the connection waits for the user, or the calendar
    is disabled."""
    if outcome is Outcome.NEEDS_REAUTH:
        await connections.mark_needs_reauth(
            session, loaded.connection.id, code=failure.code, message=failure.message
        )
    else:
        await bindings.set_stage(
            session, loaded.binding.id, BindingStage.DISABLED, f"{failure.message} {failure.remedy}"
        )


def google_changes(counts: dict[str, int]) -> int:
    """The Google-side changes a run applied to the CRM (not the echo of its own writes)."""
    return sum(counts.get(k, 0) for k in ("created", "updated", "deleted"))


def _rate(
    binding: CalendarBinding, counts: dict[str, int], clock: Callable[[], datetime] | None
) -> tuple[float, datetime] | None:
    """The binding's change rate with this run's Google-side changes added (None: unchanged).
    Read at the start under the lock, which every writer of the rate holds."""
    changes = google_changes(counts)
    if clock is None or changes <= 0:
        return None
    at = clock()
    rate = added(
        binding.google_change_rate, binding.google_rate_at, changes, at, binding.created_at
    )
    return rate, at


def _listed(ctx: Ctx | None) -> tuple[str | None, str | None, str] | None:
    """The sync token to store when the pull read its listing to the end (whatever the push
    did after: what the pull applied is stored), with the zone and policy it applied."""
    if ctx is None or ctx.progress.listed is None:
        return None
    listed = ctx.progress.listed
    return listed.sync_token, listed.time_zone, ctx.settings.private_events
