"""`calsync worker --metrics-port`: workers run the syncs, so their process-local series (Google
requests by status) are scraped from the worker itself, beside the database-backed ones."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import socket

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from calsync.cli import app
from calsync.jobs.procrastinate_runner import apply_schema
from calsync.jobs.worker import MetricsPortError, serve_jobs
from calsync.settings import Settings
from calsync.store.db import Database
from tests.calsync.google.conftest import CLIENT_ID, CLIENT_SECRET
from tests.sync.conftest import Harness, at

from .conftest import LOCK_TTL, Workers, runs_of, wait_until, worker_env


def value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{series} missing from:\n{text}"
    return float(match.group(1))


def worker_settings(h: Harness, db_url: str, kind: str) -> Settings:
    return Settings(
        database_url=db_url,
        mode="production",
        google_emulator_url=h.emu.url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr(CLIENT_SECRET),
        google_requests_per_minute=0,
        google_max_attempts=3,
        jobs=kind,
        lock_timeout_seconds=LOCK_TTL.total_seconds(),
        poll_tick_seconds=0.5,
        stuck_tick_seconds=0.5,
        worker_heartbeat_seconds=0.5,
        worker_stalled_seconds=2,
        worker_metrics_port=0,  # any free port; serve_jobs reports where it listens
    )


async def test_worker_serves_its_google_requests_and_queue_depth(
    h: Harness, db: Database, db_url: str, kind: str
) -> None:
    if kind == "procrastinate":
        await apply_schema(db_url)
    await h.ginsert("Scraped", at(1, 9))
    stop = asyncio.Event()
    urls: list[str] = []
    gc.unfreeze()
    worker = asyncio.create_task(
        serve_jobs(worker_settings(h, db_url, kind), stop, on_metrics=urls.append)
    )
    try:

        async def synced() -> bool:
            if worker.done():
                worker.result()  # raise what stopped it
            return any(r.outcome == "ok" for r in await runs_of(db, [h.binding_id]))

        await wait_until(synced, within=60)
        assert len(urls) == 1 and urls[0].startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            health = await client.get("/healthz")
            resp = await client.get("/metrics")
            missing = await client.get("/docs")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        assert missing.status_code == 404
        text = resp.text
        # process-local: the worker's own Calendar calls, counted on its shared http client
        assert value(text, 'calsync_google_requests_total{status="200"}') >= 1
        assert value(text, "calsync_queue_depth") >= 0
        # database-backed, as every web process reports them
        runs = await runs_of(db, [h.binding_id])
        assert value(text, "calsync_google_requests_per_binding_per_day") == sum(
            r.google_requests for r in runs
        )
        assert value(text, 'calsync_syncs_total{outcome="ok"}') >= 1
        # started: its start-up objects are out of the collector's view (runtime.settle_heap)
        assert gc.get_freeze_count() > 10_000
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    assert gc.get_freeze_count() == 0  # and back in it once stopped


def test_worker_help_mentions_the_metrics_endpoint() -> None:
    result = CliRunner().invoke(app, ["worker", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--metrics-port" in result.output
    assert "--metrics-host" in result.output
    assert "CALSYNC_WORKER_METRICS_PORT" in result.output


async def test_worker_logs_its_metrics_url_as_json_and_stops_on_sigterm(
    h: Harness, db: Database, db_url: str, secret: str, kind: str, workers: Workers
) -> None:
    """Port 0: the worker says where it listens in its structured log; uvicorn must not take
    SIGTERM from the worker, which stops gracefully (exit 0)."""
    if kind == "procrastinate":
        await apply_schema(db_url)
    env = worker_env(h, db_url, secret, kind, worker_metrics_port=0, log_level="INFO")
    proc = workers.start(env)
    assert proc.stderr is not None
    url = None
    seen: list[str] = []
    while url is None:
        line = (await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 60)).decode()
        assert line, f"worker exited ({proc.poll()}):\n{''.join(seen)}"
        seen.append(line)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            found = re.fullmatch(
                r"worker metrics at (http://\S+)/metrics", json.loads(line)["event"]
            )
            url = found.group(1) if found else None
    drain = asyncio.create_task(asyncio.to_thread(proc.stderr.read))  # never block its logging
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert "calsync_google_requests_per_binding_per_day" in (await client.get("/metrics")).text
    assert workers.terminate(proc) == 0
    await drain


async def test_metrics_port_in_use_is_a_clear_error(
    h: Harness, db: Database, db_url: str, kind: str
) -> None:
    """A second worker on the same port: a message naming the port and the remedy, before any
    job is taken — not a traceback."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = worker_settings(h, db_url, kind).model_copy(update={"worker_metrics_port": port})
        with pytest.raises(MetricsPortError) as caught:
            await serve_jobs(settings, asyncio.Event())
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "--metrics-port" in message
    assert "Traceback" not in message
