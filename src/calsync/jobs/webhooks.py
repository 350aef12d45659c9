"""The outbound webhook deliverer: every `webhook_tick_seconds` (CALSYNC_WEBHOOK_TICK_SECONDS)
each runner claims the due deliveries (store/webhook_deliveries.py) and POSTs them.

Standard Webhooks: headers `webhook-id` (the message id, the same on every retry and replay),
`webhook-timestamp` (this attempt's Unix time) and `webhook-signature` (`v1,<base64 HMAC-SHA256
of "id.timestamp.body">`, signed by standardwebhooks' own `Webhook.sign`; during a secret's
rotation overlap the previous secret's signature follows, space-separated). The body is
`{"type", "timestamp", "data"}`. 2xx is success; anything else, a timeout (10 s), a refused
target or a redirect (never followed) is a failed attempt retried on the schedule. The response
body is never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from calsync import runtime
from calsync.store import webhook_deliveries as deliveries
from calsync.store import webhooks
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.sync.webhook_targets import UnsafeTarget, check_url

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
BATCH = 50
#: attempts in flight to one endpoint (its URL) at a time, per process: a burst of CRM writes
#: queues dozens of deliveries to one receiver, often one small CRM server. With BATCH and
#: TIMEOUT_SECONDS, the last of a batch all for one silent receiver starts within the claim's
#: lease (webhook_deliveries.CLAIM_LEASE), so no other process takes it meanwhile (a test
#: pins it).
PER_ENDPOINT = 10


def body_of(claim: deliveries.Claimed) -> str:
    return json.dumps(
        {
            "type": claim.type,
            "timestamp": claim.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "data": claim.payload,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def headers_for(claim: deliveries.Claimed, body: str, at: datetime) -> dict[str, str]:
    signatures = " ".join(
        Webhook(secret).sign(claim.message_id, at, body) for secret in claim.secrets
    )
    return {
        "webhook-id": claim.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": "calsync-webhooks",
    }


class Deliverer:
    """Claims and sends due deliveries; safe to run in several processes at once."""

    def __init__(
        self,
        db: Database,
        *,
        allow_private: bool,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.allow_private = allow_private
        self.clock = clock
        self.transport = transport
        self._wake: asyncio.Event | None = None
        self._notify: Callable[[], None] | None = None

    async def run_and_wait(self, tick: float) -> None:
        """The embedded runner's loop body: send what is due, then wait for the next tick or
        for a commit in this process that wrote deliveries, whichever comes first."""
        if self._wake is None:
            loop = asyncio.get_running_loop()
            wake = self._wake = asyncio.Event()

            def notify() -> None:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(wake.set)

            self._notify = notify
            webhooks.add_listener(notify)
        self._wake.clear()
        try:
            try:
                await self.run()
            except Exception:  # the database away: log, and try again at the next tick
                log.exception("webhook deliveries failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
        except asyncio.CancelledError:
            self.close()
            raise

    def close(self) -> None:
        if self._notify is not None:
            webhooks.remove_listener(self._notify)
        self._notify = None
        self._wake = None

    async def run(self) -> int:
        """Send everything due now (in batches); returns how many attempts were made."""
        sent = 0
        while True:
            async with self.db.session() as s:
                claimed = await deliveries.claim_due(s, self.clock(), BATCH)
                await s.commit()
            if not claimed:
                return sent
            async with runtime.http_client(  # the process's TLS context, not a new one a batch
                timeout=TIMEOUT_SECONDS, follow_redirects=False, transport=self.transport
            ) as client:
                await self._send(client, claimed)
            sent += len(claimed)
            if len(claimed) < BATCH:
                return sent

    async def _send(self, client: httpx.AsyncClient, claimed: list[deliveries.Claimed]) -> None:
        """Attempt the claimed deliveries at once (PER_ENDPOINT at a time to one endpoint) and
        write the outcomes as they come: those that finished while the previous ones were being
        written go in one transaction (a busy process — on SQLite the one writer shared with
        the API and the sync — pays a few transactions a batch, not one per delivery; an idle
        one records each at once)."""
        finished: asyncio.Queue[tuple[deliveries.Claimed, deliveries.Attempt] | None]
        finished = asyncio.Queue()
        # PER_ENDPOINT attempts at a time to one receiver; other endpoints do not wait for it
        slots = {c.url: asyncio.Semaphore(PER_ENDPOINT) for c in claimed}

        async def attempt(claim: deliveries.Claimed) -> None:
            outcome = None
            try:
                async with slots[claim.url]:
                    outcome = (claim, await self._attempt(client, claim))
            except Exception:  # not recorded: sent again (same webhook-id) after the lease
                log.exception(
                    "webhook delivery attempt failed", extra={"message_id": claim.message_id}
                )
            finally:
                finished.put_nowait(outcome)

        tasks = [asyncio.create_task(attempt(claim)) for claim in claimed]
        try:
            waiting = len(tasks)
            while waiting:
                done = [await finished.get()]
                while not finished.empty():
                    done.append(finished.get_nowait())
                waiting -= len(done)
                await self._record([d for d in done if d is not None])
        finally:
            for task in tasks:
                task.cancel()  # only when recording failed: the rest are sent after the lease
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _record(self, done: list[tuple[deliveries.Claimed, deliveries.Attempt]]) -> None:
        if not done:
            return
        async with self.db.session() as s:
            statuses = await deliveries.record_attempts(
                s, [attempt for _, attempt in done], now=self.clock()
            )
            await s.commit()
        for (claim, attempt), status in zip(done, statuses, strict=True):
            log_args: dict[str, Any] = {
                "message_id": claim.message_id,
                "attempt": claim.attempt,
                "status": status,
                "http_status": attempt.http_status,
                "latency_ms": attempt.latency_ms,
            }
            if attempt.error is not None:
                log.warning("webhook delivery failed: %s", attempt.error, extra=log_args)
            else:
                log.info("webhook delivered", extra=log_args)

    async def _attempt(
        self, client: httpx.AsyncClient, claim: deliveries.Claimed
    ) -> deliveries.Attempt:
        body = body_of(claim)
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            target = await check_url(claim.url, allow_private=self.allow_private)
            headers = headers_for(claim, body, self.clock())
            extensions = {}
            if target.host is not None:  # connect to the checked address, named as registered
                headers["host"] = target.host
            if target.sni_hostname is not None:
                extensions["sni_hostname"] = target.sni_hostname
            async with client.stream(
                "POST",
                target.connect_url,
                content=body.encode("utf-8"),
                headers=headers,
                extensions=extensions,
            ) as response:
                status = response.status_code  # the body is never read
            if not 200 <= status < 300:
                error = _status_error(status)
        except UnsafeTarget as exc:
            error = exc.message
        except httpx.TimeoutException:
            error = f"no answer within {TIMEOUT_SECONDS:.0f} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = int((time.monotonic() - started) * 1000)
        return deliveries.Attempt(claim.delivery_id, error is None, status, latency, error)


def _status_error(status: int) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: a redirect (calsync does not follow redirects)"
    return f"HTTP {status}"
