"""The FastAPI application: `create_app(settings)` wires store, crypto, routers and errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from calsync import __version__, runtime
from calsync.google.calendar import make_http_client
from calsync.jobs import metrics as metrics_endpoint
from calsync.jobs.debounce import ChangeDebouncer
from calsync.jobs.factory import make_job_queue
from calsync.settings import Settings, get_settings
from calsync.store import crypto
from calsync.store.bootstrap import database_for, keyring_for
from calsync.store.db import Database
from calsync.sync.google_services import GoogleServices

from . import api, errors, pages, webhooks
from . import oauth as oauth_callback

log = logging.getLogger(__name__)

DESCRIPTION = """Two-way Google Calendar sync for CRMs.

Authenticate with `Authorization: Bearer <API key>`. Errors are always
`{"error": {"code", "message", "remedy"}}`. See docs/api.md for a walkthrough."""


async def _metrics_port(
    settings: Settings, metrics: metrics_endpoint.Metrics, db: Database, jobs: Any
) -> Any:
    """With CALSYNC_METRICS_PORT: /metrics (and /healthz) on that port only, where the public
    one does not reach (the worker's MetricsEndpoint, on this event loop)."""
    if settings.metrics_port is None:
        return None
    from calsync.jobs.worker import MetricsEndpoint, MetricsPortError

    try:
        endpoint = MetricsEndpoint(
            metrics, db, settings, jobs, host=settings.metrics_host, port=settings.metrics_port
        )
    except MetricsPortError as exc:
        cause = exc.__cause__
        raise RuntimeError(
            f"calsync cannot serve /metrics on {settings.metrics_host}:{settings.metrics_port}: "
            f"{getattr(cause, 'strerror', None) or cause}. Choose a free CALSYNC_METRICS_PORT "
            "(0 picks any free one), or unset it to serve /metrics on the main port."
        ) from exc
    await endpoint.start()
    log.info("metrics at %s/metrics", endpoint.url)
    return endpoint


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    keyring: crypto.Keyring | None = None,
) -> FastAPI:
    """The app; pass `database`/`keyring` to share them (tests), else built from settings."""
    settings = settings or get_settings()
    crypto.install(keyring or keyring_for(settings))
    owned = database is None
    db = database or database_for(settings)
    google = GoogleServices.create(settings, db)
    metrics = metrics_endpoint.Metrics()
    # one pooled client for every Calendar call of this process, counted for /metrics
    google.access.http = make_http_client(settings, event_hooks={"response": [metrics.google_hook]})
    shared_http = google.access.http

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs = getattr(app.state, "jobs", None)
        owned_jobs = jobs is None
        if jobs is None:  # the configured runner (tests may set their own before startup)
            jobs = app.state.jobs = make_job_queue(settings, db, app.state.google.access)
            await jobs.start()
        # CRM edits → debounced pushes (web/api/activities.py calls touch after each commit)
        changes = app.state.changes = ChangeDebouncer(
            db, jobs, delay=settings.change_debounce_seconds
        )
        changes.start()
        sandbox = getattr(app.state, "sandbox", None)
        if sandbox is not None:
            await sandbox.prepare(app)
        endpoint = app.state.metrics_endpoint = await _metrics_port(settings, metrics, db, jobs)
        runtime.settle_heap()
        yield
        runtime.thaw_heap()
        if endpoint is not None:
            await endpoint.stop()
        await changes.stop()
        if owned_jobs:
            await jobs.stop()
        services: GoogleServices = app.state.google
        await services.aclose()
        if services is not google:
            await google.aclose()
        await shared_http.aclose()
        if sandbox is not None:
            sandbox.stop()
        if owned:
            await db.dispose()

    # Swagger UI from assets shipped in fastapi-offline (/static-offline-docs), not a
    # CDN: the API docs work offline and behind a firewall, and nothing leaves this machine
    app = FastAPIOffline(
        title="calsync",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,  # ReDoc's bundle fetches its logo from a CDN
        # no badge from the online validator (validator.swagger.io)
        swagger_ui_parameters={"validatorUrl": None},
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.google = google
    app.state.metrics = metrics
    errors.install(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"model": errors.ErrorBody, "description": "Not ready"}},
    )
    async def readyz() -> JSONResponse:
        """The database answers and the job runner is running."""
        try:
            await db.ping()
        except Exception:
            return errors.error_response(
                503,
                "database_unavailable",
                "the database does not answer",
                "check CALSYNC_DATABASE_URL and that the database is running",
            )
        jobs = getattr(app.state, "jobs", None)
        if jobs is not None and not jobs.healthy():
            return errors.error_response(
                503,
                "job_runner_unavailable",
                "the job runner is not running",
                "check the logs for the runner's error; with procrastinate, that PostgreSQL "
                "answers and `calsync worker` processes are running",
            )
        return JSONResponse({"status": "ok"})

    api.install(app)  # straight on the app's router (web/api/__init__.py says why)
    app.include_router(oauth_callback.router)
    app.include_router(webhooks.router)
    if settings.metrics_port is None:  # else only on its own port (lifespan)
        app.include_router(metrics_endpoint.router)
    pages.install(app, settings)  # HTML pages, sessions, static files (web/pages)
    # added last: the outermost of the app's own middleware, ahead of the sessions and the
    # router (Google's notifications need neither; web/webhooks.py)
    app.add_middleware(webhooks.FastPath)
    return app
