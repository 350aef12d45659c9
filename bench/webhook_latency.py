"""Outbound webhook latency: a change made in Google (the emulator) → the `activity.created`
webhook arriving at the CRM's receiver.

Reuses bench/latency.py's set-up (every part its own process: the emulator standing in for
Google, `calsync serve` with the embedded runner on SQLite; N connected bindings with push
channels), registers a webhook endpoint pointing at a receiver in this process, then makes M
changes one after another (events.insert on a random binding's calendar) and times until the
receiver gets the signed message for that event (verified with standardwebhooks). The path:
emulator → push notification → /webhooks/google → runner → engine → outbox (same transaction)
→ the deliverer's tick → POST.

  uv run python bench/webhook_latency.py [--bindings 20] [--changes 200] [--tick 1.0]
  uv run python bench/webhook_latency.py --kill-every 10

With `--kill-every K`, every K-th change is followed (after a random 0–300 ms: before, during or
after its sync and delivery) by `kill -9` of calsync and a restart; those changes are left out
of the latency figures. At the end every change must have arrived, each as one message: the
script counts messages per change (a second message for one change would be an invented
one) and redeliveries of one `webhook-id` (allowed: at least once), and exits 1 on a loss or an
invented message.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

sys.path.insert(0, str(Path(__file__).parent))
import latency as base_bench

from calsync.store import crypto, webhooks
from calsync.store.models import User


class Arrivals:
    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.seen: dict[str, float] = {}  # activity subject → perf_counter at arrival
        self.ids: dict[str, set[str]] = {}  # activity subject → the webhook-ids that told it
        self.deliveries = 0
        self.made: dict[str, float] = {}  # activity subject → perf_counter when made in Google
        self.back: dict[str, float] = {}  # killed change's subject → when calsync answered again
        self.lock = threading.Lock()
        self.bad = 0


def receiver(arrivals: Arrivals) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            at = time.perf_counter()
            self.send_response(204)
            self.end_headers()
            try:
                event: dict[str, Any] = arrivals.webhook.verify(body, dict(self.headers.items()))
            except Exception:
                arrivals.bad += 1
                return
            if event["type"] == "activity.created":
                subject = event["data"]["activity"]["subject"]
                with arrivals.lock:
                    arrivals.seen.setdefault(subject, at)
                    arrivals.ids.setdefault(subject, set()).add(self.headers["webhook-id"])
                    arrivals.deliveries += 1

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hooks"


async def measure(
    setup: base_bench.Setup,
    emu_url: str,
    changes: int,
    arrivals: Arrivals,
    kill_every: int = 0,
    restart: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[float], list[str]]:
    """The latencies of the changes not followed by a kill, and every change's subject."""
    rng = random.Random(7)
    out: list[float] = []
    subjects: list[str] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(changes):
            _, email, token = rng.choice(setup.owners)
            subject = f"change {i} {uuid.uuid4().hex[:6]}"
            t0 = await base_bench.insert_in_google(
                http, emu_url, email, token, subject, day=1 + i % 20
            )
            subjects.append(subject)
            arrivals.made[subject] = t0
            if kill_every and restart is not None and i % kill_every == kill_every - 1:
                await asyncio.sleep(rng.uniform(0, 0.3))
                await restart()
                arrivals.back[subject] = time.perf_counter()
                continue
            while True:
                with arrivals.lock:
                    at = arrivals.seen.get(subject)
                if at is not None:
                    out.append(at - t0)
                    break
                if time.perf_counter() - t0 > 60:
                    raise RuntimeError(f"no webhook for {subject}")
                await asyncio.sleep(0.005)
    return out, subjects


