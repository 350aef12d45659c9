"""Push channels end to end: calsync served over real HTTP (uvicorn, in the test's loop) so the
emulator can deliver notifications to /webhooks/google, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from calsync import clock
from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.polling import PollPolicy
from calsync.jobs.port import Periodic, Reason
from calsync.store import bindings, connections, crypto
from calsync.store.db import Database
from calsync.sync.channels.service import Channels
from calsync.sync.engine import sync_binding
from calsync.sync.google_services import GoogleServices
from calsync.web.app import create_app
from tests.calsync.conftest import db, db_url, keyring, make_world  # noqa: F401
from tests.conftest import Emulator
from tests.web.conftest import Api, register_client, settings_for


@dataclass
class FakeJobs:
    """A stand-in runner: records every request; with `run=True` syncs in the background
    (one at a time per binding), like the real runner would."""

    db: Database
    services: GoogleServices
    run: bool = False
    requests: list[tuple[uuid.UUID, Reason]] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)  # each request's `delay`
    alive: bool = True
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    locks: dict[uuid.UUID, asyncio.Lock] = field(default_factory=dict)
    synced: int = 0

    async def enqueue_sync(
        self, binding_id: uuid.UUID, reason: Reason, *, full: bool = False, delay: float = 0.0
    ) -> None:
        self.requests.append((binding_id, reason))
        self.delays.append(delay)
        if self.run:
            task = asyncio.get_running_loop().create_task(self._sync(binding_id, reason))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _sync(self, binding_id: uuid.UUID, reason: Reason) -> None:
        lock = self.locks.setdefault(binding_id, asyncio.Lock())
        async with lock:
            await sync_binding(self.db, binding_id, self.services.access, trigger=reason.value)
            self.synced += 1

    async def start(self) -> None:
        self.alive = True

    async def stop(self) -> None:
        self.alive = False

    def register_periodic(self, name: str, interval: float, work: Periodic) -> None:
        pass

    def healthy(self) -> bool:
        return self.alive

    def queue_depth(self) -> int:
        return len(self.tasks)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Served(Api):
    """The connection-API helper, plus the served app's webhook URL and the fake runner."""

    url: str
    jobs: FakeJobs

    async def connected(self, email: str) -> tuple[uuid.UUID, str, uuid.UUID]:
        """A user connected through the real OAuth flow; (user id, key, import binding id)."""
        self.emu.account(email)
        user_id, key = await self.user(email)
        await self.connect(user_id, email)
        async with self.world.db.session() as s:
            conn = await connections.for_user(s, user_id)
            assert conn is not None
            found = list(await bindings.for_connection(s, conn.id))
        assert len(found) == 1
        # connecting queues the first sync at once (issue 12.5); the tests start after it
        assert self.jobs.requests == [(found[0].id, Reason.INITIAL)]
        if self.jobs.tasks:
            await asyncio.gather(*self.jobs.tasks)
        self.jobs.requests.clear()
        self.jobs.synced = 0
        return user_id, key, found[0].id

    async def binding(self, binding_id: uuid.UUID) -> Any:
        async with self.world.db.session() as s:
            return await bindings.get(s, binding_id)

    def channels(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.emu.control("GET", "/channels").json()["items"]
        return items

    def deliveries(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.emu.control("GET", "/deliveries").json()["items"]
        return items

    async def wait_for(self, check: Any, within: float = 10.0) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.05)


def channels_per_calendar(request: pytest.FixtureRequest) -> int:
    """`@pytest.mark.channels(2)`: the served app makes twins (test_twins.py); the other tests
    here pin what one channel a calendar does (CALSYNC_PUSH_CHANNELS_PER_CALENDAR=1)."""
    marker = request.node.get_closest_marker("channels")
    return int(marker.args[0]) if marker is not None else 1


@pytest.fixture
async def served(
    request: pytest.FixtureRequest,
    emulator: Emulator,
    db: Database,  # noqa: F811
    keyring: crypto.Keyring,  # noqa: F811
) -> AsyncIterator[Served]:
    register_client(emulator)
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = settings_for(
        emulator,
        webhook_url=f"{url}/webhooks/google",
        push_channels_per_calendar=channels_per_calendar(request),
    )
    app: FastAPI = create_app(settings, database=db, keyring=keyring)
    jobs = FakeJobs(db, app.state.google)
    app.state.jobs = jobs
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.01)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as client:
        world = await make_world(db, client)
        api = Served(world, app, emulator)
        api.url = url
        api.jobs = jobs
        yield api
        for t in list(jobs.tasks):
            await t
        services: GoogleServices = app.state.google
        await services.aclose()
        await services.access.http.aclose()  # type: ignore[union-attr]
    server.should_exit = True
    await task
    sock.close()


GRACE = timedelta(minutes=2)  # the echo grace of `runner`'s poll policy


@pytest.fixture
async def runner(served: Served) -> AsyncIterator[InProcessRunner]:
    """The real embedded runner, re-creating a suspect channel as production does
    (`Channels.rewatch`: the suspect or missing twins), polled only by `tick`."""
    database, access = served.world.db, served.services.access
    settings = served.services.settings

    async def rewatch(binding_id: uuid.UUID) -> bool:
        return await Channels(database, access, settings).rewatch(binding_id)

    made = InProcessRunner(
        database,
        access,
        poll_policy=PollPolicy(claim_hold=timedelta(seconds=60), echo_grace=GRACE),
        poll_every=None,
        stuck_every=None,
        rewatch=rewatch,
    )
    yield made
    await made.stop()
    clock.reset()


async def tick(served: Served, runner: InProcessRunner, seconds: float) -> None:
    """Both clocks `seconds` on, one poll tick, and what it started run to the end."""
    served.emu.control("POST", "/clock", {"advance_seconds": seconds})
    clock.advance(seconds)
    await runner.poll_once()
    await runner.drain()
