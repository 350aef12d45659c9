"""Push latency: a change made in Google (the emulator) → visible through calsync's CRM API.

Sets up N connected bindings (default 1,000: accounts in the emulator, tokens issued by its
control API and stored as the connections' tokens, a first sync, a push channel each), then makes
M changes (default 200) one after another, each an events.insert on a random binding's calendar,
and times until GET /api/v1/activities?owner=... lists it. Nothing asks for a sync: the path is
emulator → push notification → /webhooks/google → job runner → engine → database → API.

Runners: `embedded` (the in-process runner inside the web process) and `procrastinate`
(PostgreSQL: the web process only enqueues, 2 `calsync worker` subprocesses sync), the latter
when --postgres-url (or CALSYNC_TEST_POSTGRES_URL) is given. Prints a table with p50/p99.

  uv run python bench/latency.py [--bindings 1000] [--changes 200] [--runner embedded|procrastinate|both]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from calsync.channels import Channels
from calsync.settings import Settings
from calsync.store import apikeys, bindings, connections, crypto, tenants, users
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import CalendarBinding
from calsync.sync.engine import sync_binding
from calsync.web.app import create_app
from gcal_emulator.server import EmulatorServer
from gcal_emulator.state import Config

CLIENT_ID = "bench.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-bench"


@dataclass
class Setup:
    db: Database
    settings: Settings
    admin_key: str
    owners: list[tuple[uuid.UUID, str, str]]  # user id, email, emulator access token


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def postgres_db(admin_url: str) -> str:
    name = f"calsync_bench_{os.getpid()}"
    admin = make_url(admin_url).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


async def prepare(
    emu: EmulatorServer, database_url: str, webhook: str, n: int, jobs: str, key: str
) -> tuple[Setup, list[uuid.UUID]]:
    settings = Settings(
        database_url=database_url,
        secret_key=SecretStr(key),
        mode="production",
        public_url=webhook.rsplit("/webhooks", 1)[0],
        google_emulator_url=emu.url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr(CLIENT_SECRET),
        google_requests_per_minute=0,
        jobs=jobs,  # type: ignore[arg-type]
        jobs_concurrency=16,
    )
    db = Database(database_url)
    await upgrade(db)
    if jobs == "procrastinate":
        from calsync.jobs.worker import migrate_jobs

        await migrate_jobs(db)
    http = httpx.AsyncClient(base_url=emu.url, timeout=30)
    await http.post(
        "/emulator/v1/oauth-clients",
        json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": []},
    )
    owners: list[tuple[uuid.UUID, str, str]] = []
    binding_ids: list[uuid.UUID] = []
    async with db.session() as s:
        tenant = await tenants.create(s, f"bench-{uuid.uuid4().hex[:8]}")
        _, admin_key = await apikeys.create(s, tenant.id)
        await s.commit()
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        email = f"u{i}@bench.example"
        async with sem:
            await http.post("/emulator/v1/accounts", json={"email": email})
            tok = (
                await http.post(f"/emulator/v1/accounts/{email}/tokens", json={"expires_in": 86400})
            ).json()
            async with db.session() as s:
                user = await users.create(s, tenant.id, email)
                conn = await connections.create(
                    s,
                    tenant.id,
                    user.id,
                    google_email=email,
                    refresh_token="bench-no-refresh",
                    access_token=tok["access_token"],
                    access_token_expires_at=datetime.now(UTC) + timedelta(hours=23),
                )
                b = await bindings.create(s, tenant.id, conn.id, email, summary=email)
                await s.commit()
            owners.append((user.id, email, tok["access_token"]))
            binding_ids.append(b.id)

    await asyncio.gather(*(one(i) for i in range(n)))
    await http.aclose()
    return Setup(db, settings, admin_key, owners), binding_ids


async def first_syncs_and_channels(setup: Setup, binding_ids: list[uuid.UUID], app: Any) -> None:
    access = app.state.google.access
    service = Channels(setup.db, access, setup.settings)
    sem = asyncio.Semaphore(16)

    async def one(binding_id: uuid.UUID) -> None:
        async with sem:
            await sync_binding(setup.db, binding_id, access, trigger="initial")
            # False when the app's own renewal tick watched this binding first: fine, one
            # channel either way (checked below)
            await service.watch(binding_id)

    await asyncio.gather(*(one(b) for b in binding_ids))
    async with setup.db.session() as s:
        unwatched = await s.scalar(
            select(func.count())
            .select_from(CalendarBinding)
            .where(CalendarBinding.id.in_(binding_ids), CalendarBinding.channel_id.is_(None))
        )
    assert unwatched == 0, f"{unwatched} bindings have no push channel"


async def measure(base: str, setup: Setup, emu_url: str, changes: int) -> list[float]:
    rng = random.Random(7)
    out: list[float] = []
    headers = {"Authorization": f"Bearer {setup.admin_key}"}
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(changes):
            user_id, email, token = rng.choice(setup.owners)
            subject = f"change {i} {uuid.uuid4().hex[:6]}"
            start = (datetime.now(UTC) + timedelta(days=1 + i % 20)).replace(microsecond=0)
            t0 = time.perf_counter()
            resp = await http.post(
                f"{emu_url}/calendar/v3/calendars/{email}/events",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "summary": subject,
                    "start": {"dateTime": start.isoformat()},
                    "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
                },
            )
            resp.raise_for_status()
            while True:
                got = await http.get(
                    f"{base}/api/v1/activities", params={"owner": str(user_id)}, headers=headers
                )
                if any(a["subject"] == subject for a in got.json()["activities"]):
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"{subject} never arrived")
                await asyncio.sleep(0.005)
            out.append(time.perf_counter() - t0)
    return out


async def run(runner: str, n: int, changes: int, pg_url: str | None) -> list[float]:
    key = crypto.generate_key()
    crypto.install(crypto.Keyring([key]))
    tmp = Path(tempfile.mkdtemp(prefix="calsync-bench-"))
    if runner == "procrastinate":
        assert pg_url
        database_url = postgres_db(pg_url)
        jobs = "procrastinate"
    else:
        database_url = f"sqlite+aiosqlite:///{tmp / 'calsync.db'}"
        jobs = "inprocess"
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    workers: list[subprocess.Popen[bytes]] = []
    with EmulatorServer(config=Config(allow_http_webhooks=True)) as emu:
        setup, binding_ids = await prepare(
            emu, database_url, f"{base}/webhooks/google", n, jobs, key
        )
        app = create_app(setup.settings, database=setup.db, keyring=crypto.Keyring([key]))
        server = uvicorn.Server(
            uvicorn.Config(app, lifespan="on", log_level="warning", log_config=None)
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        try:
            t = time.perf_counter()
            await first_syncs_and_channels(setup, binding_ids, app)
            print(f"  {runner}: {n} bindings synced and watched in {time.perf_counter() - t:.1f} s")
            if runner == "procrastinate":
                env = {
                    **os.environ,
                    "CALSYNC_DATABASE_URL": database_url,
                    "CALSYNC_SECRET_KEY": key,
                    "CALSYNC_MODE": "production",
                    "CALSYNC_JOBS": "procrastinate",
                    "CALSYNC_GOOGLE_EMULATOR_URL": emu.url,
                    "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID,
                    "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
                    "CALSYNC_GOOGLE_REQUESTS_PER_MINUTE": "0",
                    "CALSYNC_LOG_LEVEL": "WARNING",
                }
                exe = str(Path(sys.executable).parent / "calsync")
                workers = [
                    subprocess.Popen([exe, "worker"], env=env, stdout=subprocess.DEVNULL)  # noqa: ASYNC220
                    for _ in range(2)
                ]
                await asyncio.sleep(3)
            await asyncio.sleep(1)  # let the channels' `sync` messages pass
            return await measure(base, setup, emu.url, changes)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=30)
            server.should_exit = True
            await task
            await setup.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bindings", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--runner", choices=["embedded", "procrastinate", "both"], default="both")
    parser.add_argument("--postgres-url", default=os.environ.get("CALSYNC_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    runners = ["embedded", "procrastinate"] if args.runner == "both" else [args.runner]
    if "procrastinate" in runners and not args.postgres_url:
        print("procrastinate skipped: no --postgres-url / CALSYNC_TEST_POSTGRES_URL")
        runners.remove("procrastinate")
    rows = []
    for runner in runners:
        lat = asyncio.run(run(runner, args.bindings, args.changes, args.postgres_url))
        rows.append((runner, lat))
    print()
    print(
        f"change in Google → visible via the CRM API ({args.bindings} bindings, {args.changes} changes)"
    )
    print(f"{'runner':<26}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'max ms':>10}")
    for runner, lat in rows:
        label = runner if runner == "embedded" else "procrastinate, 2 workers"
        print(
            f"{label:<26}{pct(lat, 50) * 1000:>10.0f}{pct(lat, 99) * 1000:>10.0f}"
            f"{statistics.mean(lat) * 1000:>10.0f}{max(lat) * 1000:>10.0f}"
        )


if __name__ == "__main__":
    main()
