"""Job runner fixtures: a connected user (real OAuth against the emulator) with as many
bindings as a test needs, both runners built the same way, and `calsync worker` subprocesses.

Runners: "inprocess" on SQLite and PostgreSQL; "procrastinate" on PostgreSQL only (when
CALSYNC_TEST_POSTGRES_URL is set, as in CI)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.polling import PollPolicy
from calsync.jobs.procrastinate_runner import ProcrastinateQueue, apply_schema
from calsync.settings import Settings
from calsync.store import bindings, crypto
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import SyncRun
from tests.calsync.conftest import BACKENDS, fresh_url
from tests.calsync.google.conftest import CLIENT_ID, CLIENT_SECRET
from tests.conftest import Emulator
from tests.sync.conftest import (  # noqa: F401  (fixtures reused)
    Harness,
    at,
    keyring,
    oauth_flow,
    sync_settings,
)

PG = bool(os.environ.get("CALSYNC_TEST_POSTGRES_URL"))
RUNNERS = ["inprocess"] + (["procrastinate"] if PG else [])
# short enough that tests stay quick, long enough that a loaded CI machine (two SQLite writers,
# many bindings, the rest of the suite alongside) renews it in time: at 2 s a renewal starved by
# SQLite's writer lock let a second worker start a binding the first was still finishing (CI,
# 2026-12-03). Dead holders on this machine are taken over at once (sync.owner), not by expiry.
LOCK_TTL = timedelta(seconds=6)


COMBOS = [(b, k) for b in BACKENDS for k in RUNNERS if k == "inprocess" or b == "postgres"]


@pytest.fixture(params=COMBOS, ids=[f"{b}-{k}" for b, k in COMBOS])
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    backend, kind = request.param
    return str(backend), str(kind)


@pytest.fixture
def kind(combo: tuple[str, str]) -> str:
    return combo[1]


@pytest.fixture
async def db_url(
    combo: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A fresh, migrated database per test: worker processes and pollers see every binding
    in their database, so no test may see another's."""
    backend = combo[0]
    url = fresh_url(backend, tmp_path_factory, f"jobs_{uuid.uuid4().hex[:10]}")
    database = Database(url, pooled=False)
    await upgrade(database)
    await database.dispose()
    yield url
    if backend == "postgres":
        name = make_url(url).database
        admin = make_url(os.environ["CALSYNC_TEST_POSTGRES_URL"])
        admin_info = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin_info, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(db_url: str, keyring: crypto.Keyring) -> AsyncIterator[Database]:  # noqa: F811
    crypto.install(keyring)
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def secret() -> str:
    """A key the test and its worker subprocesses share (the session keyring is random)."""
    return crypto.generate_key()


@pytest.fixture
async def h(
    emulator: Emulator,
    db: Database,
    sync_settings: Settings,  # noqa: F811
    oauth_flow: Any,  # noqa: F811
    secret: str,
    keyring: crypto.Keyring,  # noqa: F811
) -> AsyncIterator[Harness]:
    crypto.install(crypto.Keyring([secret]))
    harness = Harness(emulator, db, sync_settings, oauth_flow)
    await harness.setup()
    yield harness
    await harness.aclose()
    crypto.install(keyring)


async def add_bindings(h: Harness, n: int, *, event: bool = True) -> list[uuid.UUID]:
    """`n` more calendars of the same account, each bound import-only (and with one event)."""
    ids: list[uuid.UUID] = []
    for i in range(n):
        cal = h.emu.control(
            "POST", f"/accounts/{h.email}/calendars", {"summary": f"Team {i}"}
        ).json()["id"]
        async with h.db.session() as s:
            b = await bindings.create(
                s, h.tenant_id, h.connection_id, cal, role="import", direction="google_to_crm"
            )
            await s.commit()
        ids.append(b.id)
        if event:
            body = {
                "summary": f"Event {i}",
                "start": {"dateTime": at(2, 9).isoformat(), "timeZone": "Europe/Oslo"},
                "end": {"dateTime": at(2, 10).isoformat(), "timeZone": "Europe/Oslo"},
            }
            await h.person.insert_event(cal, body)
    return ids


