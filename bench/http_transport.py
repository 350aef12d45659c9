"""CPU per Google request: calsync's HTTP transport (httpx's requests sent by aiohttp,
`calsync.runtime.Transport`) against httpx's own (httpcore + h11 + anyio), same client code.

    uv run python bench/http_transport.py [--rounds 5] [--calls 300]

The emulator runs in a child process, so `time.process_time` is the calsync process's CPU
alone. Two `CalendarClient`s, one per transport, make the same calls in alternating rounds:
an empty incremental events.list (what a webhook-triggered sync with nothing new sends), a
single events.insert, a page of 250 events, and a batch of 50 inserts. Prints the median CPU
per call of each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from calsync import runtime
from calsync.google import calls
from calsync.google.auth import StaticToken
from calsync.google.calendar import CalendarClient, make_http_client
from calsync.google.models import Event, EventDateTime
from calsync.settings import Settings


def serve(queue: Any) -> None:
    from gcal_emulator.server import EmulatorServer

    with EmulatorServer() as server:
        queue.put(server.url)
        while True:
            time.sleep(1)


def event(i: int) -> Event:
    start = dt.datetime(2031, 1, 1, 9, tzinfo=dt.UTC) + dt.timedelta(hours=i)
    return Event(
        summary=f"bench {i}",
        start=EventDateTime(date_time=start, time_zone="Europe/Oslo"),
        end=EventDateTime(date_time=start + dt.timedelta(minutes=30), time_zone="Europe/Oslo"),
    )


async def run(url: str, rounds: int, n: int) -> None:
    async with httpx.AsyncClient(base_url=url + "/emulator/v1", timeout=30) as control:
        (await control.post("/quotas", json={"enabled": False})).raise_for_status()
        cal = (await control.post("/accounts", json={"email": "b@bench.example"})).json()
        token = (await control.post("/accounts/b@bench.example/tokens", json={})).json()
    cal_id, auth = cal["primary_calendar_id"], StaticToken(token["access_token"], "b@bench.example")
    settings = Settings(google_emulator_url=url, google_requests_per_minute=0)
    own = httpx.AsyncHTTPTransport(verify=runtime.tls_context())
    clients = {
        "httpx's transport": CalendarClient(
            auth, settings=settings, http=make_http_client(settings, transport=own)
        ),
        "aiohttp (calsync)": CalendarClient(
            auth, settings=settings, http=make_http_client(settings)
        ),
    }
    first = clients["httpx's transport"]
    for i in range(250):  # the page listed below
        await first.insert_event(cal_id, event(i))
    counter = iter(range(1000, 10**9))
    latest = {"token": ""}

    async def catch_up(c: CalendarClient) -> None:
        """The newest sync token: what the empty listings below start from."""
        pages = c.list_events(cal_id, show_deleted=True, sync_token=latest["token"] or None)
        async for _ in pages:
            pass
        latest["token"] = pages.next_sync_token or ""

    async def empty_list(c: CalendarClient) -> None:
        async for _ in c.list_events(cal_id, sync_token=latest["token"]):
            pass

    async def insert(c: CalendarClient) -> None:
        await c.insert_event(cal_id, event(next(counter)))

    async def page_250(c: CalendarClient) -> None:
        async for _ in c.list_events(cal_id, show_deleted=True, max_results=250):
            break

    async def batch_50(c: CalendarClient) -> None:
        await c.batch([calls.events_insert(cal_id, event(next(counter))) for _ in range(50)])

    kinds: dict[str, tuple[Callable[[CalendarClient], Awaitable[None]], int]] = {
        "empty incremental list": (empty_list, n),
        "one events.insert": (insert, n // 3),
        "a page of 250 events": (page_250, n // 10),
        "a batch of 50 inserts": (batch_50, n // 30),
    }
    cpu: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for kind, (fn, calls_n) in kinds.items():
            for name, client in clients.items():
                await catch_up(client)
                await fn(client)  # warm
                began = time.process_time()
                for _ in range(calls_n):
                    await fn(client)
                cpu.setdefault((kind, name), []).append((time.process_time() - began) / calls_n)
    for client in clients.values():
        await client.http.aclose()
    names = list(clients)
    print(f"CPU per call, median of {rounds} alternating rounds; load {os.getloadavg()}")
    print(f"{'call':<26}" + "".join(f"{name:>20}" for name in names) + f"{'ratio':>8}")
    for kind in kinds:
        meds = [statistics.median(cpu[(kind, name)]) * 1000 for name in names]
        print(
            f"{kind:<26}" + "".join(f"{m:>17.3f} ms" for m in meds) + f"{meds[1] / meds[0]:>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=serve, args=(queue,), daemon=True)
    child.start()
    try:
        asyncio.run(run(queue.get(timeout=30), args.rounds, args.calls))
    finally:
        child.terminate()


if __name__ == "__main__":
    main()
