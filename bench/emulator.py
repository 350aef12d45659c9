"""How many requests per second this machine's gcal_emulator serves (`make bench`).

Starts the emulator in a subprocess exactly as `make run` does (or uses --url), seeds one calendar
with --events events through batch requests, then for each scenario runs N concurrent httpx
clients for --seconds and prints requests/second with p50/p99 latency:

  list-2500   events.list pages of maxResults=2500, walking the pages of the seeded calendar
  insert      single events.insert calls

This is a whole-run benchmark, not a test: numbers depend on the machine and on sharing its
CPUs between the clients and the server. "server p50" is the time the emulator itself spent per
request (its request log), without the network and the client's JSON parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

BATCH_SIZE = 1000
EMAIL = "bench@example.com"


@dataclass
class Result:
    scenario: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    server_ms: list[float] = field(default_factory=list)  # from the emulator's request log

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return _percentile([x * 1000 for x in self.latencies], p)


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcal_emulator", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/emulator/v1/clock", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the emulator did not start")


def stop_emulator(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def event_body(i: int) -> dict[str, object]:
    start = datetime(2030, 1, 1, 8, tzinfo=UTC) + timedelta(hours=i)
    return {
        "summary": f"Bench meeting {i}",
        "description": "Seeded by bench/emulator.py",
        "location": "Room 1",
        "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(minutes=30)).isoformat(), "timeZone": "UTC"},
    }


def batch_body(first: int, count: int, boundary: str) -> bytes:
    parts = []
    for i in range(first, first + count):
        body = json.dumps(event_body(i))
        parts.append(
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <seed+{i}>\r\n\r\n"
            "POST /calendar/v3/calendars/primary/events HTTP/1.1\r\n"
            f"Content-Type: application/json\r\n\r\n{body}\r\n"
        )
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


def seed(url: str, events: int) -> str:
    """Create the bench account and its events; returns an access token."""
    with httpx.Client(base_url=url, timeout=600) as http:
        http.post("/emulator/v1/reset").raise_for_status()
        http.post("/emulator/v1/accounts", json={"email": EMAIL}).raise_for_status()
        token = str(
            http.post(f"/emulator/v1/accounts/{EMAIL}/tokens", json={}).json()["access_token"]
        )
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "multipart/mixed; boundary=seed_boundary",
        }
        t0 = time.perf_counter()
        for first in range(0, events, BATCH_SIZE):
            count = min(BATCH_SIZE, events - first)
            resp = http.post(
                "/batch/calendar/v3",
                content=batch_body(first, count, "seed_boundary"),
                headers=headers,
            )
            resp.raise_for_status()
            failed = resp.text.count("HTTP/1.1 4") + resp.text.count("HTTP/1.1 5")
            if failed:
                raise SystemExit(f"seeding: {failed} of {count} inserts failed")
        took = time.perf_counter() - t0
        print(f"seeded {events} events in {took:.1f} s ({events / took:.0f} inserts/s in batches)")
        return token


Call = Callable[[httpx.AsyncClient], Awaitable[bool]]


def list_pages() -> Call:
    page_token: list[str | None] = [None]

    async def call(client: httpx.AsyncClient) -> bool:
        params = {"maxResults": "2500"}
        token = page_token[0]
        if token:
            params["pageToken"] = token
        resp = await client.get("/calendar/v3/calendars/primary/events", params=params)
        if resp.status_code != 200:
            return False
        page_token[0] = resp.json().get("nextPageToken")
        return True

    return call


def inserts() -> Call:
    counter = [10_000_000]

    async def call(client: httpx.AsyncClient) -> bool:
        counter[0] += 1
        resp = await client.post(
            "/calendar/v3/calendars/primary/events", json=event_body(counter[0])
        )
        return resp.status_code == 200

    return call


async def run(url: str, token: str, name: str, call: Call, clients: int, seconds: float) -> Result:
    """`clients` connections, each warmed up by one unmeasured call, then timed together."""
    result = Result(name, clients)
    async with httpx.AsyncClient(base_url=url) as control:
        log_start = (await control.get("/emulator/v1/requests?after=999999999999")).json()[
            "last_seq"
        ]
    auth = {"Authorization": f"Bearer {token}"}
    pool = [httpx.AsyncClient(base_url=url, headers=auth, timeout=120) for _ in range(clients)]
    try:
        await asyncio.gather(*(call(client) for client in pool))
        deadline = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                if await call(client):
                    result.latencies.append(time.perf_counter() - t0)
                else:
                    result.errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in pool))
        result.seconds = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    async with httpx.AsyncClient(base_url=url, timeout=120) as control:
        log = (await control.get(f"/emulator/v1/requests?after={log_start}")).json()["items"]
    result.server_ms = [r["duration_ms"] for r in log if r["path"].endswith("/events")]
    return result


def print_table(results: list[Result]) -> None:
    head = f"{'scenario':<12} {'clients':>7} {'requests':>9} {'req/s':>9} {'p50 ms':>8} "
    head += f"{'p99 ms':>8} {'server p50':>10} {'errors':>6}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.scenario:<12} {r.clients:>7} {len(r.latencies):>9} {r.rate:>9.1f} "
            f"{r.percentile(50):>8.1f} {r.percentile(99):>8.1f} "
            f"{_percentile(r.server_ms, 50):>10.1f} {r.errors:>6}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", help="bench a running emulator instead of starting one")
    parser.add_argument("--events", type=int, default=10_000, help="events to seed (10000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario and level (5)")
    parser.add_argument("--clients", default="1,8", help="comma-separated concurrency levels (1,8)")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",") if n.strip()]

    proc = None
    url = args.url
    if not url:
        proc, url = start_emulator()
    try:
        token = seed(url, args.events)
        results: list[Result] = []
        for name, factory in (("list-2500", list_pages), ("insert", inserts)):
            for clients in levels:
                results.append(asyncio.run(run(url, token, name, factory(), clients, args.seconds)))
        print()
        print(f"gcal_emulator at {url}, {os.cpu_count()} CPUs, {args.events} seeded events")
        print_table(results)
        best: dict[str, float] = {}
        for r in results:
            best[r.scenario] = max(best.get(r.scenario, 0.0), r.rate)
        print("best: " + ", ".join(f"{k} {v:.0f} req/s" for k, v in best.items()))
    finally:
        if proc is not None:
            stop_emulator(proc)


if __name__ == "__main__":
    main()