async def runs_of(db: Database, binding_ids: list[uuid.UUID]) -> list[SyncRun]:
    async with db.session() as s:
        rows = await s.scalars(
            select(SyncRun).where(SyncRun.binding_id.in_(binding_ids)).order_by(SyncRun.started_at)
        )
        return list(rows.all())


def assert_never_concurrent(runs: list[SyncRun]) -> None:
    by_binding: dict[uuid.UUID, list[SyncRun]] = {}
    for run in runs:
        by_binding.setdefault(run.binding_id, []).append(run)
    for binding_id, items in by_binding.items():
        items.sort(key=lambda r: r.started_at)
        for before, after in itertools.pairwise(items):
            assert before.finished_at is not None, (binding_id, before.outcome)
            assert before.finished_at <= after.started_at, f"overlapping runs of {binding_id}"


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float = 60.0, every: float = 0.1
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(every)


@pytest.fixture
async def make_runner(
    kind: str,
    db: Database,
    db_url: str,
    h: Harness,
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Build (not start) a runner of the test's kind with short timeouts and no ticks."""
    made: list[Any] = []
    if kind == "procrastinate":
        await apply_schema(db_url)

    async def build(**options: Any) -> Any:
        common: dict[str, Any] = {
            "concurrency": 4,
            "lock_ttl": LOCK_TTL,
            "grace": 10.0,
            "busy_retry": 0.3,
            "poll_policy": PollPolicy(claim_hold=timedelta(seconds=60)),
            "poll_every": None,
            "stuck_every": None,
        }
        common.update(options)
        runner: Any
        if kind == "procrastinate":
            runner = ProcrastinateQueue(
                db_url, db, h.google, heartbeat=0.5, stalled_after=2.0, **common
            )
        else:
            runner = InProcessRunner(db, h.google, **common)
        made.append(runner)
        return runner

    yield build
    for runner in made:
        await runner.stop()


async def start_running(runner: Any) -> None:
    """Start taking jobs in this event loop (the procrastinate runner as a worker)."""
    if isinstance(runner, ProcrastinateQueue):
        await runner.start_worker()
    else:
        await runner.start()


# -- worker subprocesses ---------------------------------------------------------------------


def worker_env(h: Harness, db_url: str, secret: str, kind: str, **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    env.update(
        {
            "CALSYNC_DATABASE_URL": db_url,
            "CALSYNC_SECRET_KEY": secret,
            "CALSYNC_MODE": "production",
            "CALSYNC_GOOGLE_EMULATOR_URL": h.emu.url,
            "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID,
            "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
            "CALSYNC_GOOGLE_REQUESTS_PER_MINUTE": "0",
            "CALSYNC_GOOGLE_MAX_ATTEMPTS": "3",
            "CALSYNC_JOBS": kind,
            "CALSYNC_JOBS_CONCURRENCY": "4",
            "CALSYNC_LOCK_TIMEOUT_SECONDS": str(LOCK_TTL.total_seconds()),
            "CALSYNC_POLL_TICK_SECONDS": "0.5",
            "CALSYNC_STUCK_TICK_SECONDS": "0.5",
            "CALSYNC_BUSY_RETRY_SECONDS": "0.3",
            "CALSYNC_SHUTDOWN_GRACE_SECONDS": "20",
            "CALSYNC_WORKER_HEARTBEAT_SECONDS": "0.5",
            "CALSYNC_WORKER_STALLED_SECONDS": "2",
            "CALSYNC_LOG_LEVEL": "WARNING",
        }
    )
    env.update({f"CALSYNC_{k.upper()}": str(v) for k, v in extra.items()})
    return env


class Workers:
    """`calsync worker` processes started by a test, killed at its end whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from calsync.cli import main; main()", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers()
    yield w
    w.cleanup()
