"""Outbound webhooks: endpoints and the outbox (all SQL; the deliveries' state machine is in
webhook_deliveries.py).

Writing a message is part of the change it reports. A writer calls `emit` (or, for activities,
`changes.record` does) while its transaction is open; just before that transaction commits,
`_write_outbox` inserts one `webhook_message` and one `webhook_delivery` per enabled endpoint of
the tenant that wants the event type. Both commit with the change or neither does: a crash
never loses a message and never invents one. A tenant without endpoints pays one indexed read,
or none when the writer learnt it with a row it read anyway (`note_endpoints`: an activity
edit's locked read).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, event, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, Session, object_session

from .base import utcnow
from .models import Activity
from .statuses import ChangeOrigin, DeliveryStatus
from .webhook_models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from .webhook_payloads import activity_payload

ACTIVITY_CREATED = "activity.created"
ACTIVITY_UPDATED = "activity.updated"
ACTIVITY_DELETED = "activity.deleted"
CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
CONNECTION_RECONNECTED = "connection.reconnected"
CALENDAR_PAUSED = "calendar.paused"
SYNC_ISSUE = "sync.issue"
#: every event type, in the order docs/webhooks.md lists them
EVENT_TYPES: tuple[str, ...] = (
    ACTIVITY_CREATED,
    ACTIVITY_UPDATED,
    ACTIVITY_DELETED,
    CONNECTION_NEEDS_REAUTH,
    CONNECTION_RECONNECTED,
    CALENDAR_PAUSED,
    SYNC_ISSUE,
)
SECRET_PREFIX = "whsec_"
#: after a rotation the previous secret signs too for this long (both signatures are sent)
ROTATION_OVERLAP = timedelta(hours=24)

_PENDING = "calsync.webhooks.pending"
_NO_ENDPOINTS = "calsync.webhooks.no_endpoints"  # tenants read without one in this transaction
_WRITTEN = "calsync.webhooks.written"
#: called after a commit that wrote deliveries (the embedded runner's deliverer wakes at once
#: rather than at its next tick); each must be cheap and safe from any thread
_listeners: list[Callable[[], None]] = []


def add_listener(callback: Callable[[], None]) -> None:
    _listeners.append(callback)


def remove_listener(callback: Callable[[], None]) -> None:
    if callback in _listeners:
        _listeners.remove(callback)


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes (Standard Webhooks' secret format)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(16)


# the outbox ---------------------------------------------------------------------------------


@dataclass
class _Pending:
    tenant_id: uuid.UUID
    type: str
    data: dict[str, Any] | None = None
    activity: Activity | None = None  # rendered just before commit, when the row is final
    source: str | None = None


def emit(session: AsyncSession, tenant_id: uuid.UUID, type_: str, data: dict[str, Any]) -> None:
    """Report an event with this transaction: written to the outbox when it commits."""
    _queue(session).append(_Pending(tenant_id, type_, data=data))


def activity_changed(session: AsyncSession, activity: Activity, kind: str, origin: str) -> None:
    """An activity was created/updated/deleted (`changes.record`); `origin` sync means the
    change came from Google, anything else (API, CLI) from the CRM."""
    source = "google" if origin == ChangeOrigin.SYNC else "crm"
    _queue(session).append(
        _Pending(activity.tenant_id, f"activity.{kind}", activity=activity, source=source)
    )


def endpoints_enabled(
    tenant_id: ColumnElement[uuid.UUID] | QueryableAttribute[uuid.UUID],
) -> ColumnElement[bool]:
    """Whether the tenant has an enabled endpoint: an EXISTS a writer that reads a row of the
    tenant anyway adds to that SELECT, then passes to `note_endpoints`."""
    return exists().where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.enabled.is_(True))


def note_endpoints(session: AsyncSession, tenant_id: uuid.UUID, enabled: bool) -> None:
    """The tenant has no enabled endpoint (`enabled` False), as read in this transaction: its
    commit writes no outbox row without reading the endpoints again (one SELECT fewer for
    every sync that edits an activity). Read under the writer's lock — on SQLite the
    database's write lock, so no endpoint can appear before the commit; on PostgreSQL the
    commit's own read had the same race with an endpoint created meanwhile."""
    if not enabled:
        session.sync_session.info.setdefault(_NO_ENDPOINTS, set()).add(tenant_id)


