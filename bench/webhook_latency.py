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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
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
                with arrivals.lock:
                    arrivals.seen.setdefault(event["data"]["activity"]["subject"], at)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hooks"


async def measure(
    setup: base_bench.Setup, emu_url: str, changes: int, arrivals: Arrivals
) -> list[float]:
    rng = random.Random(7)
    out: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(changes):
            _, email, token = rng.choice(setup.owners)
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
                with arrivals.lock:
                    at = arrivals.seen.get(subject)
                if at is not None:
                    out.append(at - t0)
                    break
                if time.perf_counter() - t0 > 60:
                    raise RuntimeError(f"no webhook for {subject}")
                await asyncio.sleep(0.005)
    return out


async def run(n: int, changes: int, tick: float) -> list[float]:
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
        emu = base_bench.spawn(
            [
                sys.executable,
                "-m",
                "gcal_emulator",
                "--port",
                str(emu_port),
                *base_bench.EMULATOR_FLAGS,
            ],
            dict(os.environ),
            log,
        )
        procs.append(emu)
        await base_bench.wait_up(f"{emu_url}/.well-known/openid-configuration", emu, log)
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
        env = {
            **os.environ,
            "CALSYNC_DATABASE_URL": database_url,
            "CALSYNC_SECRET_KEY": key,
            "CALSYNC_MODE": "production",
            "CALSYNC_PUBLIC_URL": base,
            "CALSYNC_GOOGLE_EMULATOR_URL": emu_url,
            "CALSYNC_GOOGLE_CLIENT_ID": base_bench.CLIENT_ID,
            "CALSYNC_GOOGLE_CLIENT_SECRET": base_bench.CLIENT_SECRET,
            "CALSYNC_GOOGLE_REQUESTS_PER_MINUTE": "0",
            "CALSYNC_LOG_LEVEL": "WARNING",
            "CALSYNC_WEBHOOK_ALLOW_PRIVATE": "true",
            "CALSYNC_WEBHOOK_TICK_SECONDS": str(tick),
        }
        web = base_bench.spawn(
            [str(bin_dir / "calsync"), "serve", "--port", str(port), "--no-migrate"], env, log
        )
        procs.append(web)
        await base_bench.wait_up(f"{base}/healthz", web, log)
        await base_bench.watch_all(setup, access, binding_ids)
        await access.aclose()
        await base_bench.settle(setup, "embedded")
        latencies = await measure(setup, emu_url, changes, arrivals)
        if arrivals.bad:
            raise RuntimeError(f"{arrivals.bad} webhooks did not verify")
        await setup.db.dispose()
        return latencies
    finally:
        if server is not None:
            server.shutdown()
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bindings", type=int, default=20)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--tick", type=float, default=1.0, help="CALSYNC_WEBHOOK_TICK_SECONDS")
    args = parser.parse_args()
    values = asyncio.run(run(args.bindings, args.changes, args.tick))
    ms = [v * 1000 for v in values]
    print(
        f"Google change → webhook delivered, {len(ms)} changes, {args.bindings} bindings, "
        f"SQLite, embedded runner, tick {args.tick} s:"
    )
    for p in (50, 90, 99):
        print(f"  p{p}: {base_bench.pct(ms, p):.0f} ms")
    print(f"  max: {max(ms):.0f} ms")


if __name__ == "__main__":
    main()
