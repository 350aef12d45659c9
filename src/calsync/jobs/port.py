"""The one port through which anything asks for a sync: web (webhooks, Sync now, CRM changes),
the CLI and periodic ticks all call `JobQueue`; a runner decides when and where the sync runs.

Two runners implement it (DESIGN.md "When syncs run"): in-process asyncio for the embedded
default, and procrastinate on PostgreSQL for many workers. Both guarantee one sync per binding at
a time and coalesce requests that arrive while one is queued or running.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

#: a periodic job: a coroutine function without arguments (channel renewal, polling)
Periodic = Callable[[], Awaitable[object]]


class Reason(StrEnum):
    WEBHOOK = "webhook"  # Google push notification
    ECHO = "echo"  # a notification while the channel owes the echo of calsync's own write
    CHANGE = "change"  # a CRM activity changed (debounced)
    POLL = "poll"  # safety-net polling
    MANUAL = "manual"  # "Sync now": jumps the queue
    INITIAL = "initial"  # first sync after connecting or choosing calendars
    RETRY = "retry"  # backoff after a failed run


#: a notification's wait for its twin's message (web/webhooks.py, TWIN_COALESCE_SECONDS): a
#: request of these reasons asked `delay` seconds ahead, up to HOLD_SECONDS. A second such
#: request for the binding while the first waits ends the wait: the twin's message is in, and
#: the sync, starting after both, reads what either announced (both runners)
HELD = frozenset({Reason.WEBHOOK, Reason.ECHO})
HOLD_SECONDS = 2.0


def holds(reason: Reason, delay: float) -> bool:
    """Whether a request is a notification waiting for its twin's message."""
    return reason in HELD and 0 < delay <= HOLD_SECONDS


@dataclass(frozen=True)
class SyncRequest:
    binding_id: uuid.UUID
    reason: Reason
    full: bool = False


@runtime_checkable
class JobQueue(Protocol):
    async def enqueue_sync(
        self, binding_id: uuid.UUID, reason: Reason, *, full: bool = False, delay: float = 0.0
    ) -> None:
        """Ask for a sync of one binding. Requests for a binding already queued coalesce into
        the queued one (a `full` request upgrades it); MANUAL jumps ahead of others."""
        ...

    async def start(self) -> None:
        """Begin running jobs and periodic ticks (polling, channel renewal, stuck-lock release)."""
        ...

    async def stop(self) -> None:
        """Stop taking jobs; let in-flight syncs finish (or hand them back) before returning."""
        ...

    def register_periodic(self, name: str, interval: float, work: Periodic) -> None:
        """Run `work` every `interval` seconds while started (once per cluster on
        procrastinate). Register before `start`."""
        ...

    def healthy(self) -> bool:
        """For /readyz: the runner is started and its loop is alive."""
        ...

    def queue_depth(self) -> int:
        """Jobs waiting (for /metrics)."""
        ...
