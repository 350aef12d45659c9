"""`calsync worker`: run sync jobs until SIGTERM, then let the syncs in flight finish.

With CALSYNC_JOBS=procrastinate (PostgreSQL) any number of workers share the jobs; with the
in-process runner a worker is a web-less process that polls and syncs (several may share one
database: the engine's lock and the poll claims keep them apart). With `--metrics-port` a
worker also serves Prometheus `/metrics` and `/healthz`: the syncs run here, so this process's
Google request counts are only visible here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from calsync import runtime
from calsync.google.calendar import make_http_client
from calsync.settings import Settings
from calsync.store.bootstrap import database_for
from calsync.store.db import Database
from calsync.sync.tokens import GoogleAccess

from . import metrics as metrics_endpoint
from .factory import make_job_queue
from .port import JobQueue

log = logging.getLogger(__name__)


class MetricsPortError(RuntimeError):
    """The worker's metrics address cannot be listened on (in use, unknown host, no rights)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(
            f"The worker cannot serve /metrics on {host}:{port}: {cause.strerror or cause}. "
            "Choose a free port with --metrics-port (or CALSYNC_WORKER_METRICS_PORT; 0 picks "
            "any free one), one per worker on the same machine."
        )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # SIGTERM/SIGINT stay the worker's: they let syncs in flight finish, then stop this
        yield


class MetricsEndpoint:
    """A worker's `/metrics` and `/healthz`: a tiny ASGI app served by uvicorn on the worker's
    own event loop.

    Not prometheus_client's `start_http_server`: that serves from a thread, and half of the
    series (syncs, bindings, requests per binding per day, queue depth) are read at scrape time
    with the worker's async database engine and runner, which live on this loop; it also has
    no /healthz. uvicorn already serves `calsync serve`, so nothing new is deployed.
    """

    def __init__(
        self,
        metrics: metrics_endpoint.Metrics,
        db: Database,
        settings: Settings,
        queue: JobQueue,
        *,
        host: str,
        port: int,
    ) -> None:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.state.metrics, app.state.db, app.state.settings = metrics, db, settings
        app.state.jobs = queue
        app.include_router(metrics_endpoint.router)

        @app.get("/healthz")
        async def healthz() -> JSONResponse:
            """The worker is up and its job runner is running."""
            if queue.healthy():
                return JSONResponse({"status": "ok"})
            return JSONResponse({"status": "job runner stopped"}, status_code=503)

        # bound now, so a port in use fails the worker before it takes any job
        try:
            family, *_, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            self.socket = socket.create_server(address[:2], family=family)
        except OSError as exc:
            raise MetricsPortError(host, port, exc) from exc
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.socket]))
        while not self.server.started:
            if self._task.done():
                self._task.result()  # uvicorn could not start: say why
                raise RuntimeError("the metrics endpoint stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self.server.should_exit = True
            await self._task
            self._task = None
        self.socket.close()


async def migrate_jobs(db: Database) -> bool:
    """Apply procrastinate's schema when the database is PostgreSQL (idempotent)."""
    if db.dialect != "postgresql":
        return False
    from .procrastinate_runner import apply_schema  # loaded only on PostgreSQL

    return await apply_schema(db.url)


async def serve_jobs(
    settings: Settings, stop: asyncio.Event, *, on_metrics: Callable[[str], Any] | None = None
) -> None:
    """Run the configured runner as a worker until `stop` is set; with
    CALSYNC_WORKER_METRICS_PORT also serve /metrics (`on_metrics` gets its base URL)."""
    db = database_for(settings)  # the pool's sizes and a private data dir, as serve's
    metrics = metrics_endpoint.Metrics()
    # one pooled client for every Calendar call of this process, counted for /metrics (as in
    # web/app.py)
    http = make_http_client(settings, event_hooks={"response": [metrics.google_hook]})
    google = GoogleAccess(settings, http=http)
    queue = make_job_queue(settings, db, google)
    endpoint: MetricsEndpoint | None = None
    try:
        if settings.worker_metrics_port is not None:
            endpoint = MetricsEndpoint(
                metrics,
                db,
                settings,
                queue,
                host=settings.worker_metrics_host,
                port=settings.worker_metrics_port,
            )
        if settings.jobs == "procrastinate":
            from .procrastinate_runner import ProcrastinateQueue

            assert isinstance(queue, ProcrastinateQueue)
            await queue.start_worker()
        else:
            await queue.start()
        if endpoint is not None:
            await endpoint.start()
            log.info("worker metrics at %s/metrics", endpoint.url)
            if on_metrics is not None:
                on_metrics(endpoint.url)
        runtime.settle_heap()  # as `calsync serve`: full collections skip start-up's objects
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if not queue.healthy():
                log.error("the job runner stopped unexpectedly")
                break
    finally:
        runtime.thaw_heap()
        if endpoint is not None:
            await endpoint.stop()
        await queue.stop()
        await google.aclose()
        await http.aclose()
        await db.dispose()
