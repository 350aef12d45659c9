"""Google's request budget over a simulated day: requests per calendar, and how long a silently
broken push channel goes unnoticed.

Sets up N calendars (default 1,000; the issue's figure is 10,000: `--calendars 10000`), each of
its own Google account in the emulator (a subprocess, standing in for Google), connected, synced
once and watched by a push channel (and the account's calendarList channel: per calendar here,
the worst case — one calendar per connection). Then 1 % of the channels are silenced (the emulator's
`POST /emulator/v1/channels/{id}/silence`: still live at Google, delivering nothing) and each of
those calendars gets one change at a random moment of the day. The day is simulated: every tick
moves the emulator's clock and calsync's (`calsync.clock`) by `--tick` seconds, runs calsync's
poll tick (the in-process runner's `poll_once`, with the request budget) and channel renewal,
and waits for the syncs it queued — no real waiting.

Prints, from the emulator's request log: Calendar API requests per healthy calendar per day
(the quota Google counts), per broken calendar, OAuth token requests apart (not Calendar quota);
and for each broken channel how long from its change until a poll caught it (the channel then
re-created and the change imported in that same run). `--healthy-hours 6 --trust-expiry` runs
the schedule before issue 16 (a 6-hour safety poll, a channel trusted until it expires).

  uv run python bench/budget.py [--calendars 1000] [--days 1] [--tick 600] [--broken 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from calsync import clock
from calsync.google.calendar import make_http_client
from calsync.jobs.budget import Budget
from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.polling import PollPolicy
from calsync.settings import Settings
from calsync.store import bindings, connections, crypto, tenants, users
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import CalendarBinding
from calsync.sync.channels.kinds import CALENDAR_LIST
from calsync.sync.channels.service import Channels, renew_due_channels
from calsync.sync.engine import sync_binding
from calsync.sync.tokens import GoogleAccess

CLIENT_ID = "bench.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-bench"
TOKEN_SECONDS = 30 * 86400  # long-lived access tokens: refreshes are counted apart anyway


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def prepare(
    http: httpx.AsyncClient, db: Database, settings: Settings, n: int
) -> list[tuple[uuid.UUID, str, str]]:
    """N accounts, each with a connection and an import binding of its primary calendar."""
    await http.post(
        "/emulator/v1/oauth-clients",
        json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": []},
    )
    async with db.session() as s:
        tenant = await tenants.create(s, f"bench-{uuid.uuid4().hex[:8]}")
        await s.commit()
    made: list[tuple[uuid.UUID, str, str]] = []
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        email = f"u{i}@budget.example"
        async with sem:
            await http.post("/emulator/v1/accounts", json={"email": email})
            tok = (
                await http.post(
                    f"/emulator/v1/accounts/{email}/tokens", json={"expires_in": TOKEN_SECONDS}
                )
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
                    access_token_expires_at=datetime.now(UTC) + timedelta(days=29),
                )
                b = await bindings.create(
                    s, tenant.id, conn.id, email, role="import", direction="google_to_crm"
                )
                await s.commit()
            made.append((b.id, email, tok["access_token"]))

    await asyncio.gather(*(one(i) for i in range(n)))
    return made


async def first_syncs_and_watches(
    db: Database, access: GoogleAccess, settings: Settings, ids: list[uuid.UUID]
) -> None:
    service = Channels(db, access, settings)
    sem = asyncio.Semaphore(8)

    async def one(binding_id: uuid.UUID) -> None:
        async with sem:
            await sync_binding(db, binding_id, access, trigger="initial")
            assert await service.watch(binding_id), "watch failed"
            async with db.session() as s:
                binding = await bindings.get(s, binding_id)
                assert binding is not None
                connection_id = binding.connection_id
                await s.commit()
            # the connection's calendarList channel, as connecting makes it
            assert await service.watch(connection_id, CALENDAR_LIST), "list watch failed"

    await asyncio.gather(*(one(b) for b in ids))


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="calsync-budget-"))
    port = free_port()
    emu = subprocess.Popen(  # noqa: ASYNC220 (started once, before anything runs)
        [
            sys.executable,
            "-m",
            "gcal_emulator",
            "--port",
            str(port),
            "--allow-http-webhooks",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "emulator.log").open("wb"),
    )
    emu_url = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=emu_url, timeout=60)
    try:
        for _ in range(100):
            try:
                await http.get("/emulator/v1/accounts")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        await simulate(args, http, emu_url, tmp)
    finally:
        await http.aclose()
        emu.terminate()
        emu.wait(10)


async def simulate(
    args: argparse.Namespace, http: httpx.AsyncClient, emu_url: str, tmp: Path
) -> None:
    key = crypto.generate_key()
    crypto.install(crypto.Keyring([key]))
    url = f"sqlite+aiosqlite:///{tmp / 'calsync.db'}"
    settings = Settings(
        database_url=url,
        secret_key=SecretStr(key),
        mode="production",
        public_url=f"http://127.0.0.1:{free_port()}",  # nobody listens: no notification lands
        google_emulator_url=emu_url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr(CLIENT_SECRET),
        google_requests_per_minute=0,
        healthy_poll_interval_seconds=int(args.healthy_hours * 3600),
    )
    db = Database(url)
    await upgrade(db)
    access = GoogleAccess(settings, http=make_http_client(settings))
    started = time.perf_counter()
    made = await prepare(http, db, settings, args.calendars)
    ids = [b for b, _, _ in made]
    await first_syncs_and_watches(db, access, settings, ids)
    setup_seconds = time.perf_counter() - started

    rng = random.Random(16)
    broken = rng.sample(made, max(1, round(args.calendars * args.broken)))
    broken_ids = {b for b, _, _ in broken}
    async with db.session() as s:
        channel_of = dict(
            (
                await s.execute(
                    select(CalendarBinding.id, CalendarBinding.channel_id).where(
                        CalendarBinding.id.in_(list(broken_ids))
                    )
                )
            ).all()
        )
    for binding_id in broken_ids:
        await http.post(f"/emulator/v1/channels/{channel_of[binding_id]}/silence", json={})
    day = 86400.0 * args.days
    change_at = {b: rng.uniform(0, min(day, 86400.0) * 0.9) for b, _, _ in broken}
    account_of = {b: (email, token) for b, email, token in made}

    rewatch_service = Channels(db, access, settings)

    async def rewatch(binding_id: uuid.UUID) -> bool:
        return await rewatch_service.watch(binding_id)

    budget = Budget(db)
    runner = InProcessRunner(
        db,
        access,
        concurrency=4,
        poll_policy=PollPolicy(healthy_interval=timedelta(hours=args.healthy_hours)),
        poll_every=None,
        stuck_every=None,
        budget=budget,
        rewatch=None if args.trust_expiry else rewatch,
    )
    seq = int((await http.get("/emulator/v1/requests?after=0")).json()["last_seq"])
    sim_start = clock.utcnow()
    elapsed = 0.0
    changed: set[uuid.UUID] = set()
    inserts = 0
    caught: dict[uuid.UUID, float] = {}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_renewal = 3600.0
    while elapsed < day:
        step = min(args.tick, day - elapsed)
        await http.post("/emulator/v1/clock", json={"advance_seconds": step})
        clock.advance(step)
        elapsed += step
        for binding_id, when in change_at.items():
            if binding_id not in changed and when <= elapsed:
                email, token = account_of[binding_id]
                start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0)
                body = {
                    "summary": "made while the channel was silent",
                    "start": {"dateTime": start.isoformat()},
                    "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
                }
                resp = await http.post(
                    f"/calendar/v3/calendars/{email}/events",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert resp.status_code == 200, resp.text
                changed.add(binding_id)
                inserts += 1
        while True:  # a tick enqueues at most 1,000 polls: run passes until none is due
            before = runner.stats.started
            await runner.poll_once()
            await runner.drain()
            if runner.stats.started == before:
                break
        if elapsed >= next_renewal:
            await renew_due_channels(db, access, settings)
            next_renewal += 3600.0
        await note_caught(db, broken_ids, caught, changed, change_at, sim_start, args.trust_expiry)
    await runner.stop()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    log = (await http.get(f"/emulator/v1/requests?after={seq}")).json()["items"]
    report(args, log, made, broken_ids, caught, change_at, inserts, setup_seconds, cpu, wall)
    await access.aclose()
    await db.dispose()


async def note_caught(
    db: Database,
    broken: set[uuid.UUID],
    caught: dict[uuid.UUID, float],
    changed: set[uuid.UUID],
    change_at: dict[uuid.UUID, float],
    sim_start: datetime,
    trust_expiry: bool,
) -> None:
    """When a broken calendar's change reached calsync: its binding was marked suspect (a poll
    caught the silent channel) or, trusting expiry, its last poll came after the change."""
    async with db.session() as s:
        rows = (
            await s.execute(
                select(
                    CalendarBinding.id,
                    CalendarBinding.channel_suspect_since,
                    CalendarBinding.last_success_at,
                ).where(CalendarBinding.id.in_(list(broken - caught.keys())))
            )
        ).all()
    for binding_id, suspect, last in rows:
        if binding_id not in changed:
            continue
        seen = last if trust_expiry else suspect
        if seen is None:
            continue
        at = (seen - sim_start).total_seconds()
        if at >= change_at[binding_id]:
            caught[binding_id] = at - change_at[binding_id]


def report(
    args: argparse.Namespace,
    log: list[dict[str, Any]],
    made: list[tuple[uuid.UUID, str, str]],
    broken: set[uuid.UUID],
    caught: dict[uuid.UUID, float],
    change_at: dict[uuid.UUID, float],
    inserts: int,
    setup_seconds: float,
    cpu: float,
    wall: float,
) -> None:
    email_broken = {email for b, email, _ in made if b in broken}
    calendar = [e for e in log if not e["path"].startswith(("/token", "/emulator"))]
    oauth = [e for e in log if e["path"].startswith("/token")]
    healthy_n = len(made) - len(broken)
    on_healthy = sum(1 for e in calendar if e["account"] not in email_broken)
    on_broken = sum(1 for e in calendar if e["account"] in email_broken) - inserts
    days = args.days
    if args.verbose:
        kinds: dict[str, int] = {}
        for e in calendar:
            key = f"{e['method']} {e['path'].rsplit('/', 1)[-1]} {e['status']}"
            kinds[key] = kinds.get(key, 0) + 1
        print("  requests by kind:", kinds)
    print(
        f"calendars {len(made)} ({len(broken)} with a silenced channel), {days:g} simulated "
        f"day(s), tick {args.tick:g} s, healthy poll every {args.healthy_hours:g} h"
        + (
            ", channels trusted until expiry"
            if args.trust_expiry
            else ", channels judged by evidence"
        )
    )
    print(f"  set-up {setup_seconds:.0f} s; simulation {wall:.0f} s wall, {cpu:.0f} s CPU")
    print(
        f"  Calendar API requests per healthy calendar per day: {on_healthy / healthy_n / days:.2f}"
        f"   per broken calendar per day: {on_broken / max(1, len(broken)) / days:.1f}"
        f"   OAuth token requests: {len(oauth)}"
    )
    delays = sorted(caught.values())
    missed = len(broken) - len(caught)
    if delays:
        print(
            f"  broken channel: change → caught and imported: p50 {pct(delays, 50) / 60:.0f} min, "
            f"p90 {pct(delays, 90) / 60:.0f} min, max {delays[-1] / 60:.0f} min; within 1 h: "
            f"{sum(1 for d in delays if d <= 3600)}/{len(broken)}; not caught within the day: "
            f"{missed}"
        )
    else:
        print(f"  broken channels caught: 0 of {len(broken)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calendars", type=int, default=1000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--tick", type=float, default=600.0, help="simulated seconds per tick")
    parser.add_argument("--broken", type=float, default=0.01, help="share of silenced channels")
    parser.add_argument("--healthy-hours", type=float, default=24.0)
    parser.add_argument(
        "--trust-expiry", action="store_true", help="before issue 16: no evidence, no re-creation"
    )
    parser.add_argument("--verbose", action="store_true", help="requests by kind")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
