"""Google's request budget over simulated days: requests per calendar, and how long a silently
broken push channel hides a change.

Sets up N calendars (default 200; the issue's figure is 10,000: `--calendars 10000`), each of
its own Google account in the emulator (a subprocess, standing in for Google; the accounts and
their tokens seeded 1,000 a request, calsync's users, connections and bindings 1,000 a
transaction), then synced once and watched by two push channels, the first and its twin
(`--channels 1`: one) (and the account's calendarList
channel: per calendar here, the worst case — one calendar per connection) as calsync does it,
8 calendars at a time. Each binding imports and exports (one calendar
both ways), and calsync's webhook receiver is served (uvicorn, in this process) so the emulator's
notifications land as in production: a healthy channel announces Google-side edits and the echo
of calsync's own writes.

Traffic, a realistic mix (`--mix`, default `idle:0.7:0:0,light:0.2:2:1,busy:0.1:20:5`: share,
Google-side edits a day, CRM entries a day, each at random moments — Poisson): idle calendars
change on neither side; light ones a couple of times a day; busy ones twenty times a day in
Google and five times in the CRM (each CRM entry is pushed to Google at once, as the CRM-change
debounce would). A share of the calendars (`--broken`, default 5 %, across the classes) has
one channel (the first; `--silence-all`: every channel of the calendar) silenced after `--silence-after` days (default 1: until then every channel works, so calsync
learns each calendar's traffic as it would over its life) (the emulator's `POST /emulator/v1/channels/{id}/silence`: still live at
Google, delivering nothing). The days are simulated: every tick moves the emulator's clock and
calsync's (`calsync.clock`) by `--tick` seconds, makes the tick's changes, runs calsync's poll
tick (the in-process runner's `poll_once`, with the request budget) and channel renewal, and
waits for the syncs it queued — no real waiting.

Prints, from the emulator's request log and the sync runs: Calendar API requests and safety
polls per healthy calendar per day, per class (the bench's own edits made in Google are not
counted); and for each broken channel how long from the silencing's first change until calsync
caught it (re-created the channel), by the kind of that change (a CRM entry pushed to Google —
caught by its missing echo —, or an edit made in Google only — caught by a poll), and for every
edit made in Google while its channel was silent how long until it was in the CRM.

  uv run python bench/budget.py [--calendars 200] [--days 7] [--tick 120] [--broken 0.05]
  uv run python bench/budget.py --no-echo --silence-changes 0   # before: the daily poll alone
  uv run python bench/budget.py --silence-all   # both twins dead at once: only polls catch it
  uv run python bench/budget.py --calendars 10000 --days 2 --broken 0.01   # the issue's figure

Cost: the work is the syncs the traffic causes (≈ 4 a calendar a day with the default mix, ≈ 35
ms of this process's CPU each with its notification, echo and the bench's own edit) plus the
set-up (≈ 55 ms a calendar: first sync and two watches); at 10,000 calendars that is ≈ 10 min
of set-up and ≈ 22 min of CPU a simulated day, so `make bench` runs the default 200. Progress goes
to stderr; `--max-minutes` stops a long run and reports the simulated time it covered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import resource
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))
import latency as base_bench

from calsync import clock
from calsync.domain.activity import ActivityDraft, validate
from calsync.google.calendar import make_http_client
from calsync.jobs.budget import Budget
from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.polling import PollPolicy
from calsync.jobs.port import Reason
from calsync.settings import Settings
from calsync.store import activities, bindings, crypto, tenants
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import Activity, CalendarBinding, SyncRun
from calsync.sync.channels.kinds import CALENDAR_LIST, EVENTS_TWIN
from calsync.sync.channels.service import Channels, renew_due_channels
from calsync.sync.engine import sync_binding
from calsync.sync.tokens import GoogleAccess
from calsync.web import webhooks
from calsync.web.app import create_app

CLIENT_ID = "bench.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-bench"
RUN_STARTED = time.perf_counter()
TOKEN_SECONDS = 30 * 86400  # long-lived access tokens: refreshes are counted apart anyway


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cal:
    """One simulated calendar: its binding, account, class, and what happens to it."""

    binding_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    token: str
    klass: str = "idle"
    broken: bool = False
    #: the channels silenced (one of the calendar's two, or both with --silence-all)
    channel_ids: tuple[str, ...] = ()
    #: (simulated second, kind) of each change to make: "google" (an edit in Google) or "crm"
    plan: list[tuple[float, str]] = field(default_factory=list)
    first_change: tuple[float, str] | None = None  # the first after the silencing (broken)
    caught_at: float | None = None  # when calsync re-created the silent channel


def parse_mix(text: str) -> list[tuple[str, float, float, float]]:
    out = []
    for part in text.split(","):
        name, share, google, crm = part.split(":")
        out.append((name, float(share), float(google), float(crm)))
    return out


def poisson_times(rng: random.Random, per_day: float, seconds: float) -> list[float]:
    times: list[float] = []
    if per_day <= 0:
        return times
    t = rng.expovariate(per_day / 86400.0)
    while t < seconds:
        times.append(t)
        t += rng.expovariate(per_day / 86400.0)
    return times


async def prepare(http: httpx.AsyncClient, db: Database, n: int) -> tuple[uuid.UUID, list[Cal]]:
    """N accounts, each with a connection and a binding of its primary calendar both ways."""
    await http.post(
        "/emulator/v1/oauth-clients",
        json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": []},
    )
    async with db.session() as s:
        tenant = await tenants.create(s, f"bench-{uuid.uuid4().hex[:8]}")
        await s.commit()
    emails = [f"u{i}@budget.example" for i in range(n)]
    made = await base_bench.connect_accounts(
        http, db, tenant.id, emails, token_seconds=TOKEN_SECONDS, role="both", direction="two_way"
    )
    return tenant.id, [
        Cal(binding_id, user_id, email, token)
        for email, (user_id, binding_id, token) in zip(emails, made, strict=True)
    ]


async def first_syncs_and_watches(
    db: Database, access: GoogleAccess, settings: Settings, ids: list[uuid.UUID]
) -> None:
    service = Channels(db, access, settings)
    sem = asyncio.Semaphore(8)

    async def one(binding_id: uuid.UUID) -> None:
        async with sem:
            await sync_binding(db, binding_id, access, trigger="initial")
            assert await service.watch(binding_id), "watch failed"
            if EVENTS_TWIN.enabled(settings):  # its twin, staggered, as connecting makes it
                assert await service.watch(binding_id, EVENTS_TWIN), "twin watch failed"
            async with db.session() as s:
                binding = await bindings.get(s, binding_id)
                assert binding is not None
                connection_id = binding.connection_id
                await s.commit()
            # the connection's calendarList channel, as connecting makes it
            assert await service.watch(connection_id, CALENDAR_LIST), "list watch failed"

    await asyncio.gather(*(one(b) for b in ids))


def progress(what: str, wall0: float, cpu0: float) -> None:
    """A line on stderr while a long run goes on (wall and CPU seconds since the phase began,
    the load average)."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"[{time.perf_counter() - wall0:6.0f} s, {time.process_time() - cpu0:6.0f} s CPU, "
        f"load {load}] {what}",
        file=sys.stderr,
        flush=True,
    )


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="calsync-budget-"))
    port = free_port()
    emu = await base_bench.start_emulator(port, tmp / "emulator.log")
    emu_url = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=emu_url, timeout=60)
    load = os.getloadavg()
    try:
        await simulate(args, http, emu_url, tmp)
        print(
            f"  peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
            f" MB, the emulator {peak_rss_mb(emu.pid):.0f} MB; load average (1, 5, 15 min) "
            + " ".join(f"{x:.1f}" for x in load)
            + " at the start, "
            + " ".join(f"{x:.1f}" for x in os.getloadavg())
            + " at the end (2 cores)"
        )
    finally:
        await http.aclose()
        base_bench.stop_all([emu])


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident set (Linux's VmHWM; 0 where /proc has none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def simulate(
    args: argparse.Namespace, http: httpx.AsyncClient, emu_url: str, tmp: Path
) -> None:
    key = crypto.generate_key()
    keyring = crypto.Keyring([key])
    crypto.install(keyring)
    url = f"sqlite+aiosqlite:///{tmp / 'calsync.db'}"
    sock = free_socket()
    settings = Settings(
        database_url=url,
        secret_key=SecretStr(key),
        mode="production",
        public_url=f"http://127.0.0.1:{sock.getsockname()[1]}",  # calsync's receiver, below
        google_emulator_url=emu_url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr(CLIENT_SECRET),
        google_requests_per_minute=0,
        healthy_poll_interval_seconds=int(args.healthy_hours * 3600),
        push_channels_per_calendar=args.channels,
    )
    # the receiver's wait for a twin's message (1 s): the emulator sends both at once, so a
    # shorter wait coalesces them as well and the simulation waits less real time
    webhooks.TWIN_COALESCE_SECONDS = args.coalesce
    db = Database(url)
    await upgrade(db)
    access = GoogleAccess(settings, http=make_http_client(settings))
    rewatch_service = Channels(db, access, settings)

    async def rewatch(binding_id: uuid.UUID) -> bool:
        return await rewatch_service.rewatch(binding_id)

    budget = Budget(db)
    grace = timedelta(days=3650) if args.no_echo else timedelta(seconds=args.echo_grace)
    runner = InProcessRunner(
        db,
        access,
        concurrency=4,
        poll_policy=PollPolicy(
            healthy_interval=timedelta(hours=args.healthy_hours),
            silence_changes=args.silence_changes,
            echo_grace=grace,
        ),
        poll_every=None,
        stuck_every=None,
        budget=budget,
        rewatch=rewatch,
    )
    # calsync's own webhook receiver, served over HTTP for the emulator's notifications
    app = create_app(settings, database=db, keyring=keyring)
    app.state.jobs = runner
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.01)

    started, cpu_started = time.perf_counter(), time.process_time()
    tenant_id, cals = await prepare(http, db, args.calendars)
    progress(f"{len(cals)} accounts seeded", started, cpu_started)
    await first_syncs_and_watches(db, access, settings, [c.binding_id for c in cals])
    await asyncio.sleep(1.0)  # the channels' `sync` messages
    await runner.drain()
    progress("first syncs and watches done", started, cpu_started)
    setup = (time.perf_counter() - started, time.process_time() - cpu_started)

    rng = random.Random(16)
    mix = parse_mix(args.mix)
    day = 86400.0 * args.days
    shuffled = cals[:]
    rng.shuffle(shuffled)
    at = 0
    for name, share, google, crm in mix:
        count = round(share * len(cals))
        for cal in shuffled[at : at + count]:
            cal.klass = name
            cal.plan = sorted(
                [(t, "google") for t in poisson_times(rng, google, day)]
                + [(t, "crm") for t in poisson_times(rng, crm, day)]
            )
        at += count
    silence_at = 86400.0 * args.silence_after  # channels work (rates are learned) until then
    for cal in rng.sample(cals, max(1, round(len(cals) * args.broken))):
        cal.broken = True
        if not any(t >= silence_at for t, _ in cal.plan):  # an idle calendar's silence shows
            when = silence_at + rng.uniform(0, min(day - silence_at, 86400.0) * 0.9)
            cal.plan.append((when, rng.choice(["google", "crm"])))  # only when it changes
    silenced = False
    delivery_seq = 0

    seq = int((await http.get("/emulator/v1/requests?after=0")).json()["last_seq"])
    first_delivery = delivery_seq = await notified(http, 0, 0)
    sim_start = clock.utcnow()
    elapsed = 0.0
    google_edits: dict[str, tuple[Cal, float]] = {}  # subject → (calendar, when made)
    # every change of every calendar, in the order they are due (calendar order within a tick)
    agenda = sorted((t, i, kind) for i, cal in enumerate(cals) for t, kind in cal.plan)
    at_change = 0
    broken = [c for c in cals if c.broken]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    next_renewal = next_progress = 3600.0
    n = 0
    limit = RUN_STARTED + args.max_minutes * 60 if args.max_minutes else math.inf
    while elapsed < day and time.perf_counter() < limit:
        step = min(args.tick, day - elapsed)
        await http.post("/emulator/v1/clock", json={"advance_seconds": step})
        clock.advance(step)
        elapsed += step
        if not silenced and elapsed >= silence_at:
            silenced = True
            async with db.session() as s:
                channel_of = {
                    binding_id: tuple(c for c in pair if c)
                    for binding_id, *pair in (
                        await s.execute(
                            select(
                                CalendarBinding.id,
                                CalendarBinding.channel_id,
                                CalendarBinding.twin_channel_id,
                            )
                        )
                    ).all()
                }
            for cal in cals:
                if cal.broken:  # one channel (a broken Google channel), or every one
                    ids = channel_of[cal.binding_id]
                    cal.channel_ids = ids if args.silence_all else ids[:1]
                    for channel_id in cal.channel_ids:
                        await http.post(f"/emulator/v1/channels/{channel_id}/silence", json={})
        made_any = False
        announced: set[uuid.UUID] = set()  # calendars whose working channel will notify
        while at_change < len(agenda) and agenda[at_change][0] <= elapsed:
            _, i, kind = agenda[at_change]
            at_change += 1
            cal = cals[i]
            n += 1
            # made at this tick (the tick's resolution applies to every figure alike)
            silent = silenced and cal.broken and cal.caught_at is None
            if silent and cal.first_change is None:
                cal.first_change = (elapsed, kind)
            if not silent or (not args.silence_all and args.channels > 1):
                announced.add(cal.binding_id)  # (a twin still delivers)
            if kind == "google":
                subject = f"google edit {n}"
                await google_edit(http, cal, subject)
                if silent or not cal.broken:
                    google_edits[subject] = (cal, elapsed)
            else:
                await crm_entry(db, tenant_id, cal, f"crm entry {n}")
                await runner.enqueue_sync(cal.binding_id, Reason.CHANGE)
            made_any = True
        if made_any:
            await runner.drain()
            # the notifications (and echoes) land: one at least per working channel changed
            delivery_seq = await notified(http, delivery_seq, len(announced))
            await runner.drain()
        while True:  # a tick enqueues at most 1,000 polls: run passes until none is due
            before = runner.stats.started
            await runner.drain()
            await runner.poll_once()
            await runner.drain()
            if runner.stats.started == before:
                break
        if elapsed >= next_renewal:
            await renew_due_channels(db, access, settings)
            next_renewal += 3600.0
        await note_caught(db, broken, elapsed)
        if elapsed >= next_progress:
            progress(f"day {elapsed / 86400:.2f}, {runner.stats.started} syncs", wall0, cpu0)
            next_progress += 6 * 3600.0
    await runner.drain()
    await runner.stop()
    await budget.flush()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    log = (await http.get(f"/emulator/v1/requests?after={seq}")).json()["items"]
    attempts = (await http.get(f"/emulator/v1/deliveries?after={first_delivery}")).json()["items"]
    outcome: dict[str, int] = {}
    for d in attempts:
        key = f"{d['status'] or d['error']}" + (" (a retry)" if d["attempt"] > 1 else "")
        outcome[key] = outcome.get(key, 0) + 1
    print(f"  notifications delivered during the days, by the receiver's answer: {outcome}")
    async with db.session() as s:
        imported = dict(
            (
                await s.execute(
                    select(Activity.subject, Activity.created_at).where(
                        Activity.subject.like("google edit %")
                    )
                )
            ).all()
        )
        polls: dict[uuid.UUID, int] = {}
        for binding_id, trigger in (
            await s.execute(
                select(SyncRun.binding_id, SyncRun.trigger).where(SyncRun.started_at >= sim_start)
            )
        ).all():
            if trigger == "poll":
                polls[binding_id] = polls.get(binding_id, 0) + 1
    delivered = {
        subject: (cal, (created - sim_start).total_seconds() - when)
        for subject, (cal, when) in google_edits.items()
        if (created := imported.get(subject)) is not None
    }
    report(args, elapsed / 86400, log, cals, polls, delivered, google_edits, setup, cpu, wall)
    server.should_exit = True
    await serving
    sock.close()
    await access.aclose()
    if access.http is not None:  # ours, not closed by the access
        await access.http.aclose()
    await db.dispose()


