"""`calsync worker`: run sync jobs until SIGTERM, then let the syncs in flight finish.

With CALSYNC_JOBS=procrastinate (PostgreSQL) any number of workers share the jobs; with the
in-process runner a worker is a web-less process that polls and syncs (several may share one
database: the engine's lock and the poll claims keep them apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import typer

from calsync.settings import Settings, get_settings
from calsync.store import crypto
from calsync.store.db import Database
from calsync.sync.tokens import GoogleAccess

from .factory import make_job_queue
from .procrastinate_runner import NeedsPostgres, ProcrastinateQueue, apply_schema

log = logging.getLogger(__name__)


async def migrate_jobs(db: Database) -> bool:
    """Apply procrastinate's schema when the database is PostgreSQL (idempotent)."""
    if db.dialect != "postgresql":
        return False
    return await apply_schema(db.url)


async def serve_jobs(settings: Settings, stop: asyncio.Event) -> None:
    """Run the configured runner as a worker until `stop` is set."""
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    google = GoogleAccess(settings)
    queue = make_job_queue(settings, db, google)
    try:
        if isinstance(queue, ProcrastinateQueue):
            await queue.start_worker()
        else:
            await queue.start()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if not queue.healthy():
                log.error("the job runner stopped unexpectedly")
                break
    finally:
        await queue.stop()
        await google.aclose()
        await db.dispose()


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        concurrency: Annotated[
            int | None,
            typer.Option(help="Syncs at once (default CALSYNC_JOBS_CONCURRENCY)."),
        ] = None,
    ) -> None:
        """Run sync jobs (polling, webhooks, CRM changes, Sync now) until SIGTERM; syncs in
        flight get CALSYNC_SHUTDOWN_GRACE_SECONDS to finish."""
        settings = get_settings()
        if concurrency is not None:
            settings = settings.model_copy(update={"jobs_concurrency": concurrency})
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
        except NeedsPostgres as exc:
            typer.secho(str(exc), err=True, fg=typer.colors.RED)
            raise typer.Exit(code=1) from exc
