"""Budget-aware scheduling with real push channels (issue 16): an idle calendar whose channel
delivers costs at most two Google requests a day, counted in the emulator's request log; a
channel that silently stopped delivering is caught by the next poll that finds changes it did
not announce, replaced at once, and its calendar polled at the tenant's interval until a
notification arrives again. Simulated days: calsync's clock and the emulator's move together,
nothing waits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from calsync import clock
from calsync.jobs.budget import Budget
from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.polling import PollPolicy
from calsync.jobs.port import Reason
from calsync.sync.channels.service import Channels
from calsync.sync.engine import sync_binding
from tests.jobs.conftest import runs_of

from .conftest import Served

STEP = 600  # seconds of simulated time per poll tick
TENANT_INTERVAL = 300  # the default tenant poll interval


@pytest.fixture
async def sim(served: Served) -> AsyncIterator[Simulation]:
    simulation = Simulation(served)
    yield simulation
    await simulation.runner.stop()
    clock.reset()


class Simulation:
    """The served app with a real in-process runner whose polls the test ticks by hand."""

    def __init__(self, served: Served) -> None:
        self.served = served
        db, access = served.world.db, served.services.access
        settings = served.services.settings

        async def rewatch(binding_id: uuid.UUID) -> bool:
            return await Channels(db, access, settings).watch(binding_id)

        self.budget = Budget(db)
        self.runner = InProcessRunner(
            db,
            access,
            poll_policy=PollPolicy(claim_hold=timedelta(seconds=60)),
            poll_every=None,
            stuck_every=None,
            budget=self.budget,
            rewatch=rewatch,
        )

    def advance(self, seconds: float) -> None:
        self.served.emu.control("POST", "/clock", {"advance_seconds": seconds})
        clock.advance(seconds)

    async def tick(self, seconds: float = STEP) -> None:
        self.advance(seconds)
        await self.runner.poll_once()
        await self.runner.drain()

    def request_seq(self) -> int:
        return int(self.served.emu.control("GET", "/requests?after=0").json()["last_seq"])

    def requests_since(self, seq: int, account: str) -> list[dict[str, Any]]:
        """The account's requests (the emulator is shared: other tests' leftovers run too)."""
        items = self.served.emu.control("GET", f"/requests?after={seq}").json()["items"]
        return [r for r in items if r["account"] == account]

    async def polls(self, binding_id: uuid.UUID) -> int:
        runs = await runs_of(self.served.world.db, [binding_id])
        return len([r for r in runs if r.trigger == "poll"])


async def _connected(served: Served, email: str) -> tuple[uuid.UUID, uuid.UUID]:
    user_id, _, binding_id = await served.connected(email)
    await sync_binding(served.world.db, binding_id, served.services.access, trigger="initial")
    await served.wait_for(lambda: served.deliveries())  # the channel's `sync` message
    return user_id, binding_id


async def test_an_idle_calendar_with_a_healthy_channel_costs_at_most_two_requests_a_day(
    served: Served, sim: Simulation
) -> None:
    _, binding_id = await _connected(served, "idle@example.com")
    seq = sim.request_seq()
    for _ in range(24 * 3600 // STEP):
        await sim.tick()
    sent = sim.requests_since(seq, "idle@example.com")
    # today: a safety poll every 6 h (4 polls, each a token refresh and a list): 8 requests
    assert len(sent) <= 2, [(r["method"], r["path"]) for r in sent]
    assert await sim.polls(binding_id) <= 1
    # and the day's poll does come (at most a tenth of a day late: its jitter)
    for _ in range(int(0.1 * 24 * 3600) // STEP + 1):
        await sim.tick()
    assert await sim.polls(binding_id) == 1
    calendar_calls = [
        r for r in sim.requests_since(seq, "idle@example.com") if r["path"].startswith("/calendar/")
    ]
    assert len(calendar_calls) == 1, [(r["seq"], r["at"], r["query"][:50]) for r in calendar_calls]


async def test_a_silently_broken_channel_is_caught_replaced_and_distrusted_until_it_notifies(
    served: Served, sim: Simulation
) -> None:
    user_id, binding_id = await _connected(served, "mute@example.com")
    old = (await served.binding(binding_id)).channel_id
    served.emu.control("POST", f"/channels/{old}/silence", {"silent": True})
    served.insert_event("mute@example.com", "Missed by the channel")
    await sim.tick(60)
    assert served.jobs.requests == []  # no notification: calsync cannot know yet
    # the next safety poll (within the day and its jitter) finds the change
    while await sim.polls(binding_id) == 0:
        await sim.tick()
    subjects = [a["subject"] for a in await served.activities(user_id)]
    assert subjects == ["Missed by the channel"]
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is not None
    assert binding.channel_id != old  # re-created at once
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[old]["stopped"] is True and by_id[binding.channel_id]["stopped"] is False
    # until a notification arrives the calendar polls at the tenant's interval
    polled = await sim.polls(binding_id)
    for _ in range(3):
        await sim.tick(TENANT_INTERVAL + 1)
    assert await sim.polls(binding_id) == polled + 3
    # a change on the new channel is announced: the channel is trusted again
    served.insert_event("mute@example.com", "Announced")
    await served.wait_for(lambda: (binding_id, Reason.WEBHOOK) in served.jobs.requests)
    assert (await served.binding(binding_id)).channel_suspect_since is None
    polled = await sim.polls(binding_id)
    for _ in range(3):
        await sim.tick(TENANT_INTERVAL + 1)
    assert await sim.polls(binding_id) == polled  # back to the daily poll


async def test_a_poll_that_finds_only_announced_changes_trusts_the_channel(
    served: Served, sim: Simulation
) -> None:
    """A notification arrived but its sync has not run yet when the poll comes: the poll's
    changes were announced, so the channel keeps its trust (no new channel, no extra polls)."""
    _, binding_id = await _connected(served, "told@example.com")
    old = (await served.binding(binding_id)).channel_id
    served.insert_event("told@example.com", "Announced")
    await served.wait_for(lambda: served.jobs.requests)  # owed, not run (FakeJobs)
    await sim.runner.enqueue_sync(binding_id, Reason.POLL)
    await sim.runner.drain()
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is None and binding.channel_id == old
