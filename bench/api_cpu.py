"""CPU of one CRM API call in process: no server, no runner, no network (issue 16's API target).

calsync's app is called through httpx's ASGITransport on a fresh SQLite database (or
--database-url), one tenant, one owner whose week holds 20 activities with a guest each. Then,
in rounds: list that week (GET /api/v1/activities?owner&from&to), create an activity in another
month (POST), patch one of the week's activities with If-Match (PATCH), and the three in a row
(mix), each --calls times. Printed per operation: CPU milliseconds per call (the process's CPU
time, aiosqlite's thread included) as the median, the 25th percentile and the minimum of the
rounds — on a shared machine the low figures are the ones that compare; the load average is
printed before and after. On PostgreSQL also the server's share: the CPU of the backends
serving calsync's connections (bench/incremental.py's ServerCpu), as the mean per call over all
rounds (the kernel counts it in 10 ms ticks).

A/B against another checkout: run it with that checkout's src first on PYTHONPATH, e.g.
`PYTHONPATH=../base/src uv run python bench/api_cpu.py`.

  uv run python bench/api_cpu.py [--calls 20] [--rounds 40] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from incremental import ServerCpu

from calsync.settings import Settings
from calsync.store import apikeys, crypto, tenants, users
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.web.app import create_app

A = "/api/v1/activities"


def body(owner: uuid.UUID, i: int, month: str) -> dict[str, Any]:
    day = 2 + i % 5
    return {
        "subject": f"Entry {i}",
        "start": f"2025-{month}-0{day}T09:00:00",
        "end": f"2025-{month}-0{day}T10:00:00",
        "time_zone": "Europe/Oslo",
        "owner_id": str(owner),
        "attendees": [{"email": f"guest{i % 3}@example.com"}],
    }


async def measure(
    calls: int, rounds: int, url: str | None
) -> tuple[dict[str, list[float]], dict[str, float]]:
    tmp = Path(tempfile.mkdtemp())
    url = url or f"sqlite+aiosqlite:///{tmp / 'calsync.db'}"
    ring = crypto.Keyring([crypto.generate_key()])
    crypto.install(ring)
    fresh = Database(url, pooled=False)
    await upgrade(fresh)
    await fresh.dispose()
    db = Database(url)
    async with db.session() as s:
        tenant = await tenants.create(s, f"bench-{uuid.uuid4()}")
        _, key = await apikeys.create(s, tenant.id)
        owner = (await users.create(s, tenant.id, "ann@example.com")).id
        await s.commit()
    app = create_app(Settings(data_dir=tmp, mode="sandbox"), database=db, keyring=ring)
    auth = {"Authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as c:
        week: list[list[Any]] = []
        for i in range(20):
            resp = await c.post(A, json=body(owner, i, "06"), headers=auth)
            assert resp.status_code == 201, resp.text
            week.append([resp.json()["id"], 1])
        listing = f"{A}?owner={owner}&from=2025-06-02T00:00:00Z&to=2025-06-09T00:00:00Z"
        count = [0]

        async def list_week() -> None:
            assert (await c.get(listing, headers=auth)).status_code == 200

        async def create() -> None:
            count[0] += 1
            resp = await c.post(A, json=body(owner, count[0], "07"), headers=auth)
            assert resp.status_code == 201, resp.text

        async def patch() -> None:
            count[0] += 1
            entry = week[count[0] % len(week)]
            headers = {**auth, "If-Match": f'"{entry[1]}"'}
            resp = await c.patch(f"{A}/{entry[0]}", json={"subject": "Moved"}, headers=headers)
            assert resp.status_code == 200, resp.text
            entry[1] += 1

        async def mix() -> None:
            await list_week()
            await create()
            await patch()

        ops: dict[str, Callable[[], Awaitable[None]]] = {
            "list a week": list_week,
            "create": create,
            "patch": patch,
            "mix (3 calls)": mix,
        }
        for op in ops.values():  # warm-up: caches, compiled statements, pools
            for _ in range(20):
                await op()
        out: dict[str, list[float]] = {name: [] for name in ops}
        server_ms = dict.fromkeys(ops, 0.0)
        server = ServerCpu(url) if db.dialect == "postgresql" else None
        for _ in range(rounds):
            for name, op in ops.items():
                backends = server.seconds() if server else 0.0
                started = time.process_time()
                for _ in range(calls):
                    await op()
                out[name].append((time.process_time() - started) / calls * 1000)
                if server:
                    server_ms[name] += (server.seconds() - backends) * 1000 / (calls * rounds)
        if server:
            server.conn.close()
    await db.dispose()
    return out, (server_ms if server else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per operation and round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results, server = asyncio.run(measure(args.calls, args.rounds, args.database_url))
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    extra = f" {'server mean':>12s}" if server else ""
    print(f"{'CPU ms per call':16s} {'median':>8s} {'p25':>8s} {'min':>8s}{extra}")
    for name, values in results.items():
        values.sort()
        p25 = values[len(values) // 4]
        line = f"{name:16s} {statistics.median(values):8.2f} {p25:8.2f} {values[0]:8.2f}"
        print(line + (f" {server[name]:12.2f}" if server else ""))


if __name__ == "__main__":
    main()
