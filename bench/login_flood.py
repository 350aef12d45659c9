"""Login flood: how an unauthenticated password flood slows everyone else's API calls.

Starts `calsync serve` as its own process (SQLite, a fresh data directory), creates a tenant, a
user with a password and an API key with the CLI, then measures the p50/p90 of an API call
(`GET /api/v1/users` with the key) and of `/readyz`, first on an idle server and then while
`--concurrency` clients post wrong passwords to /login as fast as they are answered, and prints
the logins answered per second by status (401 = password checked, 429 = throttled).

`--no-throttle` raises the login limits out of reach, so what is left is the cost of the
password checks themselves (scrypt, which runs in a worker thread rather than on the event
loop). `--src DIR` runs another checkout's `src` (e.g. the code before a change) with the same
script: `git archive <commit> src | tar -x -C /tmp/before` then `--src /tmp/before/src`.

  uv run python bench/login_flood.py [--seconds 8] [--concurrency 16] [--no-throttle] [--src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from calsync.store import crypto

CLI = [sys.executable, "-c", "from calsync.cli import main; main()"]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
EMAIL = "victim@bench.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


async def probe(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int
) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = await client.get(path, headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, resp.text
        await asyncio.sleep(0.02)
    return times


def figures(times: list[float]) -> str:
    q = statistics.quantiles(times, n=10)
    return f"p50 {statistics.median(times):7.1f} ms  p90 {q[8]:7.1f} ms  (n={len(times)})"


async def flood(base: str, stop: asyncio.Event, answers: Counter[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        token = CSRF.search((await c.get("/login")).text)
        assert token is not None
        data = {"csrf": token.group(1), "email": EMAIL, "password": "wrong guess", "company": ""}
        while not stop.is_set():
            answers[(await c.post("/login", data=data)).status_code] += 1


async def measure(base: str, key: str, seconds: float, concurrency: int) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        idle_api = await probe(c, "/api/v1/users", auth, 100)
        idle_ready = await probe(c, "/readyz", {}, 100)
        print(f"idle       API {figures(idle_api)}")
        print(f"idle    readyz {figures(idle_ready)}")
        stop = asyncio.Event()
        answers: Counter[int] = Counter()
        flooders = [asyncio.create_task(flood(base, stop, answers)) for _ in range(concurrency)]
        await asyncio.sleep(1.0)  # the flood is under way
        t0 = time.perf_counter()
        api: list[float] = []
        ready: list[float] = []
        while time.perf_counter() - t0 < seconds:
            api += await probe(c, "/api/v1/users", auth, 5)
            ready += await probe(c, "/readyz", {}, 5)
        elapsed = time.perf_counter() - t0 + 1.0
        stop.set()
        await asyncio.gather(*flooders)
        print(f"flooded    API {figures(api)}")
        print(f"flooded readyz {figures(ready)}")
        rate = ", ".join(f"{s}: {n / elapsed:.1f}/s" for s, n in sorted(answers.items()))
        print(f"login answers ({concurrency} clients): {rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-throttle", action="store_true")
    parser.add_argument("--src", type=Path, help="run this checkout's src instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "CALSYNC_DATA_DIR": str(Path(tmp) / "data"),
            "CALSYNC_MODE": "production",
            "CALSYNC_SECRET_KEY": crypto.generate_key(),
            "CALSYNC_LOG_LEVEL": "WARNING",
        }
        env.pop("CALSYNC_DATABASE_URL", None)
        if args.src:
            env["PYTHONPATH"] = str(args.src.resolve())
        if args.no_throttle:
            env["CALSYNC_LOGIN_FAILURES_PER_ACCOUNT"] = "1000000000"
            env["CALSYNC_LOGIN_FAILURES_PER_ADDRESS"] = "1000000000"
        cli(env, "migrate")
        cli(env, "tenant", "create", "Bench")
        cli(env, "user", "create", "--tenant", "Bench", EMAIL)
        cli(env, "user", "set-password", "--tenant", "Bench", "--password", "right one!", EMAIL)
        key = cli(env, "apikey", "create", "--tenant", "Bench", "--user", EMAIL)
        port = free_port()
        server = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--no-migrate"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            print(f"code: {args.src or 'this checkout'}; throttle: {not args.no_throttle}")
            asyncio.run(measure(base, key, args.seconds, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
