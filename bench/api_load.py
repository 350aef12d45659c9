"""The CRM API under load while Google changes keep arriving: does the API starve the sync?

C concurrent CRM API clients (default 50), each in a loop for S seconds (default 60): list a
week of one owner's activities (GET /api/v1/activities?owner&from&to), create one activity for
that owner (POST), and patch it (PATCH with If-Match). Meanwhile Google changes arrive at a
steady rate (default 2/s): an events.insert in the emulator on a random connected calendar,
which reaches calsync the way it would in production (push notification → /webhooks/google →
runner → engine). Nothing in this script asks for a sync.

The set-up is bench/latency.py's (imported, not copied): every part its own process — the
emulator standing in for Google, `calsync serve`, and for PostgreSQL two `calsync worker`s —
with N connected bindings (default 50), each first-synced and watched by a push channel, and
the measurement starts once no sync is running or queued. The CRM's creates and patches are
pushed to Google by calsync as usual, so the load includes those syncs and their echoes.

Google → CRM latency is timed from just before the events.insert until the activity is
visible through the CRM API: a poller in this script reads GET /api/v1/changes every 20 ms
(under the same load as the clients) and notes when each `created` change from the sync
appears. Also from the insert until the `activity.created` outbound webhook reaches a receiver
in this process (bench/webhook_latency.py's): that figure includes the webhook deliverer's
tick (CALSYNC_WEBHOOK_TICK_SECONDS, --tick; the embedded runner also wakes on its own commits,
procrastinate workers only tick).

Databases: SQLite (one `calsync serve`, the embedded runner) and PostgreSQL (`calsync serve`
+ 2 `calsync worker`s, the procrastinate runner; a scratch database created on
--postgres-url / CALSYNC_TEST_POSTGRES_URL and dropped afterwards). Printed side by side: API
requests/s, p50/p99 per operation, errors, and the Google → CRM latency p50/p99/max. Issue 16's
targets (reported against, not asserted): Google → CRM p99 < 1 s on PostgreSQL and < 2 s on
SQLite during the load; API p99 < 250 ms at 100 req/s (--rate paces the clients to a total
request rate; the default, 0, lets each client go as fast as its answers come).

Also printed: each process's CPU seconds during the load (Linux), and calsync's CPU per API
request (serve, workers and PostgreSQL's backends over the requests answered: on a machine the
load saturates, it decides the requests/s); the sync runs during the load and their Google
requests, by trigger; with --profile where `calsync serve`'s CPU went (cProfile, top
functions by own time).

  uv run python bench/api_load.py [--clients 50] [--seconds 60] [--google-rate 2]
      [--bindings 50] [--rate 0] [--db sqlite|postgres|both] [--postgres-url URL] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import case, func, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
import latency as base_bench
import webhook_latency as hook_bench
from incremental import ServerCpu

from calsync.store import crypto, webhooks
from calsync.store.models import SyncRun, User

OPS = ("list", "create", "patch")
FEED_POLL_SECONDS = 0.02
ZONE = "UTC"
STRAGGLERS_SECONDS = 60.0  # how long to wait after the load for Google changes still on the way


@dataclass
class Figures:
    label: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    errors: Counter[str] = field(default_factory=Counter)  # "create 500", "list ReadTimeout"
    seconds: float = 0.0  # from the first request until the last client finished
    made: dict[str, float] = field(default_factory=dict)  # Google subject → perf_counter
    insert_errors: int = 0
    feed: dict[str, float] = field(default_factory=dict)  # Google subject → seen in the feed
    hooks: dict[str, float] = field(default_factory=dict)  # Google subject → webhook arrived
    runs: dict[str, int] = field(default_factory=dict)  # sync runs during the load, by trigger
    google_requests: dict[str, int] = field(default_factory=dict)  # and their Google requests
    idle: dict[str, int] = field(default_factory=dict)  # runs that sent Google nothing, by trigger
    load_avg: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and end
    profile: Path | None = None  # cProfile's output for `calsync serve` (--profile)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process during the load
    sessions: int | None = None  # PostgreSQL connections opened during the load
    open_at_end: int = 0  # and open as it ended

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def google(self, seen: dict[str, float]) -> list[float]:
        return [seen[s] - t for s, t in self.made.items() if s in seen]


async def timed(fig: Figures, op: str, request: Awaitable[httpx.Response]) -> httpx.Response | None:
    """One API request: its latency (answered or not by status), an error counted when it
    failed; the response when it succeeded."""
    t0 = time.perf_counter()
    try:
        resp = await request
    except httpx.HTTPError as exc:
        fig.errors[f"{op} {type(exc).__name__}"] += 1
        return None
    fig.latencies[op].append(time.perf_counter() - t0)
    if resp.status_code >= 400:
        fig.errors[f"{op} {resp.status_code}"] += 1
        return None
    return resp


async def client(
    i: int,
    http: httpx.AsyncClient,
    setup: base_bench.Setup,
    fig: Figures,
    deadline: float,
    interval: float,
) -> None:
    """One CRM user's loop: list this week, create an activity in it, patch that activity."""
    rng = random.Random(i)
    user_id, _, _ = setup.owners[i % len(setup.owners)]
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=today.weekday())
    span = {"owner": str(user_id), "from": f"{week.isoformat()}Z"}
    span["to"] = f"{(week + timedelta(days=7)).isoformat()}Z"
    next_at = time.perf_counter() + rng.uniform(0, interval)
    n = 0
    while time.perf_counter() < deadline:
        if interval:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at = max(next_at + interval, time.perf_counter())
        n += 1
        await timed(fig, "list", http.get("/api/v1/activities", params=span))
        start = week + timedelta(minutes=15 * rng.randrange(7 * 24 * 4 - 4))
        created = await timed(
            fig,
            "create",
            http.post(
                "/api/v1/activities",
                json={
                    "owner_id": str(user_id),
                    "subject": f"crm {i}.{n}",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=30)).isoformat(),
                    "time_zone": ZONE,
                },
            ),
        )
        if created is None:
            continue
        body = created.json()
        await timed(
            fig,
            "patch",
            http.patch(
                f"/api/v1/activities/{body['id']}",
                json={"subject": f"crm {i}.{n} (edited)", "location": f"Room {n % 9}"},
                headers={"If-Match": f'"{body["version"]}"'},
            ),
        )


