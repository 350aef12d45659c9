"""The embedded runner keeps slots free for changes: a pass of safety-net polls that queues every
binding (after a restart or an outage) never makes a webhook, a CRM change or Sync now wait for
a poll to finish."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from calsync.jobs.inprocess import InProcessRunner, reserved_slots
from calsync.jobs.port import Reason
from calsync.sync.engine import RunResult
from calsync.sync.errors import Outcome


class SlowExecutor:
    """Runs that last until released, recording which start and how many run at once."""

    def __init__(self) -> None:
        self.started: list[tuple[uuid.UUID, Reason]] = []
        self.release = asyncio.Event()
        self.running = 0
        self.most = 0

    async def run(self, binding_id: uuid.UUID, reason: Reason, full: bool) -> RunResult:
        self.started.append((binding_id, reason))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return RunResult(Outcome.OK)


def runner(concurrency: int, executor: SlowExecutor) -> InProcessRunner:
    # database and Google are never touched: no ticks, and nothing is left queued at stop
    unused: Any = None
    return InProcessRunner(
        unused,
        unused,
        concurrency=concurrency,
        executor=executor,  # type: ignore[arg-type]
        poll_every=None,
        stuck_every=None,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize(("concurrency", "reserved"), [(1, 0), (2, 1), (4, 1), (16, 4)])
def test_a_quarter_of_the_slots_is_kept_from_polls(concurrency: int, reserved: int) -> None:
    assert reserved_slots(concurrency) == reserved


@pytest.mark.parametrize("reason", [Reason.WEBHOOK, Reason.CHANGE, Reason.MANUAL])
async def test_a_change_starts_while_polls_fill_the_queue(reason: Reason) -> None:
    slow = SlowExecutor()
    jobs = runner(4, slow)
    await jobs.start()
    polls = [uuid.uuid4() for _ in range(20)]
    for binding_id in polls:
        await jobs.enqueue_sync(binding_id, Reason.POLL)
    await settle()
    assert [r for _, r in slow.started] == [Reason.POLL] * 3  # one slot stays free

    change = uuid.uuid4()
    await jobs.enqueue_sync(change, reason)
    await settle()
    assert slow.started[-1] == (change, reason)  # started without waiting for a poll
    assert slow.running == 4

    slow.release.set()
    await jobs.drain()
    assert sorted(b for b, _ in slow.started) == sorted([*polls, change])
    assert slow.most == 4
    await jobs.stop()


async def test_a_single_slot_still_runs_polls() -> None:
    slow = SlowExecutor()
    slow.release.set()
    jobs = runner(1, slow)
    await jobs.start()
    polls = [uuid.uuid4() for _ in range(3)]
    for binding_id in polls:
        await jobs.enqueue_sync(binding_id, Reason.POLL)
    await jobs.drain()
    assert [b for b, _ in slow.started] == polls
    await jobs.stop()


async def test_an_echo_waits_behind_google_news_and_joins_a_waiting_push() -> None:
    """Google's notification of calsync's own write (Reason.ECHO) ranks with the pushes: a
    change made in Google starts first, and an echo for a binding whose push is waiting joins
    that push (its run reads Google's changes first) instead of making a run of its own."""
    slow = SlowExecutor()
    jobs = runner(1, slow)
    await jobs.start()
    busy, echo, news, pushed = (uuid.uuid4() for _ in range(4))
    await jobs.enqueue_sync(busy, Reason.WEBHOOK)
    await settle()  # the one slot is taken
    await jobs.enqueue_sync(echo, Reason.ECHO)
    await jobs.enqueue_sync(pushed, Reason.CHANGE)
    await jobs.enqueue_sync(news, Reason.WEBHOOK)
    await jobs.enqueue_sync(pushed, Reason.ECHO)
    slow.release.set()
    await jobs.drain()
    assert slow.started == [
        (busy, Reason.WEBHOOK),
        (news, Reason.WEBHOOK),
        (echo, Reason.ECHO),
        (pushed, Reason.CHANGE),
    ]
    await jobs.stop()
