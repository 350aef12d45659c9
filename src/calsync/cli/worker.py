"""`calsync worker`: the command that runs sync jobs until SIGTERM (jobs/worker.py runs them;
this is only its command line — options, logging, the keyring, exit codes)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer

from calsync import runtime
from calsync.domain.activity import zone_names
from calsync.jobs.postgres_url import NeedsPostgres
from calsync.jobs.worker import MetricsPortError, serve_jobs
from calsync.obs import setup as setup_logging
from calsync.settings import get_settings
from calsync.store import crypto
from calsync.store.bootstrap import keyring_for


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
    flight get CALSYNC_SHUTDOWN_GRACE_SECONDS to finish. Polls and syncs respect Google's
    request budget shared by every process (CALSYNC_GOOGLE_BUDGET_PER_MINUTE, _PER_DAY,
    _POLL_SHARE; docs/deploy.md, "Jobs")."""
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
    runtime.start_process(zone_names)  # the first sync finds the TLS context and zones made
    try:
        crypto.install(keyring_for(settings))
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
        runtime.run(main())
    except (NeedsPostgres, MetricsPortError) as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from exc


def register(app: typer.Typer) -> None:
    """Add `calsync worker` to the `calsync` Typer app."""
    app.command()(worker)