async def google_changes(
    emu_url: str, setup: base_bench.Setup, fig: Figures, rate: float, deadline: float
) -> None:
    """events.insert on random calendars at a steady rate (each insert on its own schedule,
    not waiting for the previous one)."""
    rng = random.Random(7)

    async def one(http: httpx.AsyncClient, i: int) -> None:
        _, email, token = rng.choice(setup.owners)
        subject = f"google {i} {uuid.uuid4().hex[:6]}"
        try:
            t0 = await base_bench.insert_in_google(http, "", email, token, subject, day=1 + i % 20)
        except httpx.HTTPError:
            fig.insert_errors += 1
            return
        fig.made[subject] = t0

    async with httpx.AsyncClient(base_url=emu_url, timeout=30) as http:
        tasks: list[asyncio.Task[None]] = []
        next_at, i = time.perf_counter(), 0
        while next_at < deadline:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            tasks.append(asyncio.create_task(one(http, i)))
            i += 1
            next_at += 1 / rate
        await asyncio.gather(*tasks)


async def change_feed(http: httpx.AsyncClient, fig: Figures, stop: asyncio.Event) -> None:
    """Poll GET /api/v1/changes from its current end; note when each activity created by the
    sync (a Google change) becomes visible, then look up its subject."""
    after = 0
    while True:  # skip the set-up's changes
        page = (await http.get("/api/v1/changes", params={"after": after, "limit": 1000})).json()
        after = page["next_after"]
        if not page["has_more"]:
            break
    seen: dict[str, float] = {}  # activity id → when the feed showed it
    lookups: list[asyncio.Task[None]] = []

    async def subject_of(activity_id: str) -> None:
        for _ in range(10):
            try:
                resp = await http.get(f"/api/v1/activities/{activity_id}")
                if resp.status_code == 200:
                    fig.feed[resp.json()["subject"]] = seen[activity_id]
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)

    while not stop.is_set():
        try:
            resp = await http.get("/api/v1/changes", params={"after": after, "limit": 1000})
            at = time.perf_counter()
            resp.raise_for_status()
        except httpx.HTTPError:
            await asyncio.sleep(FEED_POLL_SECONDS)
            continue
        page = resp.json()
        for change in page["changes"]:
            if change["origin"] == "sync" and change["kind"] == "created":
                if change["activity_id"] not in seen:
                    seen[change["activity_id"]] = at
                    lookups.append(asyncio.create_task(subject_of(change["activity_id"])))
        after = page["next_after"]
        if not page["has_more"]:
            await asyncio.sleep(FEED_POLL_SECONDS)
    await asyncio.gather(*lookups)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drop_db(admin_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    admin = make_url(admin_url).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(db: str, args: argparse.Namespace) -> Figures:
    key = crypto.generate_key()
    crypto.install(crypto.Keyring([key]))
    tmp = Path(tempfile.mkdtemp(prefix="calsync-api-load-"))
    if db == "postgres":
        database_url = base_bench.postgres_db(args.postgres_url)
        jobs, runner = "procrastinate", "procrastinate"
        fig = Figures("PostgreSQL, serve + 2 workers")
    else:
        database_url = f"sqlite+aiosqlite:///{tmp / 'calsync.db'}"
        jobs, runner = "inprocess", "embedded"
        fig = Figures("SQLite, one process")
    emu_port, port = base_bench.free_port(), base_bench.free_port()
    emu_url, base = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    log = tmp / "processes.log"
    procs: list[subprocess.Popen[bytes]] = []
    server = None
    try:
        procs.append(await base_bench.start_emulator(emu_port, log))
        t = time.perf_counter()
        setup, binding_ids = await base_bench.prepare(
            emu_url,
            database_url,
            f"{base}/webhooks/google",
            args.bindings,
            jobs,
            key,
            args.concurrency,
        )
        access = await base_bench.first_syncs(setup, binding_ids)
        async with setup.db.session() as s:
            owner = await s.get(User, setup.owners[0][0])
            assert owner is not None
            endpoint = await webhooks.create_endpoint(
                s,
                owner.tenant_id,
                url="http://placeholder/",
                events=["activity.created"],
                description=None,
            )
            arrivals = hook_bench.Arrivals(endpoint.secret)
            server, url = hook_bench.receiver(arrivals)
            endpoint.url = url
            await s.commit()
        env = base_bench.calsync_env(
            database_url,
            key,
            base,
            emu_url,
            CALSYNC_JOBS=jobs,
            CALSYNC_JOBS_CONCURRENCY=str(args.concurrency),
            CALSYNC_WEBHOOK_ALLOW_PRIVATE="true",
            CALSYNC_WEBHOOK_TICK_SECONDS=str(args.tick),
        )
        calsync = str(bin_dir / "calsync")
        serve = [calsync, "serve", "--port", str(port), "--no-migrate"]
        if args.profile:  # cProfile writes when serve exits (SIGTERM stops it cleanly)
            serve = [sys.executable, "-m", "cProfile", "-o", str(tmp / "serve.prof"), *serve]
            fig.profile = tmp / "serve.prof"
        web = base_bench.spawn(serve, env, log)
        procs.append(web)
        if jobs == "procrastinate":
            procs += [base_bench.spawn([calsync, "worker"], env, log) for _ in range(2)]
        await base_bench.wait_up(f"{base}/healthz", web, log)
        await base_bench.watch_all(setup, access, binding_ids)
        await access.aclose()
        if access.http is not None:  # first_syncs' own, not closed by the access
            await access.http.aclose()
        await base_bench.settle(setup, runner)
        print(
            f"  {fig.label}: {args.bindings} bindings synced, watched and settled in "
            f"{time.perf_counter() - t:.1f} s; log {log}",
            flush=True,
        )

        headers = {"Authorization": f"Bearer {setup.admin_key}"}
        limits = httpx.Limits(max_connections=args.clients + 20, max_keepalive_connections=None)
        interval = 3 * args.clients / args.rate if args.rate else 0.0
        async with (
            httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as api,
            httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as feed_http,
        ):
            stop = asyncio.Event()
            feed = asyncio.create_task(change_feed(feed_http, fig, stop))
            await asyncio.sleep(0.5)  # the feed poller has found the feed's end
            since = datetime.now(UTC)
            load_start = os.getloadavg()[0]
            named = {"emulator": procs[0], "serve": procs[1]}
            named.update({f"worker {n}": p for n, p in enumerate(procs[2:], 1)})
            cpu_start = {name: cpu_seconds(p.pid) for name, p in named.items()}
            # the machine's other CPU users: this script (its clients, the feed poller and the
            # webhook receiver) and, on PostgreSQL, the server's backends
            pg_cpu = ServerCpu(database_url) if db == "postgres" else None
            cpu_start["this bench"] = time.process_time()
            cpu_start["PostgreSQL"] = pg_cpu.seconds() if pg_cpu else 0.0
            sessions_start = pg_cpu.sessions() if pg_cpu else 0
            t0 = time.perf_counter()
            deadline = t0 + args.seconds
            producer = asyncio.create_task(
                google_changes(emu_url, setup, fig, args.google_rate, deadline)
            )
            await asyncio.gather(
                *(client(i, api, setup, fig, deadline, interval) for i in range(args.clients))
            )
            fig.seconds = time.perf_counter() - t0
            fig.load_avg = (load_start, os.getloadavg()[0])
            fig.cpu = {n: cpu_seconds(p.pid) - cpu_start[n] for n, p in named.items()}
            fig.cpu["this bench"] = time.process_time() - cpu_start["this bench"]
            if pg_cpu is not None:
                fig.cpu["PostgreSQL"] = pg_cpu.seconds() - cpu_start["PostgreSQL"]
                fig.sessions = pg_cpu.sessions() - sessions_start
                fig.open_at_end = pg_cpu.open_now()
                pg_cpu.conn.close()
            await producer
            # the Google changes still on their way: wait for them (a bounded time)
            until = time.perf_counter() + STRAGGLERS_SECONDS
            while time.perf_counter() < until:
                with arrivals.lock:
                    fig.hooks = {s: arrivals.seen[s] for s in fig.made if s in arrivals.seen}
                if len(fig.feed) >= len(fig.made) and len(fig.hooks) >= len(fig.made):
                    break
                await asyncio.sleep(0.2)
            stop.set()
            await feed
        async with setup.db.session() as s:
            rows = await s.execute(
                select(
                    SyncRun.trigger,
                    func.count(),
                    func.sum(SyncRun.google_requests),
                    func.sum(case((SyncRun.google_requests == 0, 1), else_=0)),
                )
                .where(SyncRun.started_at >= since)
                .group_by(SyncRun.trigger)
            )
            for trigger, count, requests, idle in rows.all():
                fig.runs[str(trigger)] = int(count)
                fig.google_requests[str(trigger)] = int(requests or 0)
                fig.idle[str(trigger)] = int(idle or 0)
        await setup.db.dispose()
        if arrivals.bad:
            print(f"  {arrivals.bad} webhooks did not verify")
        return fig
    finally:
        if server is not None:
            server.shutdown()
        for p in reversed(procs):
            if fig.profile is not None and p is procs[1]:
                # uvicorn re-raises SIGTERM after its shutdown, which would end the process
                # before cProfile writes; SIGINT ends it with KeyboardInterrupt, and it writes
                p.send_signal(signal.SIGINT)
            else:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if db == "postgres":
            drop_db(args.postgres_url, database_url)


def ms(values: list[float], p: float) -> str:
    return f"{base_bench.pct(values, p) * 1000:.0f}" if values else "-"


def report(figs: list[Figures], args: argparse.Namespace) -> None:
    pace = f"paced to {args.rate:g} req/s" if args.rate else "unpaced"
    print()
    print(
        f"CRM API under load: {args.clients} clients (list a week, create, patch; {pace}) for "
        f"{args.seconds:g} s, {args.google_rate:g} Google changes/s on {args.bindings} bindings, "
        f"webhook tick {args.tick:g} s"
    )
    width = 32
    rows: list[tuple[str, list[str]]] = [
        ("API requests/s", [f"{f.requests / f.seconds:.1f}" for f in figs]),
        ("requests (errors)", [f"{f.requests} ({sum(f.errors.values())})" for f in figs]),
    ]
    for op in OPS:
        rows.append(
            (
                f"  {op} p50 / p99 ms",
                [f"{ms(f.latencies[op], 50)} / {ms(f.latencies[op], 99)}" for f in figs],
            )
        )
    every = [[v for op in OPS for v in f.latencies[op]] for f in figs]
    rows.append(
        ("  all p50 / p99 / max ms", [f"{ms(a, 50)} / {ms(a, 99)} / {ms(a, 100)}" for a in every])
    )
    feed = [f.google(f.feed) for f in figs]
    hooks = [f.google(f.hooks) for f in figs]
    rows += [
        (
            "Google → CRM API p50/p99/max ms",
            [f"{ms(v, 50)} / {ms(v, 99)} / {ms(v, 100)}" for v in feed],
        ),
        (
            "  arrived / inserted (failed)",
            [
                f"{len(v)} / {len(f.made)} ({f.insert_errors})"
                for v, f in zip(feed, figs, strict=True)
            ],
        ),
        (
            "Google → webhook p50/p99/max ms",
            [f"{ms(v, 50)} / {ms(v, 99)} / {ms(v, 100)}" for v in hooks],
        ),
        ("  arrived", [f"{len(v)} / {len(f.made)}" for v, f in zip(hooks, figs, strict=True)]),
        (
            "load average (1 min) start → end",
            [f"{f.load_avg[0]:.1f} → {f.load_avg[1]:.1f}" for f in figs],
        ),
    ]
    print(f"{'':<{width}}" + "".join(f"{f.label:>32}" for f in figs))
    for name, values in rows:
        print(f"{name:<{width}}" + "".join(f"{v:>32}" for v in values))
    for f in figs:
        if f.cpu:
            print(
                f"{f.label}: CPU s during the load: "
                + ", ".join(f"{k} {v:.1f}" for k, v in f.cpu.items())
            )
        if f.sessions is not None:
            print(
                f"{f.label}: PostgreSQL connections opened during the load: {f.sessions},"
                f" open as it ended: {f.open_at_end}"
            )
        if f.profile is not None and f.profile.exists():
            print(f"{f.label}: calsync serve, top functions by own time ({f.profile}):")
            pstats.Stats(str(f.profile)).sort_stats("tottime").print_stats(20)
    for f in figs:
        runs = ", ".join(f"{k} {v}" for k, v in sorted(f.runs.items()))
        errors = ", ".join(f"{k} × {v}" for k, v in f.errors.most_common(6)) or "none"
        print(f"{f.label}: sync runs by trigger: {runs}; errors: {errors}")
        requests = ", ".join(f"{k} {v}" for k, v in sorted(f.google_requests.items()))
        print(f"{f.label}: their Google requests: {requests}")
        # a CRM change's push that found its change pushed already (by an echo's run): a run
        # that costs its start and end and asks Google nothing
        idle = ", ".join(f"{k} {v}" for k, v in sorted(f.idle.items()))
        print(f"{f.label}: runs that sent Google nothing: {idle}")
        # the slower the API answers, the more often an owner's write finds the debounce's
        # second of quiet and goes out alone (a push and its echo's run): this ratio, not
        # the code, is most of the spread between runs (docs/deploy.md, fourth session)
        if f.requests:
            print(f"{f.label}: sync runs per API request: {sum(f.runs.values()) / f.requests:.2f}")
        # what one API request costs the whole deployment: on a machine the load saturates,
        # the figure that decides the requests/s it serves (the sync runs the API's writes
        # cause included)
        ours = sum(v for k, v in f.cpu.items() if k not in ("emulator", "this bench"))
        if ours and f.requests:
            print(
                f"{f.label}: calsync's CPU per API request, its syncs and database included:"
                f" {ours * 1000 / f.requests:.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--google-rate", type=float, default=2.0, help="Google changes/s")
    parser.add_argument("--bindings", type=int, default=50)
    parser.add_argument(
        "--rate", type=float, default=0, help="total API requests/s to pace to (0: unpaced)"
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=4, help="CALSYNC_JOBS_CONCURRENCY")
    parser.add_argument("--tick", type=float, default=1.0, help="CALSYNC_WEBHOOK_TICK_SECONDS")
    parser.add_argument("--postgres-url", default=os.environ.get("CALSYNC_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run `calsync serve` under cProfile and print where its CPU time went",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in dbs and not args.postgres_url:
        print("PostgreSQL skipped: no --postgres-url / CALSYNC_TEST_POSTGRES_URL")
        dbs.remove("postgres")
    figs = [asyncio.run(run(db, args)) for db in dbs]
    report(figs, args)


if __name__ == "__main__":
    main()