async def notified(http: httpx.AsyncClient, after: int, expected: int) -> int:
    """Wait (real time, at most 5 s) until the emulator has delivered `expected` more
    notifications; returns the last delivery's number."""
    last = after
    deadline = time.monotonic() + 5.0
    while True:
        items = (await http.get(f"/emulator/v1/deliveries?after={after}")).json()["items"]
        if items:
            last = max(last, max(int(d["seq"]) for d in items))
        if len(items) >= expected or time.monotonic() > deadline:
            return last
        await asyncio.sleep(0.02)


async def google_edit(http: httpx.AsyncClient, cal: Cal, subject: str) -> None:
    start = (clock.utcnow() + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    body = {
        "summary": subject,
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
    }
    resp = await http.post(
        f"/calendar/v3/calendars/{cal.email}/events",
        json=body,
        headers={"Authorization": f"Bearer {cal.token}"},
    )
    assert resp.status_code == 200, resp.text


async def crm_entry(db: Database, tenant_id: uuid.UUID, cal: Cal, subject: str) -> None:
    start = (clock.utcnow() + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    values = validate(
        ActivityDraft(start=start, end=start + timedelta(hours=1), subject=subject, time_zone="UTC")
    )
    async with db.session() as s:
        await activities.create(
            s, tenant_id, type_key="meeting", owner_id=cal.user_id, values=values
        )
        await s.commit()


async def note_caught(db: Database, broken: list[Cal], elapsed: float) -> None:
    """A broken calendar is caught when calsync has replaced its silent channel(s)."""
    waiting = {c.binding_id: c for c in broken if c.channel_ids and c.caught_at is None}
    if not waiting:
        return
    async with db.session() as s:
        rows = (
            await s.execute(
                select(
                    CalendarBinding.id, CalendarBinding.channel_id, CalendarBinding.twin_channel_id
                ).where(CalendarBinding.id.in_(list(waiting)))
            )
        ).all()
    for binding_id, *now in rows:
        cal = waiting[binding_id]
        if not set(cal.channel_ids) & set(now):
            cal.caught_at = elapsed


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def minutes(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {pct(values, 50) / 60:.0f} min, p90 {pct(values, 90) / 60:.0f} min, "
        f"max {max(values) / 60:.0f} min, within 1 h {sum(1 for v in values if v <= 3600)}/"
        f"{len(values)}"
    )


def report(
    args: argparse.Namespace,
    days: float,
    log: list[dict[str, Any]],
    cals: list[Cal],
    polls: dict[uuid.UUID, int],
    delivered: dict[str, tuple[Cal, float]],
    google_edits: dict[str, tuple[Cal, float]],
    setup: tuple[float, float],
    cpu: float,
    wall: float,
) -> None:
    by_email = {c.email: c for c in cals}
    calendar = [e for e in log if not e["path"].startswith(("/token", "/emulator"))]
    spent: dict[str, int] = {}
    for e in calendar:
        cal = by_email.get(e["account"])
        if cal is None:
            continue
        spent[e["account"]] = spent.get(e["account"], 0) + 1
    edits = {c.email: 0 for c in cals}
    for cal, _ in google_edits.values():
        edits[cal.email] += 1
    print(
        f"calendars {len(cals)} ({sum(c.broken for c in cals)} with "
        + ("every channel silenced" if args.silence_all else "a silenced channel")
        + f", {args.channels} channel(s) a calendar), "
        f"{days:.3g} simulated day(s)"
        + (f" (of {args.days:g}: stopped by --max-minutes)" if days < args.days else "")
        + f", tick {args.tick:g} s, healthy poll every "
        f"{args.healthy_hours:g} h, silence rule {args.silence_changes:g} changes, echo "
        + ("off" if args.no_echo else f"grace {args.echo_grace:g} s")
        + f", mix {args.mix}"
    )
    print(
        f"  set-up {setup[0]:.0f} s wall, {setup[1]:.0f} s CPU; simulation {wall:.0f} s wall, "
        f"{cpu:.0f} s CPU (this process: calsync and the bench; the emulator apart)"
    )
    print("  healthy calendars, per calendar per day (calsync's Calendar API requests; polls):")
    for klass in dict.fromkeys(c.klass for c in cals):
        group = [c for c in cals if c.klass == klass and not c.broken]
        if not group:
            continue
        requests = sum(spent.get(c.email, 0) - edits[c.email] for c in group)
        n_polls = sum(polls.get(c.binding_id, 0) for c in group)
        changes = sum(1 for c in group for t, _ in c.plan if t <= days * 86400)
        print(
            f"    {klass:6} ({len(group):4}): {requests / len(group) / days:6.2f} requests, "
            f"{n_polls / len(group) / days:5.2f} safety polls "
            f"({changes / len(group) / days:.1f} changes a day)"
        )
    healthy = [c for c in cals if not c.broken]
    total = sum(spent.get(c.email, 0) - edits[c.email] for c in healthy)
    print(f"    all    ({len(healthy):4}): {total / len(healthy) / days:6.2f} requests")
    broken = [c for c in cals if c.broken]
    for kind, label in (("crm", "a CRM entry pushed"), ("google", "an edit in Google")):
        caught = [
            c.caught_at - c.first_change[0]
            for c in broken
            if c.first_change and c.first_change[1] == kind and c.caught_at is not None
        ]
        never = sum(
            1
            for c in broken
            if c.first_change and c.first_change[1] == kind and c.caught_at is None
        )
        print(
            f"  silent channel, first change {label} → caught: {minutes(caught)}"
            + (f"; not caught: {never}" if never else "")
        )
    # the bench's own edits in Google (subtracted above) are the user's, not calsync's
    for klass in dict.fromkeys(c.klass for c in cals):
        made = sum(
            1
            for c, when in google_edits.values()
            if c.broken and c.klass == klass and (c.caught_at is None or when < c.caught_at)
        )
        silent = [
            d
            for subject, (c, d) in delivered.items()
            if c.broken
            and c.klass == klass
            and (c.caught_at is None or google_edits[subject][1] < c.caught_at)
        ]
        if made:
            print(
                f"  edits in Google while silent ({klass}), made → in the CRM: {minutes(silent)}"
                f" (of {made}; {made - len(silent)} not arrived)"
            )
    ok = [d for _, (c, d) in delivered.items() if not c.broken]
    print(f"  edits in Google on healthy channels, made → in the CRM: {minutes(ok)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calendars", type=int, default=200)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=0,
        help="stop simulating when the run (set-up included) has taken this many minutes of"
        " wall time (0: never); the figures then cover the simulated time done",
    )
    parser.add_argument("--tick", type=float, default=120.0, help="simulated seconds per tick")
    parser.add_argument("--broken", type=float, default=0.05, help="share of silenced channels")
    parser.add_argument("--healthy-hours", type=float, default=24.0)
    parser.add_argument("--mix", default="idle:0.7:0:0,light:0.2:2:1,busy:0.1:20:5")
    parser.add_argument("--silence-changes", type=float, default=2.0, help="0: daily poll only")
    parser.add_argument("--echo-grace", type=float, default=120.0)
    parser.add_argument("--no-echo", action="store_true", help="no echo check (before)")
    parser.add_argument(
        "--silence-after", type=float, default=1.0, help="days of working channels first"
    )
    parser.add_argument(
        "--channels",
        type=int,
        choices=(1, 2),
        default=2,
        help="CALSYNC_PUSH_CHANNELS_PER_CALENDAR (2: twins)",
    )
    parser.add_argument(
        "--silence-all",
        action="store_true",
        help="silence every channel of a broken calendar, not one (then only polls catch it)",
    )
    parser.add_argument(
        "--coalesce",
        type=float,
        default=0.2,
        help="the receiver's wait for a twin's message, seconds (calsync: 1)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
