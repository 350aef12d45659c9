"""Throughput of calsync.google's CalendarClient against a local gcal_emulator.

    uv run python bench/google_client.py [--events 2000] [--page-size 250] [--rounds 5]

Measures events.list pages (full listing, read every page), single events.insert calls, and
batched inserts (default chunk 50). Rate limiting is off so the numbers show the client and
the emulator, not the 600/min budget. Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from calsync.google import calls
from calsync.google.auth import StaticToken
from calsync.google.calendar import CalendarClient
from calsync.google.models import Event, EventDateTime
from calsync.settings import Settings
from gcal_emulator.server import EmulatorServer


@dataclass
class Row:
    name: str
    http_requests: int
    items: int
    seconds: float

    def line(self) -> str:
        return (
            f"{self.name:<34} {self.http_requests:>8} {self.items:>8} {self.seconds:>8.2f}"
            f" {self.http_requests / self.seconds:>10.1f} {self.items / self.seconds:>10.1f}"
        )


def event(i: int) -> Event:
    start = dt.datetime(2031, 1, 1, 9, tzinfo=dt.UTC) + dt.timedelta(hours=i)
    return Event(
        summary=f"bench {i}",
        description="benchmark event",
        start=EventDateTime(date_time=start, time_zone="Europe/Oslo"),
        end=EventDateTime(date_time=start + dt.timedelta(minutes=30), time_zone="Europe/Oslo"),
    )


async def timed(fn: Callable[[], Awaitable[tuple[int, int]]]) -> tuple[int, int, float]:
    t0 = time.perf_counter()
    requests, items = await fn()
    return requests, items, time.perf_counter() - t0


def prepare(url: str) -> tuple[str, str]:
    """A clean emulator with one account: (primary calendar id, access token)."""
    with httpx.Client(base_url=url + "/emulator/v1", timeout=30) as control:
        control.post("/reset").raise_for_status()
        cal = control.post("/accounts", json={"email": "bench@example.com"}).json()
        tok = control.post("/accounts/bench@example.com/tokens", json={}).json()
    return str(cal["primary_calendar_id"]), str(tok["access_token"])


async def run(
    url: str, cal: str, token: str, n_events: int, page_size: int, rounds: int
) -> list[Row]:
    settings = Settings(google_emulator_url=url, google_requests_per_minute=0)
    rows: list[Row] = []
    async with CalendarClient(StaticToken(token, "bench@example.com"), settings=settings) as c:

        async def batched() -> tuple[int, int]:
            ops = [calls.events_insert(cal, event(i)) for i in range(n_events)]
            results = await c.batch(ops)
            assert all(isinstance(r, Event) for r in results)
            return -(-n_events // c.batch_size), n_events

        req, items, secs = await timed(batched)
        rows.append(Row(f"batched inserts (chunk {c.batch_size})", req, items, secs))

        async def single() -> tuple[int, int]:
            n = max(1, n_events // 10)
            for i in range(n):
                await c.insert_event(cal, event(n_events + i))
            return n, n

        req, items, secs = await timed(single)
        rows.append(Row("single inserts", req, items, secs))

        async def listing() -> tuple[int, int]:
            pages = items = 0
            for _ in range(rounds):
                it = c.list_events(cal, show_deleted=True, max_results=page_size)
                async for page in it:
                    pages += 1
                    items += len(page.items)
                assert it.next_sync_token
            return pages, items

        req, items, secs = await timed(listing)
        rows.append(Row(f"events.list pages ({page_size}/page)", req, items, secs))

        async def incremental() -> tuple[int, int]:
            it = c.list_events(cal, show_deleted=True, max_results=page_size)
            async for _ in it:
                pass
            sync_token = it.next_sync_token
            n = 0
            for _ in range(rounds * 20):
                inc = c.list_events(cal, sync_token=sync_token)
                async for _ in inc:
                    n += 1
                sync_token = inc.next_sync_token
            return n, 0

        req, items, secs = await timed(incremental)
        rows.append(Row("events.list incremental (empty)", req, items, secs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with EmulatorServer() as server:
        cal, token = prepare(server.url)
        rows = asyncio.run(run(server.url, cal, token, args.events, args.page_size, args.rounds))
    print(
        f"{'scenario':<34} {'HTTP req':>8} {'items':>8} {'seconds':>8} {'req/s':>10} {'items/s':>10}"
    )
    print("-" * 84)
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    main()
