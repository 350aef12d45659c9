"""CPU of the calsync process(es) per webhook-triggered sync, over 1,000 connected calendars.

    uv run python bench/throughput.py [--bindings 1000] [--syncs 300] [--runner embedded|procrastinate|both]
                                      [--profile DIR]

Set up as bench/latency.py does (every part its own process: the emulator, `calsync serve`,
and for procrastinate two `calsync worker`s; each calendar holds one synced event and has a push
channel). Then two phases, each over `--syncs` distinct calendars (so no two notifications are
merged into one sync), each from a quiet system to a quiet system:

- no change: a Google notification (`X-Goog-Resource-State: exists`, the channel's id and
  token) posted to calsync's webhook for a calendar where nothing changed — the sync lists
  nothing and writes nothing;
- one change: one event edited in Google; the emulator's own notification triggers the sync.

CPU is the calsync processes' user + system time (/proc/<pid>/stat) during the phase, less
what the same processes spend idle in as long (the quietest of three 4 s windows before the
phases, or after them if that is quieter), divided by the sync runs the phase made. A whole
project's quota, 10,000 requests/min, is about 170 syncs/s: at 6 ms of CPU a sync that is one
core.

`--profile DIR` runs each calsync process under cProfile (bench/profiled.py: CPU time, during
the phases only; DIR/<runner>-serve.prof, DIR/<runner>-worker-<n>.prof, written when it stops):
the webhook request, the runner and the sync together, which bench/profile_sync.py does not
show. Its CPU figures are then the profiler's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import (  # bench/latency.py: the same set-up
    CLIENT_ID,
    CLIENT_SECRET,
    EMULATOR_FLAGS,
    Setup,
    first_syncs,
    free_port,
    postgres_db,
    prepare,
    settle,
    spawn,
    wait_up,
    watch_all,
)

from calsync.store import crypto
from calsync.store.models import CalendarBinding, SyncRun

TICK = os.sysconf("SC_CLK_TCK")
PACE = 0.02  # seconds between two notifications: about 50 syncs/s offered


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU of these processes so far."""
    total = 0
    for p in procs:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


async def seed(emu_url: str, owners: list[tuple[uuid.UUID, str, str]]) -> dict[str, str]:
    """One event in every calendar (before the first syncs): the event each edit changes."""
    out: dict[str, str] = {}
    sem = asyncio.Semaphore(32)
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    async with httpx.AsyncClient(base_url=emu_url, timeout=30) as http:

        async def one(email: str, token: str) -> None:
            async with sem:
                resp = await http.post(
                    f"/calendar/v3/calendars/{email}/events",
                    headers={"Authorization": f"Bearer {token}"},
                    json={
                        "summary": "Weekly review",
                        "start": {"dateTime": start.isoformat()},
                        "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
                    },
                )
                resp.raise_for_status()
                out[email] = str(resp.json()["id"])

        await asyncio.gather(*(one(email, token) for _, email, token in owners))
    return out


