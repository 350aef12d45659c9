"""Admission control (CALSYNC_API_MAX_CONCURRENT): at most N API requests are worked on at
once per process; the rest wait their turn, and 503 with Retry-After only after waiting
CALSYNC_API_QUEUE_SECONDS (issue 16: a CRM's many clients must not starve the sync)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from calsync.settings import Settings
from calsync.store import crypto
from calsync.store.db import Database
from calsync.web.app import create_app

from .conftest import World, make_world

C = "/api/v1/changes"


@pytest.fixture
def app_settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path, mode="sandbox", api_max_concurrent=2, api_queue_seconds=0.05)


def state_of(client: httpx.AsyncClient) -> Any:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app.state  # type: ignore[attr-defined]


def gate_of(client: httpx.AsyncClient) -> asyncio.Semaphore:
    gate: asyncio.Semaphore = state_of(client).api_gate
    return gate


async def test_a_request_waits_for_a_free_slot(world: World, client: httpx.AsyncClient) -> None:
    assert (await world.call("GET", C)).status_code == 200  # the gate exists now
    gate = gate_of(client)
    await gate.acquire()
    await gate.acquire()  # both slots taken, as by two requests in progress
    refused = await world.call("GET", C)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "busy"

    waiting = asyncio.create_task(world.call("GET", C))
    await asyncio.sleep(0)
    gate.release()  # a slot frees up while the request waits: it is admitted
    assert (await waiting).status_code == 200
    gate.release()
    assert (await world.call("GET", C)).status_code == 200
    # and the schema says a CRM may meet it
    spec = (await client.get("/openapi.json")).json()
    assert "503" in spec["paths"][C]["get"]["responses"]


async def test_never_more_than_the_limit_at_once(world: World, client: httpx.AsyncClient) -> None:
    """Ten requests at once, the limit two: each one in progress holds a slot, none is
    refused (a free slot comes within the queue time), all slots are free afterwards."""
    state = state_of(client)
    state.settings = state.settings.model_copy(update={"api_queue_seconds": 60.0})
    assert (await world.call("GET", C)).status_code == 200
    gate = gate_of(client)
    lowest = 2
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal lowest
        while not done.is_set():
            lowest = min(lowest, gate._value)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    answers = await asyncio.gather(*(world.call("GET", C, params={"limit": 10}) for _ in range(10)))
    done.set()
    await watcher
    assert [a.status_code for a in answers if a.status_code != 200] == []
    assert lowest == 0 and gate._value == 2 and not gate.locked()


async def test_on_by_default_below_the_connection_pool(
    db: Database, keyring: crypto.Keyring, tmp_path: Any
) -> None:
    """Default: 10 at once, fewer than a process's pooled connections (SQLAlchemy's 5 + 10),
    so the API alone never takes every connection from the webhooks and the pushes (under
    bench/api_load.py on PostgreSQL the pool timed out ~100 times in 30 s without it)."""
    app = create_app(Settings(data_dir=tmp_path, mode="sandbox"), database=db, keyring=keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as c:
        world = await make_world(db, c)
        assert (await world.call("GET", C)).status_code == 200
        gate = gate_of(c)
        assert gate._value == 10
    pool = db.engine.pool
    assert 10 < pool.size() + pool._max_overflow  # type: ignore[attr-defined]
