"""Admission control for the CRM API: at most `api_max_concurrent` requests of /api/v1 are
worked on at once per process; the rest wait their turn (first come, first served), and only
one that waited `api_queue_seconds` is answered 503 with Retry-After.

Why: a CRM with many clients can keep any number of requests in flight. Each one in progress
takes turns on the event loop (and a database connection) that the webhook receiver, the
embedded runner's syncs and the outbound webhooks need too, so under such a load a change made
in Google waited behind the CRM's requests (issue 16). A request waiting here costs nothing
until it is admitted. The Google webhook receiver, the pages and /healthz are not gated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import Request

from ..errors import ApiError

RETRY_AFTER_SECONDS = 1


def _gate(request: Request, limit: int) -> asyncio.Semaphore:
    """The process's gate, made on first use in the app's event loop."""
    state = request.app.state
    gate: asyncio.Semaphore | None = getattr(state, "api_gate", None)
    if gate is None:
        gate = state.api_gate = asyncio.Semaphore(limit)
    return gate


async def admit(request: Request) -> AsyncIterator[None]:
    """Router dependency: hold one of the process's API slots for the request's duration."""
    settings = request.app.state.settings
    limit = settings.api_max_concurrent
    if limit <= 0:
        yield
        return
    gate = _gate(request, limit)
    try:
        async with asyncio.timeout(settings.api_queue_seconds):
            await gate.acquire()
    except TimeoutError:
        raise ApiError(
            503,
            "busy",
            "calsync is working on as many API requests as it takes at once",
            f"retry after {RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            gate.release()