async def wait_long(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """bench/latency.py's wait_up with 5 minutes' patience: on a loaded 2-core machine the
    web process's start (imports, recovery over 1,000 bindings) outlasted its minute."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            await wait_up(url, proc, log)
            return
        except RuntimeError:
            if proc.poll() is not None:
                raise
    raise RuntimeError(f"{url} never answered")


async def runs_since(setup: Setup, since: datetime) -> dict[str, int]:
    async with setup.db.session() as s:
        rows = await s.execute(
            select(SyncRun.trigger, func.count())
            .where(SyncRun.started_at >= since)
            .group_by(SyncRun.trigger)
        )
        return {str(trigger): int(count) for trigger, count in rows.all()}


async def notify_unchanged(base: str, setup: Setup, emails: list[str]) -> None:
    """Google's 'exists' notification for calendars where nothing changed."""
    async with setup.db.session() as s:
        rows = (
            await s.scalars(
                select(CalendarBinding).where(CalendarBinding.google_calendar_id.in_(emails))
            )
        ).all()
    async with httpx.AsyncClient(timeout=30) as http:
        for b in rows:
            resp = await http.post(
                f"{base}/webhooks/google",
                headers={
                    "X-Goog-Channel-ID": b.channel_id or "",
                    "X-Goog-Channel-Token": b.channel_token or "",
                    "X-Goog-Resource-ID": b.channel_resource_id or "",
                    "X-Goog-Resource-State": "exists",
                    "X-Goog-Message-Number": str((b.channel_message_seq or 1) + 1000),
                },
            )
            assert resp.status_code < 300, (resp.status_code, resp.text)
            await asyncio.sleep(PACE)


async def edit_once(
    emu_url: str, setup: Setup, event_ids: dict[str, str], picks: list[int]
) -> None:
    async with httpx.AsyncClient(base_url=emu_url, timeout=30) as http:
        for i in picks:
            _, email, token = setup.owners[i]
            resp = await http.patch(
                f"/calendar/v3/calendars/{email}/events/{event_ids[email]}",
                headers={"Authorization": f"Bearer {token}"},
                json={"summary": f"Weekly review {uuid.uuid4().hex[:6]}"},
            )
            resp.raise_for_status()
            await asyncio.sleep(PACE)


async def idle_rate(
    procs: list[subprocess.Popen[bytes]], windows: int = 3, quiet: float = 0.05, wait: float = 120
) -> float:
    """CPU seconds per second the processes spend with nothing to do: the least of `windows`
    windows of 4 s (a burst of background work in one does not count as idle). While the
    least is above `quiet` (the embedded runner's work after the set-up went on for more than
    12 s at 0.4 CPU), windows go on for up to `wait` seconds, so the phases start quiet."""
    rates: list[float] = []
    deadline = time.monotonic() + wait
    while len(rates) < windows or (min(rates) > quiet and time.monotonic() < deadline):
        start, t = cpu_seconds(procs), time.perf_counter()
        await asyncio.sleep(4)
        rates.append((cpu_seconds(procs) - start) / (time.perf_counter() - t))
    return min(rates)


@dataclass
class Phase:
    cpu_ms_per_sync: float
    runs: dict[str, int]
    seconds: float


def calsync_command(args: list[str], profile: Path | None, name: str) -> list[str]:
    """The `calsync` command, under cProfile when `profile` names a directory."""
    script = str(Path(sys.executable).parent / "calsync")
    if profile is None:
        return [script, *args]
    wrapper = str(Path(__file__).resolve().parent / "profiled.py")
    return [sys.executable, wrapper, str(profile / f"{name}.prof"), *args]


async def run(
    runner: str,
    n: int,
    syncs: int,
    pg_url: str | None,
    concurrency: int,
    profile: Path | None = None,
) -> dict[str, Phase]:
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
    procs: list[subprocess.Popen[bytes]] = []  # calsync's own: the CPU measured
    everything: list[subprocess.Popen[bytes]] = []
    log = tmp / "processes.log"
    try:
        emu = spawn(
            [sys.executable, "-m", "gcal_emulator", "--port", str(emu_port), *EMULATOR_FLAGS],
            dict(os.environ),
            log,
        )
        everything.append(emu)
        await wait_up(f"{emu_url}/.well-known/openid-configuration", emu, log)
        setup, binding_ids = await prepare(
            emu_url, database_url, f"{base}/webhooks/google", n, jobs, key, concurrency
        )
        event_ids = await seed(emu_url, setup.owners)
        t = time.perf_counter()
        access = await first_syncs(setup, binding_ids)
        env = {
            **os.environ,
            "CALSYNC_DATABASE_URL": database_url,
            "CALSYNC_SECRET_KEY": key,
            "CALSYNC_MODE": "production",
            "CALSYNC_PUBLIC_URL": base,
            "CALSYNC_JOBS": jobs,
            "CALSYNC_JOBS_CONCURRENCY": str(concurrency),
            "CALSYNC_GOOGLE_EMULATOR_URL": emu_url,
            "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID,
            "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
            "CALSYNC_GOOGLE_REQUESTS_PER_MINUTE": "0",
            "CALSYNC_LOG_LEVEL": "WARNING",
        }
        web = spawn(
            calsync_command(
                ["serve", "--port", str(port), "--no-migrate"], profile, f"{runner}-serve"
            ),
            env,
            log,
        )
        procs.append(web)
        if runner == "procrastinate":
            procs += [
                spawn(calsync_command(["worker"], profile, f"{runner}-worker-{i}"), env, log)
                for i in range(2)
            ]
        everything += procs
        await wait_long(f"{base}/healthz", web, log)
        await watch_all(setup, access, binding_ids)
        await access.aclose()
        if access.http is not None:  # ours (first_syncs), not closed by the access
            await access.http.aclose()
        await settle(setup, runner)
        print(
            f"  {runner}: {n} bindings synced, watched and settled in {time.perf_counter() - t:.1f} s"
        )
        # what the processes spend idle (renewal ticks, job polling), to subtract: the
        # quietest of a few windows, before and after the phases (one 10 s window right after
        # the set-up caught its tail of background work and made the per-sync figures negative)
        idle_per_s = await idle_rate(procs)
        # distinct calendars in each phase: a posted notification's message number would make
        # the emulator's later ones for that channel look like replays (and be ignored)
        order = random.Random(11).sample(range(len(setup.owners)), len(setup.owners))
        half = min(syncs, len(order) // 2)
        out: dict[str, Phase] = {}
        for name, picks in (("no change", order[:half]), ("one change", order[half : 2 * half])):
            since = datetime.now(UTC)
            if profile is not None:
                for p in procs:
                    p.send_signal(signal.SIGUSR1)  # bench/profiled.py: profile from here
            cpu0, t0 = cpu_seconds(procs), time.perf_counter()
            if name == "no change":
                await notify_unchanged(base, setup, [setup.owners[i][1] for i in picks])
            else:
                await edit_once(emu_url, setup, event_ids, picks)
            await settle(setup, runner)
            if profile is not None:
                for p in procs:
                    p.send_signal(signal.SIGUSR2)  # to here
            seconds = time.perf_counter() - t0
            cpu = cpu_seconds(procs) - cpu0 - idle_per_s * seconds
            runs = await runs_since(setup, since)
            out[name] = Phase(cpu * 1000 / max(1, sum(runs.values())), runs, seconds)
            print(f"  {runner}, {name}: {out[name]}")
        after = await idle_rate(procs)
        print(
            f"  {runner}: idle {idle_per_s * 1000:.0f} ms/s before, {after * 1000:.0f} ms/s after"
        )
        if after < idle_per_s:  # the quieter estimate: per-sync figures err high, not low
            for name, phase in out.items():
                extra = (
                    (idle_per_s - after) * phase.seconds * 1000 / max(1, sum(phase.runs.values()))
                )
                out[name] = Phase(phase.cpu_ms_per_sync + extra, phase.runs, phase.seconds)
        await setup.db.dispose()
        return out
    finally:
        for p in reversed(everything):
            p.terminate()
        for p in everything:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bindings", type=int, default=1000)
    parser.add_argument("--syncs", type=int, default=300)
    parser.add_argument("--runner", choices=["embedded", "procrastinate", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=4, help="CALSYNC_JOBS_CONCURRENCY")
    parser.add_argument("--postgres-url", default=os.environ.get("CALSYNC_TEST_POSTGRES_URL"))
    parser.add_argument("--profile", type=Path, help="directory for the processes' cProfiles")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    runners = ["embedded", "procrastinate"] if args.runner == "both" else [args.runner]
    if "procrastinate" in runners and not args.postgres_url:
        print("procrastinate skipped: no --postgres-url / CALSYNC_TEST_POSTGRES_URL")
        runners.remove("procrastinate")
    rows = []
    for runner in runners:
        for attempt in range(3):
            try:
                phases = asyncio.run(
                    run(
                        runner,
                        args.bindings,
                        args.syncs,
                        args.postgres_url,
                        args.concurrency,
                        args.profile,
                    )
                )
                break
            except (RuntimeError, OperationalError) as exc:
                # the set-up (bench/latency.py's, 32 writers at once) can meet SQLite's
                # "database is locked" or a slow start on an overloaded machine: start over
                if attempt == 2:
                    raise
                print(f"  {runner}: set-up failed ({str(exc)[:120]}), starting over")
        rows.append((runner, phases))
    print()
    print(
        f"CPU of calsync per webhook-triggered sync ({args.bindings} calendars, {args.syncs} syncs"
        f" a phase, concurrency {args.concurrency}); load {os.getloadavg()}"
    )
    print(f"{'runner':<26}{'no change':>14}{'one change':>14}  runs by trigger")
    for runner, phases in rows:
        label = runner if runner == "embedded" else "procrastinate, 2 workers"
        runs = "; ".join(
            f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(p.runs.items()))
            for name, p in phases.items()
        )
        print(
            f"{label:<26}{phases['no change'].cpu_ms_per_sync:>11.1f} ms"
            f"{phases['one change'].cpu_ms_per_sync:>11.1f} ms  {runs}"
        )


if __name__ == "__main__":
    main()
