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
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from calsync.google.calendar import make_http_client
from calsync.obs import setup as setup_logging
from calsync.settings import Settings, get_settings
from calsync.store import crypto
from calsync.store.db import Database, private_dir
from calsync.sync.tokens import GoogleAccess

from . import metrics as metrics_endpoint
from .factory import make_job_queue
from .port import JobQueue
from .procrastinate_runner import NeedsPostgres, ProcrastinateQueue, apply_schema

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
    return await apply_schema(db.url)


async def serve_jobs(
    settings: Settings, stop: asyncio.Event, *, on_metrics: Callable[[str], Any] | None = None
) -> None:
    """Run the configured runner as a worker until `stop` is set; with
    CALSYNC_WORKER_METRICS_PORT also serve /metrics (`on_metrics` gets its base URL)."""
    if not settings.database_url:
        private_dir(settings.data_dir)
    db = Database(settings.effective_database_url)
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
        if isinstance(queue, ProcrastinateQueue):
            await queue.start_worker()
        else:
            await queue.start()
        if endpoint is not None:
            await endpoint.start()
            log.info("worker metrics at %s/metrics", endpoint.url)
            if on_metrics is not None:
                on_metrics(endpoint.url)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if not queue.healthy():
                log.error("the job runner stopped unexpectedly")
                break
    finally:
        if endpoint is not None:
            await endpoint.stop()
        await queue.stop()
        await google.aclose()
        await http.aclose()
        await db.dispose()


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        concurrency: Annotated[
            int | None,
            typer.Option(help="Syncs at once (default CALSYNC_JOBS_CONCURRENCY)."),
        ] = None,
        metrics_port: Annotated[
            int | None,
            typer.Option(
                help="Serve Prometheus /metrics and /healthz on this port (default "
                "CALSYNC_WORKER_METRICS_PORT; off when unset; 0 = any free port)."
            ),
        ] = None,
        metrics_host: Annotated[
            str | None,
            typer.Option(
                help="Address the metrics port listens on (default "
                "CALSYNC_WORKER_METRICS_HOST, 127.0.0.1)."
            ),
        ] = None,
    ) -> None:
        """Run sync jobs (polling, webhooks, CRM changes, Sync now) until SIGTERM; syncs in
        flight get CALSYNC_SHUTDOWN_GRACE_SECONDS to finish."""
        settings = get_settings()
        overrides: dict[str, Any] = {}
        if concurrency is not None:
            overrides["jobs_concurrency"] = concurrency
        if metrics_port is not None:
            overrides["worker_metrics_port"] = metrics_port
        if metrics_host is not None:
            overrides["worker_metrics_host"] = metrics_host
        if overrides:
            settings = settings.model_copy(update=overrides)
        # JSON lines with secrets redacted, as `calsync serve` writes them
        setup_logging(settings.log_level, settings.log_format)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        try:
            crypto.install(
                crypto.load_keyring(secret, sandbox=settings.sandbox, data_dir=settings.data_dir)
            )
        except crypto.SecretKeyError as exc:
            typer.secho(str(exc), err=True, fg=typer.colors.RED)
            raise typer.Exit(code=1) from exc

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await serve_jobs(settings, stop)

        try:
            asyncio.run(main())
        except (NeedsPostgres, MetricsPortError) as exc:
            typer.secho(str(exc), err=True, fg=typer.colors.RED)
            raise typer.Exit(code=1) from exc
