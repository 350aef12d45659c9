"""First import of a large calendar: calsync's engine against gcal_sync, same emulator.

    uv run python bench/import.py [--events 10000,50000] [--rounds 3] [--postgres URL]

For each size the parent starts one emulator and seeds one calendar. Each round runs calsync's
`sync_binding` (a first sync into a fresh SQLite database, and into a fresh PostgreSQL database
when `--postgres` is given or CALSYNC_TEST_POSTGRES_URL is set) and gcal_sync 8.x's
`CalendarEventSyncManager.run()` (a full sync into its in-memory store), alternating, each in
its own subprocess so peak memory (max RSS) is that tool's alone. Wall and CPU seconds cover
the sync itself (not the interpreter's start); `rss_start` is the child's RSS just before it,
so peak minus start is what the import itself needed. Google requests are counted in the
emulator's request log. Prints a table of medians and the ratio to gcal_sync.
`--profile FILE` writes a cProfile of one calsync child (pstats) to see where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ACCOUNT = "bench@example.com"
ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries it across execve, so a child
    started by the parent (which holds the seeded emulator) would report the parent's peak.
    VmHWM belongs to the memory map exec created."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


PROFILE: Any = None  # a cProfile.Profile in a child run with --profile

# -- children ---------------------------------------------------------------------------------------


async def run_calsync(url: str, token: str, database: str) -> dict[str, Any]:
    from pydantic import SecretStr

    from calsync import runtime
    from calsync.domain.activity import zone_names
    from calsync.google.retry import RetryPolicy
    from calsync.settings import Settings
    from calsync.store import bindings, connections, crypto, tenants, users
    from calsync.store.db import Database
    from calsync.sync.engine import sync_binding
    from calsync.sync.tokens import GoogleAccess

    runtime.start_process(zone_names)  # as `calsync serve`, `worker` and `sync` start
    crypto.install(crypto.Keyring([crypto.generate_key()]))
    db = Database(database)  # migrated by the "migrate" child: alembic is not the import's
    async with db.session() as s:
        tenant = await tenants.create(s, "bench")
        user = await users.create(s, tenant.id, ACCOUNT)
        conn = await connections.create(
            s,
            tenant.id,
            user.id,
            google_email=ACCOUNT,
            refresh_token="unused",
            access_token=token,
            access_token_expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        binding = await bindings.create(s, tenant.id, conn.id, ACCOUNT, role="both")
        await s.commit()
    settings = Settings(
        google_emulator_url=url,
        google_client_id="bench.apps.googleusercontent.com",
        google_client_secret=SecretStr("bench"),
        google_requests_per_minute=0,
        google_timeout_seconds=60,
    )
    google = GoogleAccess(settings, retry=RetryPolicy(max_attempts=3), rate_limiter=None)
    rss_start = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    if PROFILE is not None:
        PROFILE.enable()
    result = await sync_binding(db, binding.id, google, trigger="initial")
    if PROFILE is not None:
        PROFILE.disable()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await google.aclose()
    await db.dispose()
    assert result.ok, result
    return {
        "seconds": seconds,
        "cpu": cpu,
        "items": result.counts.get("created", 0),
        "rss_mb": peak_rss_mb(),
        "rss_start": rss_start,
    }


async def run_gcal_sync(url: str, token: str) -> dict[str, Any]:
    import aiohttp
    from gcal_sync.api import GoogleCalendarService
    from gcal_sync.auth import AbstractAuth
    from gcal_sync.store import InMemoryCalendarStore
    from gcal_sync.sync import CalendarEventSyncManager

    class Auth(AbstractAuth):
        async def async_get_access_token(self) -> str:
            return token

    rss_start = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    async with aiohttp.ClientSession() as session:
        api = GoogleCalendarService(Auth(session, f"{url}/calendar/v3"))
        store = InMemoryCalendarStore()
        await CalendarEventSyncManager(api, calendar_id=ACCOUNT, store=store).run()
        data = await store.async_load() or {}
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    items = len(data.get("event_sync", {}).get(ACCOUNT, {}).get("items", {}))
    return {
        "seconds": seconds,
        "cpu": cpu,
        "items": items,
        "rss_mb": peak_rss_mb(),
        "rss_start": rss_start,
    }


async def run_migrate(database: str) -> dict[str, Any]:
    from calsync.store.db import Database
    from calsync.store.migrate import upgrade

    db = Database(database)
    await upgrade(db)
    await db.dispose()
    return {}


def child(args: argparse.Namespace) -> None:
    if args.child == "migrate":
        print(json.dumps(asyncio.run(run_migrate(args.database))))
        return
    if args.child == "calsync" and args.profile:
        import cProfile

        global PROFILE
        PROFILE = cProfile.Profile()  # the timed import only, not the child's start
        out = asyncio.run(run_calsync(args.url, args.token, args.database))
        PROFILE.dump_stats(args.profile)
    elif args.child == "calsync":
        out = asyncio.run(run_calsync(args.url, args.token, args.database))
    else:
        out = asyncio.run(run_gcal_sync(args.url, args.token))
    print(json.dumps(out))


# -- parent ---------------------------------------------------------------------------------------


async def seed(url: str, token: str, n: int) -> None:
    from calsync.google import calls
    from calsync.google.auth import StaticToken
    from calsync.google.calendar import CalendarClient
    from calsync.settings import Settings

    settings = Settings(google_emulator_url=url, google_requests_per_minute=0)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=20)
    async with CalendarClient(StaticToken(token, ACCOUNT), settings=settings) as client:
        inserts = [
            calls.events_insert(
                ACCOUNT,
                {
                    "summary": f"Appointment {i}",
                    "description": "Agenda: numbers, plans and next steps.",
                    "location": "Room 4",
                    "start": {
                        "dateTime": (start + timedelta(hours=i)).isoformat(),
                        "timeZone": "Europe/Oslo",
                    },
                    "end": {
                        "dateTime": (start + timedelta(hours=i, minutes=45)).isoformat(),
                        "timeZone": "Europe/Oslo",
                    },
                },
            )
            for i in range(n)
        ]
        results = await client.batch(inserts, chunk_size=1000)
        failed = [r for r in results if isinstance(r, Exception)]
        assert not failed, failed[:3]


def last_seq(http: httpx.Client) -> int:
    return int(http.get("/emulator/v1/requests?after=999999999").json()["last_seq"])


def requests_since(http: httpx.Client, mark: int) -> int:
    items = http.get(f"/emulator/v1/requests?after={mark}").json()["items"]
    return sum(1 for item in items if not str(item["path"]).startswith("/emulator"))


def postgres_database(admin_url: str, name: str) -> str:
    """A fresh database on the server of `admin_url`; returns its asyncpg URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    with psycopg.connect(
        admin.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


KEYS = ("seconds", "cpu", "requests", "rss_mb", "rss_start")


def one_size(args: argparse.Namespace, events: int) -> dict[str, dict[str, float]]:
    import tempfile

    from gcal_emulator.server import EmulatorServer

    runners = ["calsync"] + (["calsync-pg"] if args.postgres else []) + ["gcal_sync"]
    with EmulatorServer() as server, tempfile.TemporaryDirectory() as workdir:
        http = httpx.Client(base_url=server.url, timeout=60)
        http.post("/emulator/v1/accounts", json={"email": ACCOUNT}).raise_for_status()
        http.post("/emulator/v1/quotas", json={"enabled": False})
        token = http.post(
            f"/emulator/v1/accounts/{ACCOUNT}/tokens", json={"expires_in": 36000}
        ).json()["access_token"]
        asyncio.run(seed(server.url, token, events))
        if args.google_latency_ms:  # after the seeding: every Google request from here on
            http.post("/emulator/v1/latency", json={"ms": args.google_latency_ms})
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
        for round_ in range(args.rounds):
            for name in runners:
                mark = last_seq(http)
                cmd = [sys.executable, __file__, "--url", server.url, "--token", token]
                cmd += ["--child", "gcal_sync" if name == "gcal_sync" else "calsync"]
                database = None
                if name == "calsync-pg":
                    database = f"calsync_bench_import_{os.getpid()}_{round_}"
                    url = postgres_database(args.postgres, database)
                else:
                    url = f"sqlite+aiosqlite:///{workdir}/calsync-{uuid.uuid4().hex}.db"
                if name != "gcal_sync":
                    migrate = [sys.executable, __file__, "--child", "migrate", "--database", url]
                    subprocess.run(migrate, check=True, capture_output=True, cwd=ROOT)
                    cmd += ["--database", url]
                if name == "calsync" and args.profile and round_ == 0:
                    cmd += ["--profile", args.profile]
                started = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
                wall = time.perf_counter() - started
                if database is not None:
                    drop_postgres_database(args.postgres, database)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                out["requests"] = requests_since(http, mark)
                out["process_seconds"] = wall
                out["load"] = os.getloadavg()[0]
                rows[name].append(out)
                print(
                    f"  {events:>6} {name:<10} {out['seconds']:7.2f} s wall {out['cpu']:7.2f} s CPU"
                    f" {out['requests']:4d} requests {out['rss_mb']:7.1f} MB peak"
                    f" ({out['rss_start']:.1f} at start)  {out['items']} events"
                    f"  load {out['load']:.1f}",
                    flush=True,
                )
    out = {
        name: {k: statistics.median(r[k] for r in runs) for k in KEYS}
        for name, runs in rows.items()
    }
    loads = [r["load"] for runs in rows.values() for r in runs]
    out["load"] = {"min": min(loads), "max": max(loads)}
    return out


def parent(args: argparse.Namespace) -> None:
    sizes = [int(n) for n in str(args.events).split(",") if n.strip()]
    results = {n: one_size(args, n) for n in sizes}
    for n, med in results.items():
        load = med.pop("load")
        print()
        print(
            f"First import of {n} events, {args.rounds} alternating rounds, Google answering "
            f"{args.google_latency_ms} ms late (medians; 1-minute load average "
            f"{load['min']:.1f}-{load['max']:.1f} after each run)"
        )
        names = list(med)
        header = "".join(f"{name:>12}" for name in names)
        ratios = "".join(f"{name + '/gcal':>16}" for name in names if name != "gcal_sync")
        print(f"{'':<24}{header}{ratios}")
        for key, label, fmt in (
            ("seconds", "wall time (s)", "{:12.2f}"),
            ("cpu", "CPU time (s)", "{:12.2f}"),
            ("requests", "Google requests", "{:12.0f}"),
            ("rss_mb", "peak memory (MB RSS)", "{:12.1f}"),
            ("rss_start", "RSS at start (MB)", "{:12.1f}"),
        ):
            base = med["gcal_sync"][key]
            line = f"{label:<24}" + "".join(fmt.format(med[name][key]) for name in names)
            for name in names:
                if name != "gcal_sync":
                    ratio = med[name][key] / base if base else float("nan")
                    line += f"{ratio:16.2f}"
            print(line)
    print(
        "calsync stores every event as a CRM activity with its link (SQLite; PostgreSQL as "
        "calsync-pg), a page at a time; gcal_sync keeps the events in memory."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", default="10000,50000", help="sizes, comma-separated")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", choices=("calsync", "gcal_sync", "migrate"))
    p.add_argument("--url")
    p.add_argument("--token")
    p.add_argument("--profile", help="cProfile the calsync child into this file (pstats)")
    p.add_argument(
        "--postgres",
        default=os.environ.get("CALSYNC_TEST_POSTGRES_URL") or None,
        help="also import into a fresh database on this PostgreSQL server "
        "(default: CALSYNC_TEST_POSTGRES_URL if set)",
    )
    p.add_argument(
        "--google-latency-ms",
        type=int,
        default=0,
        help="the emulator answers every Google request this late (Google takes 100-300 ms; "
        "default 0: the clients' own cost alone)",
    )
    p.add_argument("--database", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
