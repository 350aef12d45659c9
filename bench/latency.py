"""Push latency: a change made in Google (the emulator) → visible through calsync's CRM API;
with `--direction crm`, a CRM entry made through the API → written to Google.

Sets up N connected bindings (default 1,000: accounts in the emulator, tokens issued by its
control API and stored as the connections' tokens, a first sync, a push channel each), then makes
M changes (default 200) one after another, each an events.insert on a random binding's calendar,
and times until GET /api/v1/activities?owner=... lists it. Nothing asks for a sync: the path is
emulator → push notification → /webhooks/google → job runner → engine → database → API.

Every part runs as its own process, as in a deployment: the emulator (`python -m
gcal_emulator`, standing in for Google), calsync (`calsync serve`) and, for procrastinate, two
`calsync worker`s; this process only prepares the database and measures. (Running the emulator
and calsync in this process as threads made them share one interpreter lock and measured that
contention, not calsync.) The measurement starts once no sync is running or queued.

`--direction crm` creates M CRM entries instead (POST /api/v1/activities, a random owner each)
and times until the emulator's request log (read through its control API) shows the insert in
the owner's calendar: the CRM-change debounce (CALSYNC_CHANGE_DEBOUNCE_SECONDS, 1 s of quiet)
plus the push's run. `--google-latency-ms N` makes the emulator answer every Google request N ms
late once the set-up is done (`POST /emulator/v1/latency`; Google takes 100-300 ms a request, the
emulator about 1 ms), so a run's round trips to Google count as they would in production; the
control API, which measures, is not slowed.

Runners: `embedded` (the in-process runner inside the web process, SQLite) and `procrastinate`
(PostgreSQL: the web process only enqueues, 2 `calsync worker` processes sync), the latter when
--postgres-url (or CALSYNC_TEST_POSTGRES_URL) is given. Prints p50/p90/p99/max and the sync runs
made during the measurement by trigger (polls there would mean the safety net got in the way).

  uv run python bench/latency.py [--bindings 1000] [--changes 200] [--runner embedded|procrastinate|both]
      [--direction google|crm] [--google-latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pydantic import SecretStr
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from calsync.google.calendar import make_http_client
from calsync.settings import Settings
from calsync.store import apikeys, bindings, connections, crypto, tenants, users
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import CalendarBinding, SyncRun
from calsync.sync.channels.kinds import EVENTS, EVENTS_TWIN
from calsync.sync.channels.service import Channels
from calsync.sync.engine import sync_binding
from calsync.sync.tokens import GoogleAccess

CLIENT_ID = "bench.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-bench"
EMULATOR_FLAGS = ("--allow-http-webhooks", "--log-level", "warning")
POLL_API_SECONDS = 0.01  # how often the measuring client asks the CRM API


@dataclass
class Setup:
    db: Database
    settings: Settings
    admin_key: str
    owners: list[tuple[uuid.UUID, str, str]]  # user id, email, emulator access token


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    emu_url: str, database_url: str, webhook: str, n: int, jobs: str, key: str, concurrency: int
) -> tuple[Setup, list[uuid.UUID]]:
    settings = Settings(
        database_url=database_url,
        secret_key=SecretStr(key),
        mode="production",
        public_url=webhook.rsplit("/webhooks", 1)[0],
        google_emulator_url=emu_url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr(CLIENT_SECRET),
        google_requests_per_minute=0,
        jobs=jobs,  # type: ignore[arg-type]
        jobs_concurrency=concurrency,
    )
    db = Database(database_url)
    await upgrade(db)
    if jobs == "procrastinate":
        from calsync.jobs.worker import migrate_jobs

        await migrate_jobs(db)
    http = httpx.AsyncClient(base_url=emu_url, timeout=30)
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
    emails = [f"u{i}@bench.example" for i in range(n)]
    for email, (user_id, binding_id, token) in zip(
        emails,
        await connect_accounts(http, db, tenant.id, emails, token_seconds=86400),
        strict=True,
    ):
        owners.append((user_id, email, token))
        binding_ids.append(binding_id)
    await http.aclose()
    return Setup(db, settings, admin_key, owners), binding_ids


async def connect_accounts(
    http: httpx.AsyncClient,
    db: Database,
    tenant_id: uuid.UUID,
    emails: Sequence[str],
    *,
    token_seconds: int,
    chunk: int = 1000,
    **binding: Any,
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """Google accounts in the emulator, each with an access token (`http`: the emulator's;
    `chunk` accounts a control request), and in calsync for each its user, its connection and
    a binding of its primary calendar (`binding`: bindings.create's options), made by the
    store's own repositories, `chunk` calendars a transaction; returns (user id, binding id,
    access token) per e-mail, in order. One writer at a time: SQLite's deferred transactions
    that read before they write cannot wait for each other ("database is locked")."""
    made: list[tuple[uuid.UUID, uuid.UUID, str]] = []
    for at in range(0, len(emails), chunk):
        part = emails[at : at + chunk]
        seeded = await http.post(
            "/emulator/v1/accounts/batch",
            json={
                "accounts": [{"email": email} for email in part],
                "token": {"expires_in": token_seconds},
            },
        )
        seeded.raise_for_status()
        tokens = [str(item["access_token"]) for item in seeded.json()["items"]]
        # an hour early: the engine never refreshes (the refresh token is a placeholder)
        expires = datetime.now(UTC) + timedelta(seconds=token_seconds - 3600)
        async with db.session() as s:
            for email, token in zip(part, tokens, strict=True):
                user = await users.create(s, tenant_id, email)
                conn = await connections.create(
                    s,
                    tenant_id,
                    user.id,
                    google_email=email,
                    refresh_token="bench-no-refresh",
                    access_token=token,
                    access_token_expires_at=expires,
                )
                b = await bindings.create(s, tenant_id, conn.id, email, summary=email, **binding)
                made.append((user.id, b.id, token))
            await s.commit()
    return made


async def first_syncs(setup: Setup, binding_ids: list[uuid.UUID]) -> GoogleAccess:
    """Every binding's first sync, from this process, before calsync starts: the measured
    process then starts as a deployment that has been running for a while."""
    access = GoogleAccess(setup.settings, http=make_http_client(setup.settings))
    sem = asyncio.Semaphore(16)

    async def one(binding_id: uuid.UUID) -> None:
        async with sem:
            await sync_binding(setup.db, binding_id, access, trigger="initial")

    await asyncio.gather(*(one(b) for b in binding_ids))
    return access


async def watch_all(setup: Setup, access: GoogleAccess, binding_ids: list[uuid.UUID]) -> None:
    """Push channels per binding, pointed at the running calsync (which gets their `sync`
    messages): the first and, as connecting makes them (CALSYNC_PUSH_CHANNELS_PER_CALENDAR=2,
    the default), its twin. calsync's own renewal tick may have watched some first: the same
    channels either way."""
    service = Channels(setup.db, access, setup.settings)
    sem = asyncio.Semaphore(16)
    kinds = [EVENTS, EVENTS_TWIN] if EVENTS_TWIN.enabled(setup.settings) else [EVENTS]

    async def one(binding_id: uuid.UUID) -> None:
        async with sem:
            for kind in kinds:
                await service.watch(binding_id, kind)

    await asyncio.gather(*(one(b) for b in binding_ids))
    async with setup.db.session() as s:
        unwatched = await s.scalar(
            select(func.count())
            .select_from(CalendarBinding)
            .where(CalendarBinding.id.in_(binding_ids), CalendarBinding.channel_id.is_(None))
        )
    assert unwatched == 0, f"{unwatched} bindings have no push channel"


async def settle(setup: Setup, runner: str, limit: float = 300.0) -> None:
    """Wait until no sync is running or queued, twice in a row one second apart, so the
    measurement starts from a quiet system rather than the tail of the set-up."""
    quiet = 0
    deadline = time.monotonic() + limit
    while quiet < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("calsync never settled")
        async with setup.db.session() as s:
            busy = await s.scalar(
                select(func.count()).select_from(SyncRun).where(SyncRun.outcome == "running")
            )
            if runner == "procrastinate":
                busy = (busy or 0) + (
                    await s.scalar(
                        text(
                            "SELECT count(*) FROM procrastinate_jobs"
                            " WHERE status IN ('todo', 'doing')"
                        )
                    )
                    or 0
                )
        quiet = quiet + 1 if not busy else 0
        await asyncio.sleep(1)


async def measure(base: str, setup: Setup, emu_url: str, changes: int) -> list[float]:
    rng = random.Random(7)
    out: list[float] = []
    headers = {"Authorization": f"Bearer {setup.admin_key}"}
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(changes):
            user_id, email, token = rng.choice(setup.owners)
            subject = f"change {i} {uuid.uuid4().hex[:6]}"
            t0 = await insert_in_google(http, emu_url, email, token, subject, day=1 + i % 20)

            async def listed(user_id: uuid.UUID = user_id, subject: str = subject) -> bool:
                got = await http.get(
                    f"{base}/api/v1/activities", params={"owner": str(user_id)}, headers=headers
                )
                return any(a["subject"] == subject for a in got.json()["activities"])

            out.append(await arrived(listed, t0, f"{subject} never arrived"))
    return out


async def arrived(seen: Callable[[], Awaitable[bool]], t0: float, never: str) -> float:
    """Seconds from `t0` (time.perf_counter()) until `seen()` says so, asked every
    POLL_API_SECONDS; raises with `never` after 30 s."""
    while not await seen():
        if time.perf_counter() - t0 > 30:
            raise RuntimeError(never)
        await asyncio.sleep(POLL_API_SECONDS)
    return time.perf_counter() - t0


async def measure_crm(base: str, setup: Setup, emu_url: str, changes: int) -> list[float]:
    """Each CRM entry from just before its POST until the emulator logged its insert (one
    change at a time, so each push is alone: the debounce's 1 s of quiet, then the run)."""
    rng = random.Random(7)
    out: list[float] = []
    headers = {"Authorization": f"Bearer {setup.admin_key}"}
    requests = f"{emu_url}/emulator/v1/requests"
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(changes):
            user_id, email, _ = rng.choice(setup.owners)
            seq = (await http.get(requests, params={"after": 2**62})).json()["last_seq"]
            start = (datetime.now(UTC) + timedelta(days=1 + i % 20)).replace(microsecond=0)
            t0 = time.perf_counter()
            resp = await http.post(
                f"{base}/api/v1/activities",
                headers=headers,
                json={
                    "owner_id": str(user_id),
                    "subject": f"crm change {i}",
                    "start": start.isoformat(),
                    "end": (start + timedelta(hours=1)).isoformat(),
                    "time_zone": "UTC",
                },
            )
            resp.raise_for_status()

            async def inserted(email: str = email, seq: int = seq) -> bool:
                log = (await http.get(requests, params={"after": seq})).json()["items"]
                return any(
                    r["account"] == email
                    and r["method"] == "POST"
                    and r["path"].endswith("/events")
                    for r in log
                )

            out.append(await arrived(inserted, t0, f"crm change {i} never reached Google"))
    return out


async def insert_in_google(
    http: httpx.AsyncClient, emu_url: str, email: str, token: str, subject: str, *, day: int
) -> float:
    """An hour-long event made in Google (the emulator) by its owner, `day` days ahead;
    returns time.perf_counter() from just before the request (a change's start)."""
    start = (datetime.now(UTC) + timedelta(days=day)).replace(microsecond=0)
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
    return t0


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited: see {log}")
            try:
                await http.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


async def start_emulator(port: int, log: Path) -> subprocess.Popen[bytes]:
    """The emulator as its own process, answering."""
    args = [sys.executable, "-m", "gcal_emulator", "--port", str(port), *EMULATOR_FLAGS]
    emu = spawn(args, dict(os.environ), log)
    try:
        await wait_up(f"http://127.0.0.1:{port}/.well-known/openid-configuration", emu, log)
    except BaseException:
        stop_all([emu])
        raise
    return emu


def calsync_env(
    database_url: str, key: str, base: str, emu_url: str, **extra: str
) -> dict[str, str]:
    """The environment of a benchmarked `calsync serve`/`worker`: production mode against the
    emulator, Google's rate limit off (the emulator has none), quiet logs; `extra` adds
    CALSYNC_* settings (e.g. CALSYNC_JOBS="procrastinate")."""
    return {
        **os.environ,
        "CALSYNC_DATABASE_URL": database_url,
        "CALSYNC_SECRET_KEY": key,
        "CALSYNC_MODE": "production",
        "CALSYNC_PUBLIC_URL": base,
        "CALSYNC_GOOGLE_EMULATOR_URL": emu_url,
        "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID,
        "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "CALSYNC_GOOGLE_REQUESTS_PER_MINUTE": "0",
        "CALSYNC_LOG_LEVEL": "WARNING",
        **extra,
    }


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the processes, the last started first; kill one that does not stop in 30 s."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@dataclass
class Result:
    latencies: list[float]
    runs: dict[str, int]  # sync runs during the measurement, by trigger


async def run(
    runner: str,
    n: int,
    changes: int,
    pg_url: str | None,
    concurrency: int,
    direction: str = "google",
    google_latency_ms: int = 0,
) -> Result:
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
    emu_port, port = free_port(), free_port()
    emu_url, base = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp / "processes.log"
    try:
        procs.append(await start_emulator(emu_port, log))
        setup, binding_ids = await prepare(
            emu_url, database_url, f"{base}/webhooks/google", n, jobs, key, concurrency
        )
        t = time.perf_counter()
        access = await first_syncs(setup, binding_ids)
        env = calsync_env(
            database_url,
            key,
            base,
            emu_url,
            CALSYNC_JOBS=jobs,
            CALSYNC_JOBS_CONCURRENCY=str(concurrency),
        )
        web = spawn(
            [str(bin_dir / "calsync"), "serve", "--port", str(port), "--no-migrate"], env, log
        )
        procs.append(web)
        if runner == "procrastinate":
            procs += [spawn([str(bin_dir / "calsync"), "worker"], env, log) for _ in range(2)]
        await wait_up(f"{base}/healthz", web, log)
        await watch_all(setup, access, binding_ids)
        await access.aclose()
        if access.http is not None:  # ours (first_syncs), not closed by the access
            await access.http.aclose()
        await settle(setup, runner)
        print(
            f"  {runner}: {n} bindings synced, watched and settled in {time.perf_counter() - t:.1f} s"
        )
        if google_latency_ms:
            async with httpx.AsyncClient(timeout=10) as http:
                resp = await http.post(
                    f"{emu_url}/emulator/v1/latency", json={"ms": google_latency_ms}
                )
                resp.raise_for_status()
        since = datetime.now(UTC)
        measured = measure_crm if direction == "crm" else measure
        latencies = await measured(base, setup, emu_url, changes)
        async with setup.db.session() as s:
            rows = await s.execute(
                select(SyncRun.trigger, func.count())
                .where(SyncRun.started_at >= since)
                .group_by(SyncRun.trigger)
            )
            runs = {str(trigger): int(count) for trigger, count in rows.all()}
        await setup.db.dispose()
        return Result(latencies, runs)
    finally:
        stop_all(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bindings", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--runner", choices=["embedded", "procrastinate", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=4, help="CALSYNC_JOBS_CONCURRENCY")
    parser.add_argument("--postgres-url", default=os.environ.get("CALSYNC_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--direction",
        choices=["google", "crm"],
        default="google",
        help="google: a change made in Google → the CRM API; crm: a CRM entry → Google",
    )
    parser.add_argument(
        "--google-latency-ms",
        type=int,
        default=0,
        help="the emulator answers each Google request this much later (after the set-up)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    runners = ["embedded", "procrastinate"] if args.runner == "both" else [args.runner]
    if "procrastinate" in runners and not args.postgres_url:
        print("procrastinate skipped: no --postgres-url / CALSYNC_TEST_POSTGRES_URL")
        runners.remove("procrastinate")
    rows = []
    for runner in runners:
        result = asyncio.run(
            run(
                runner,
                args.bindings,
                args.changes,
                args.postgres_url,
                args.concurrency,
                args.direction,
                args.google_latency_ms,
            )
        )
        rows.append((runner, result))
    print()
    what = (
        "CRM entry → written to Google"
        if args.direction == "crm"
        else "change in Google → visible via the CRM API"
    )
    print(
        f"{what} ({args.bindings} bindings, {args.changes} changes, concurrency"
        f" {args.concurrency}, Google answers {args.google_latency_ms} ms late)"
    )
    print(f"{'runner':<26}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}  runs by trigger")
    for runner, result in rows:
        lat = result.latencies
        label = runner if runner == "embedded" else "procrastinate, 2 workers"
        runs = ", ".join(f"{k} {v}" for k, v in sorted(result.runs.items()))
        print(
            f"{label:<26}{pct(lat, 50) * 1000:>8.0f}{pct(lat, 90) * 1000:>8.0f}"
            f"{pct(lat, 99) * 1000:>8.0f}{max(lat) * 1000:>8.0f}  {runs}"
        )


if __name__ == "__main__":
    main()
