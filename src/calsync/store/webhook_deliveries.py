"""Outbound webhook deliveries: claiming the due ones, recording each attempt, the log per
endpoint and replays (all SQL). The state is all here, so a deliverer that starts after a crash
finds exactly what is due.

A claim pushes the delivery's `next_attempt_at` one lease ahead in one UPDATE that also picks
the due rows (on PostgreSQL under FOR UPDATE SKIP LOCKED), so two deliverers never send the same
delivery at the same time; a deliverer that dies mid-send leaves it due again when the lease ends
(at-least-once, with the same `webhook-id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .statuses import DeliveryStatus
from .webhook_models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from .webhooks import signing_secrets

#: seconds before attempt n+1 (Standard Webhooks' example schedule: immediately, 5 s, 5 min,
#: 30 min, 2 h, 5 h, 10 h, 10 h — about 27 hours in all); after the last, exhausted
RETRY_DELAYS: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
#: how long a claimed delivery is left to its sender before another deliverer may take it
CLAIM_LEASE = timedelta(seconds=60)
DUE = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)


@dataclass(frozen=True)
class Claimed:
    delivery_id: uuid.UUID
    message_id: str
    type: str
    payload: dict[str, Any]
    created_at: datetime
    url: str
    secrets: list[str]
    attempt: int  # this attempt's number, from 1


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[Claimed]:
    """Take up to `limit` due deliveries of enabled endpoints (commit to hold the claim).

    One UPDATE takes them: its subquery picks the due rows inside the UPDATE itself (SQLite
    runs it under the database's write lock; PostgreSQL locks them FOR UPDATE SKIP LOCKED, so
    another deliverer's claim skips rather than waits), then one read of what was taken."""
    due = (
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status.in_(DUE),
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)  # nothing on SQLite
    )
    taken = (
        (
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due))
                .values(next_attempt_at=now + CLAIM_LEASE)
                .returning(WebhookDelivery.id)
                .execution_options(synchronize_session=False)
            )
        )
        .scalars()
        .all()
    )
    if not taken:
        return []
    rows = await session.execute(
        select(WebhookDelivery, WebhookMessage, WebhookEndpoint)
        .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(taken))
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    return [
        Claimed(
            delivery_id=delivery.id,
            message_id=message.id,
            type=message.type,
            payload=message.payload,
            created_at=message.created_at,
            url=endpoint.url,
            secrets=signing_secrets(endpoint, now),
            attempt=delivery.attempts + 1,
        )
        for delivery, message, endpoint in rows.all()
    ]


@dataclass(frozen=True)
class Attempt:
    """How one attempt went, as the deliverer saw it."""

    delivery_id: uuid.UUID
    ok: bool
    http_status: int | None
    latency_ms: int
    error: str | None


async def record_attempts(
    session: AsyncSession, attempts: Sequence[Attempt], now: datetime | None = None
) -> list[str | None]:
    """Settle attempts, in order, in one transaction (the deliverer writes those that finished
    together at once): success, the next try, or exhaustion. An exhausted delivery whose
    endpoint has not answered 2xx since that message was written (a whole retry schedule of
    failures, about a day) disables the endpoint. Returns each delivery's new status (None: its
    endpoint was deleted meanwhile)."""
    now = now or utcnow()
    if not attempts:
        return []
    found = await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.id.in_({a.delivery_id for a in attempts}))
    )
    by_id = {delivery.id: delivery for delivery in found}
    endpoints = {
        endpoint.id: endpoint
        for endpoint in await session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.id.in_({d.endpoint_id for d in by_id.values()})
            )
        )
    }
    statuses: list[str | None] = []
    for attempt in attempts:
        delivery = by_id.get(attempt.delivery_id)
        if delivery is None:
            statuses.append(None)
            continue
        _settle(delivery, endpoints.get(delivery.endpoint_id), attempt, now)
        statuses.append(delivery.status)
    await session.flush()
    return statuses


def _settle(
    delivery: WebhookDelivery, endpoint: WebhookEndpoint | None, attempt: Attempt, now: datetime
) -> None:
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_http_status = attempt.http_status
    delivery.last_latency_ms = attempt.latency_ms
    delivery.last_error = attempt.error[:500] if attempt.error else None
    delivery.updated_at = now
    if attempt.ok:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.next_attempt_at = None
        if endpoint is not None:
            endpoint.consecutive_failures = 0
            endpoint.last_success_at = now
        return
    if endpoint is not None:
        endpoint.consecutive_failures += 1
    if delivery.attempts < len(RETRY_DELAYS):
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[delivery.attempts])
        return
    delivery.status = DeliveryStatus.EXHAUSTED
    delivery.next_attempt_at = None
    if (
        endpoint is not None
        and endpoint.enabled
        and (endpoint.last_success_at is None or endpoint.last_success_at < delivery.created_at)
    ):
        endpoint.enabled = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"every attempt failed for {len(RETRY_DELAYS)} tries over about a day "
            f"(last: {delivery.last_error or attempt.http_status}); fix the receiver, then "
            'enable the endpoint again (PATCH {"enabled": true}) and replay what it '
            "missed"
        )


@dataclass(frozen=True)
class LogEntry:
    delivery: WebhookDelivery
    type: str


async def log(session: AsyncSession, endpoint_id: uuid.UUID, limit: int = 50) -> Sequence[LogEntry]:
    """The endpoint's deliveries, newest first."""
    rows = await session.execute(
        select(WebhookDelivery, WebhookMessage.type)
        .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return [LogEntry(delivery, type_) for delivery, type_ in rows.all()]


async def message(
    session: AsyncSession, tenant_id: uuid.UUID, message_id: str
) -> WebhookMessage | None:
    return await session.scalar(
        select(WebhookMessage).where(
            WebhookMessage.id == message_id, WebhookMessage.tenant_id == tenant_id
        )
    )


async def replay(
    session: AsyncSession, endpoint: WebhookEndpoint, message: WebhookMessage
) -> WebhookDelivery:
    """A new delivery of the same message (same `webhook-id`), due now."""
    now = utcnow()
    delivery = WebhookDelivery(
        tenant_id=endpoint.tenant_id,
        message_id=message.id,
        endpoint_id=endpoint.id,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    await session.flush()
    return delivery
