"""Prometheus `/metrics`: one registry per app (so tests can build many apps).

Process-local series are counted as they happen (Google requests through the shared httpx
client's response hook, webhooks received). Series that must be right across N web processes
and N workers — syncs by outcome, bindings by state, Google requests of the last day's sync
runs (each run stores its own count), webhook-to-applied latency — are read from the database
when scraped (at most once per CALSYNC_METRICS_CACHE_SECONDS), so every process reports the
same numbers. `calsync worker --metrics-port` serves the same `Metrics` (jobs/worker.py).

Protection: with CALSYNC_METRICS_TOKEN set a scrape must send `Authorization: Bearer <token>`
(401 otherwise); with CALSYNC_METRICS_PORT set `calsync serve` serves /metrics only on that port
(MetricsEndpoint, web/app.py), not on the public one.

Here in jobs, not in web: workers serve the same `Metrics` and route (jobs/worker.py), and jobs
never imports web. The database reads are store/reports.py.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.settings import Settings
from calsync.store import reports
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.sync.channels.kinds import renew_margin

from .port import Reason

router = APIRouter(tags=["operations"])

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
PENDING_LIMIT = 100_000  # webhooks waiting for their sync, remembered per binding
PENDING_TTL = timedelta(hours=1)
DAY = timedelta(days=1)
REQUESTS_HELP = (
    " Counts every HTTP request a sync run sent (retries, token refreshes, and a batch request"
    " as one), from the runs recorded by all processes; push-channel renewals and API calls"
    " outside sync runs are only in calsync_google_requests_total."
)


class _Snapshot(Collector):
    """Series read from the database at scrape time (see `Metrics.refresh`)."""

    def __init__(self) -> None:
        self.syncs: dict[str, int] = {}
        self.bindings: dict[str, int] = {}
        self.channels: dict[tuple[str, str], int] = {}
        self.queue_depth: int | None = None
        self.requests_per_binding_day: float | None = None
        self.requests_last_day: dict[str, int] = {}
        self.budget: reports.BudgetUse | None = None
        self.budget_limits: tuple[int, int] = (0, 0)  # per minute, per day
        self.budget_held: dict[str, int] = {}  # this process: polls postponed, syncs delayed

    def collect(self) -> Iterator[Metric]:
        syncs = CounterMetricFamily(
            "calsync_syncs", "Sync runs recorded, by outcome (all processes).", labels=["outcome"]
        )
        for outcome, n in sorted(self.syncs.items()):
            syncs.add_metric([outcome], n)
        yield syncs
        bindings = GaugeMetricFamily(
            "calsync_bindings", "Calendar bindings by state (off = switched off).", labels=["state"]
        )
        for state, n in sorted(self.bindings.items()):
            bindings.add_metric([state], n)
        yield bindings
        channels = GaugeMetricFamily(
            "calsync_push_channels",
            "Google push channels by kind (events of a binding, calendar_list of a connection) "
            "and state (active, expiring = renewal due, expired).",
            labels=["kind", "state"],
        )
        for (kind, state), n in sorted(self.channels.items()):
            channels.add_metric([kind, state], n)
        yield channels
        if self.queue_depth is not None:
            yield GaugeMetricFamily(
                "calsync_queue_depth", "Sync jobs waiting in the queue.", value=self.queue_depth
            )
        if self.requests_per_binding_day is not None:
            yield GaugeMetricFamily(
                "calsync_google_requests_per_binding_per_day",
                "Google requests of sync runs started in the last 24 h per enabled binding."
                + REQUESTS_HELP,
                value=self.requests_per_binding_day,
            )
        last_day = GaugeMetricFamily(
            "calsync_google_requests_last_day",
            "Google requests of sync runs started in the last 24 h, by what triggered the run."
            + REQUESTS_HELP,
            labels=["trigger"],
        )
        for trigger, n in sorted(self.requests_last_day.items()):
            last_day.add_metric([trigger], n)
        yield last_day
        yield from self._budget()

    def _budget(self) -> Iterator[Metric]:
        use = self.budget
        if use is None:
            return
        used = GaugeMetricFamily(
            "calsync_google_budget_used",
            "Google requests counted against the project-wide budget by every process: in the "
            "current UTC minute and in the last 24 hours (sync runs, channel watches and stops).",
            labels=["window"],
        )
        used.add_metric(["minute"], use.minute)
        used.add_metric(["day"], use.day)
        yield used
        limit = GaugeMetricFamily(
            "calsync_google_budget_limit",
            "The request budget (CALSYNC_GOOGLE_BUDGET_PER_MINUTE / _PER_DAY).",
            labels=["window"],
        )
        limit.add_metric(["minute"], self.budget_limits[0])
        limit.add_metric(["day"], self.budget_limits[1])
        yield limit
        held = CounterMetricFamily(
            "calsync_google_budget_held",
            "Work this process held back for the budget: poll passes cut short (polls left due "
            "for later) and syncs that waited for the next minute.",
            labels=["what"],
        )
        for what, n in sorted(self.budget_held.items()):
            held.add_metric([what], n)
        yield held
        yield GaugeMetricFamily(
            "calsync_push_channels_suspect",
            "Push channels a poll caught missing a change, not trusted (the calendar polls at "
            "its tenant's interval) until a notification arrives on them again.",
            value=use.suspect_channels,
        )


class Metrics:
    """The app's metrics; `google_hook` goes on the shared Google httpx client."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.refreshed_at: float | None = None  # when the database-backed series were read
        self.registry = CollectorRegistry(auto_describe=True)
        self.google_requests = Counter(
            "calsync_google_requests",
            "Requests to Google's APIs from this process, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "calsync_webhooks",
            "Push notifications received, by result.",
            ["result"],
            registry=self.registry,
        )
        self.webhook_latency = Histogram(
            "calsync_webhook_to_applied_seconds",
            "From a Google push notification to the end of the sync that applied it.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.snapshot = _Snapshot()
        self.registry.register(self.snapshot)
        # binding -> first notification not yet applied (wall clock, as sync_run is stamped)
        self.pending: OrderedDict[uuid.UUID, datetime] = OrderedDict()

    async def google_hook(self, response: httpx.Response) -> None:
        """httpx response hook: count every Google answer by status."""
        self.google_requests.labels(status=str(response.status_code)).inc()

    def webhook_received(self, binding_id: uuid.UUID, at: datetime | None = None) -> None:
        self.webhooks.labels(result="accepted").inc()
        if binding_id not in self.pending:
            self.pending[binding_id] = at or utcnow()
            while len(self.pending) > PENDING_LIMIT:
                self.pending.popitem(last=False)

    async def refresh(self, db: Database, settings: Settings, jobs: Any) -> None:
        """Read the database-backed series (called by GET /metrics before rendering), unless
        they were read less than `metrics_cache_seconds` ago: scrapes cost no queries then."""
        started = self.clock()
        if (
            self.refreshed_at is not None
            and started - self.refreshed_at < settings.metrics_cache_seconds
        ):
            return
        now = utcnow()
        async with db.session() as s:
            self.snapshot.syncs = await reports.syncs_by_outcome(s)
            self.snapshot.bindings = await reports.bindings_by_state(s, now)
            self.snapshot.channels = await reports.channels_by_state(
                s, now, now + renew_margin(settings)
            )
            enabled = await reports.enabled_bindings(s)
            last_day = dict.fromkeys((r.value for r in Reason), 0)
            last_day.update(await reports.google_requests_by_trigger(s, now - DAY))
            await self._applied(s, now)
            self.snapshot.budget = await reports.budget_use(s, now)
            await s.commit()
        self.snapshot.budget_limits = (
            settings.google_budget_per_minute,
            settings.google_budget_per_day,
        )
        budget = getattr(jobs, "budget", None)
        if budget is not None:
            self.snapshot.budget_held = {
                "polls": int(budget.postponed_polls),
                "syncs": int(budget.delayed_syncs),
            }
        self.snapshot.requests_last_day = last_day
        total = sum(last_day.values())
        self.snapshot.requests_per_binding_day = total / enabled if enabled else None
        depth = getattr(jobs, "queue_depth", None)
        self.snapshot.queue_depth = int(depth()) if callable(depth) else None
        self.refreshed_at = started

    async def _applied(self, s: AsyncSession, now: datetime) -> None:
        """Observe latencies of notifications whose sync has finished since."""
        if not self.pending:
            return
        for binding_id, at in list(self.pending.items()):
            if now - at > PENDING_TTL:
                del self.pending[binding_id]
        since = min(self.pending.values(), default=now)
        done: dict[uuid.UUID, datetime] = {}
        for binding_id, started, finished in await reports.finished_runs(
            s, list(self.pending), since
        ):
            received = self.pending.get(binding_id)
            if received is None or started < received:
                continue
            if binding_id not in done or finished < done[binding_id]:
                done[binding_id] = finished
        for binding_id, finished in done.items():
            received = self.pending.pop(binding_id)
            self.webhook_latency.observe(max(0.0, (finished - received).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _authorised(request: Request, settings: Settings) -> bool:
    if settings.metrics_token is None or not settings.metrics_token.get_secret_value():
        return True
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        sent.strip().encode(), expected.encode()
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format (a bearer token first, when CALSYNC_METRICS_TOKEN is set)."""
    state = request.app.state
    if not _authorised(request, state.settings):
        # the API's error shape (web/errors.py), written out: a worker serves this route too
        return JSONResponse(
            {
                "error": {
                    "code": "unauthorized",
                    "message": "/metrics needs the metrics token",
                    "remedy": "send Authorization: Bearer <CALSYNC_METRICS_TOKEN> (in "
                    "Prometheus: authorization.credentials of the scrape config)",
                }
            },
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    m: Metrics = state.metrics
    await m.refresh(state.db, state.settings, getattr(state, "jobs", None))
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