async def run(
    n: int, changes: int, tick: float, kill_every: int = 0
) -> tuple[list[float], list[str], Arrivals, int]:
    """Latencies, the changes' subjects, what arrived, and how many times calsync was killed."""
    key = crypto.generate_key()
    crypto.install(crypto.Keyring([key]))
    tmp = Path(tempfile.mkdtemp(prefix="calsync-webhook-bench-"))
    database_url = f"sqlite+aiosqlite:///{tmp / 'calsync.db'}"
    emu_port, port = base_bench.free_port(), base_bench.free_port()
    emu_url, base = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    log = tmp / "processes.log"
    procs = []
    server = None
    try:
        procs.append(await base_bench.start_emulator(emu_port, log))
        setup, binding_ids = await base_bench.prepare(
            emu_url, database_url, f"{base}/webhooks/google", n, "inprocess", key, 4
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
            arrivals = Arrivals(endpoint.secret)
            server, url = receiver(arrivals)
            endpoint.url = url
            await s.commit()
        env = base_bench.calsync_env(
            database_url,
            key,
            base,
            emu_url,
            CALSYNC_WEBHOOK_ALLOW_PRIVATE="true",
            CALSYNC_WEBHOOK_TICK_SECONDS=str(tick),
        )
        serve = [str(bin_dir / "calsync"), "serve", "--port", str(port), "--no-migrate"]
        procs.append(base_bench.spawn(serve, env, log))
        await base_bench.wait_up(f"{base}/healthz", procs[-1], log)
        await base_bench.watch_all(setup, access, binding_ids)
        await access.aclose()
        if access.http is not None:  # first_syncs' own, not closed by the access
            await access.http.aclose()
        await base_bench.settle(setup, "embedded")
        kills = 0

        async def restart() -> None:
            nonlocal kills
            web = procs.pop()
            web.send_signal(signal.SIGKILL)
            web.wait()
            kills += 1
            procs.append(base_bench.spawn(serve, env, log))
            await base_bench.wait_up(f"{base}/healthz", procs[-1], log)

        latencies, subjects = await measure(setup, emu_url, changes, arrivals, kill_every, restart)
        # the killed changes: calsync catches up after its restart (recovery, the safety poll)
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:
            with arrivals.lock:
                if all(s in arrivals.seen for s in subjects):
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * tick + 1)  # room for a late duplicate to show itself
        if arrivals.bad:
            raise RuntimeError(f"{arrivals.bad} webhooks did not verify")
        await setup.db.dispose()
        return latencies, subjects, arrivals, kills
    finally:
        if server is not None:
            server.shutdown()
        base_bench.stop_all(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bindings", type=int, default=20)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--tick", type=float, default=1.0, help="CALSYNC_WEBHOOK_TICK_SECONDS")
    parser.add_argument(
        "--kill-every", type=int, default=0, help="kill -9 calsync after every K-th change"
    )
    args = parser.parse_args()
    values, subjects, arrivals, kills = asyncio.run(
        run(args.bindings, args.changes, args.tick, args.kill_every)
    )
    ms = [v * 1000 for v in values]
    print(
        f"Google change → webhook delivered, {len(ms)} changes, {args.bindings} bindings, "
        f"SQLite, embedded runner, tick {args.tick} s:"
    )
    for p in (50, 90, 99):
        print(f"  p{p}: {base_bench.pct(ms, p):.0f} ms")
    print(f"  max: {max(ms):.0f} ms")
    if args.kill_every:
        lost = [s for s in subjects if s not in arrivals.ids]
        invented = {s: ids for s, ids in arrivals.ids.items() if len(ids) > 1}
        repeats = arrivals.deliveries - sum(len(ids) for ids in arrivals.ids.values())
        print(
            f"Crash test: calsync killed -9 {kills} times (after every {args.kill_every}th "
            f"change); {len(subjects)} changes, {len(subjects) - len(lost)} delivered, "
            f"{len(lost)} lost, {len(invented)} with more than one message, "
            f"{repeats} redeliveries of one webhook-id"
        )
        killed = [s for s in arrivals.back if s in arrivals.seen]
        if killed:
            restarts = [arrivals.back[s] - arrivals.made[s] for s in killed]
            after = [max(0.0, arrivals.seen[s] - arrivals.back[s]) for s in killed]
            print(
                f"  kill + restart until calsync answered: median "
                f"{statistics.median(restarts):.1f} s, max {max(restarts):.1f} s; the killed "
                f"change arrived after that: median {statistics.median(after):.2f} s, "
                f"max {max(after):.2f} s"
            )
        if lost or invented:
            print(f"  lost: {lost[:10]}  invented: {list(invented.items())[:5]}")
            sys.exit(1)


if __name__ == "__main__":
    main()