def noted_without_endpoints(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether this transaction read, under its write lock, that the tenant has no enabled
    endpoint (`note_endpoints`; SQLite's `changes.reserve` does): then nothing is to be sent."""
    return tenant_id in session.sync_session.info.get(_NO_ENDPOINTS, ())


def _endpoints_changed(session: Session, tenant_id: uuid.UUID) -> None:
    """An endpoint made or switched on in this transaction: what `note_endpoints` noted for
    the tenant no longer holds."""
    session.info.get(_NO_ENDPOINTS, set()).discard(tenant_id)


def _queue(session: AsyncSession) -> list[_Pending]:
    queue: list[_Pending] = session.sync_session.info.setdefault(_PENDING, [])
    return queue


@event.listens_for(Session, "before_commit")
def _write_outbox(session: Session) -> None:
    """Runs inside the committing transaction (on the async session's greenlet, so plain
    `session.execute` may do I/O)."""
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    without: set[uuid.UUID] = session.info.pop(_NO_ENDPOINTS, set())
    if all(item.tenant_id in without for item in pending):
        return
    session.flush()  # the activities' final columns (created_at, version) before rendering
    wanted: dict[uuid.UUID, list[WebhookEndpoint]] = {t: [] for t in without}
    deliveries: list[WebhookDelivery] = []
    now = utcnow()
    for item in pending:
        if item.tenant_id not in wanted:
            wanted[item.tenant_id] = list(
                session.scalars(
                    select(WebhookEndpoint).where(
                        WebhookEndpoint.tenant_id == item.tenant_id,
                        WebhookEndpoint.enabled.is_(True),
                    )
                )
            )
        targets = [e for e in wanted[item.tenant_id] if e.events is None or item.type in e.events]
        if not targets:
            continue
        data = item.data
        if item.activity is not None:
            data = {"source": item.source, "activity": activity_payload(item.activity)}
        message = WebhookMessage(
            id=new_message_id(),
            tenant_id=item.tenant_id,
            type=item.type,
            payload=data or {},
            created_at=now,
        )
        session.add(message)
        for endpoint in targets:
            deliveries.append(
                WebhookDelivery(
                    tenant_id=item.tenant_id,
                    message_id=message.id,
                    endpoint_id=endpoint.id,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    if deliveries:
        session.flush()  # the messages first (no ORM relationship orders the inserts)
        session.add_all(deliveries)
        session.flush()
        session.info[_WRITTEN] = True


@event.listens_for(Session, "after_commit")
def _written(session: Session) -> None:
    if session.info.pop(_WRITTEN, False):
        for callback in list(_listeners):
            callback()


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_NO_ENDPOINTS, None)
    session.info.pop(_WRITTEN, None)


# endpoints ----------------------------------------------------------------------------------


async def create_endpoint(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    url: str,
    events: Sequence[str] | None,
    description: str | None,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id,
        url=url,
        events=list(events) if events is not None else None,
        description=description,
        secret=new_secret(),
        enabled=True,
        consecutive_failures=0,
    )
    session.add(endpoint)
    _endpoints_changed(session.sync_session, tenant_id)
    await session.flush()
    return endpoint


async def endpoints(session: AsyncSession, tenant_id: uuid.UUID) -> Sequence[WebhookEndpoint]:
    result = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return result.all()


async def endpoint(
    session: AsyncSession, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    return await session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id
        )
    )


def set_enabled(endpoint: WebhookEndpoint, enabled: bool, reason: str | None = None) -> None:
    """Enable (clears the failure state; waiting deliveries resume) or disable with a reason."""
    endpoint.enabled = enabled
    endpoint.updated_at = utcnow()
    session = object_session(endpoint)
    if session is not None:
        _endpoints_changed(session, endpoint.tenant_id)
    if enabled:
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        endpoint.consecutive_failures = 0
    else:
        endpoint.disabled_at = utcnow()
        endpoint.disabled_reason = reason


def rotate_secret(endpoint: WebhookEndpoint, now: datetime | None = None) -> str:
    """A new secret; the current one keeps signing beside it for ROTATION_OVERLAP."""
    now = now or utcnow()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    return endpoint.secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    found = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_until is not None
        and endpoint.previous_secret_until > now
    ):
        found.append(endpoint.previous_secret)
    return found


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    await session.delete(endpoint)
    await session.flush()
