"""/api/v1/webhook-endpoints: where calsync posts outbound webhooks (Standard Webhooks), their
secrets, delivery log and replays — admin keys only. The secret is shown at creation and at
rotation, never again. (web/webhooks.py is the other direction: Google's push receiver.)"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from calsync.store import webhook_deliveries as deliveries
from calsync.store import webhooks
from calsync.store.webhook_models import WebhookEndpoint
from calsync.sync.webhook_targets import UnsafeTarget, check_url

from ..deps import Admin, Session
from ..errors import ApiError, FieldProblem, not_found
from ..schemas import Strict

router = APIRouter(tags=["webhooks"])


class EndpointIn(Strict):
    url: str = Field(max_length=2048, description="http(s) URL of the CRM's receiver")
    events: list[str] | None = Field(
        default=None, description="event types to send (omit or null: every type)"
    )
    description: str | None = Field(default=None, max_length=500)


class EndpointPatch(Strict):
    url: str | None = Field(default=None, max_length=2048)
    events: list[str] | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(
        default=None,
        description="true enables a disabled endpoint again (its waiting "
        "deliveries resume); false stops sending",
    )


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str] | None
    description: str | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    last_success_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="whsec_…: verify signatures with it; shown only now")


class EndpointList(BaseModel):
    endpoints: list[EndpointOut]


class DeliveryOut(BaseModel):
    id: uuid.UUID
    message_id: str
    type: str
    status: str
    attempts: int
    http_status: int | None
    latency_ms: int | None
    error: str | None
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


def endpoint_out(e: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=e.id,
        url=e.url,
        events=list(e.events) if e.events is not None else None,
        description=e.description,
        enabled=e.enabled,
        disabled_at=e.disabled_at,
        disabled_reason=e.disabled_reason,
        consecutive_failures=e.consecutive_failures,
        last_success_at=e.last_success_at,
        previous_secret_expires_at=e.previous_secret_until if e.previous_secret else None,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def _with_secret(e: WebhookEndpoint) -> EndpointWithSecret:
    return EndpointWithSecret(**endpoint_out(e).model_dump(), secret=e.secret)


def delivery_out(entry: deliveries.LogEntry) -> DeliveryOut:
    d = entry.delivery
    return DeliveryOut(
        id=d.id,
        message_id=d.message_id,
        type=entry.type,
        status=d.status,
        attempts=d.attempts,
        http_status=d.last_http_status,
        latency_ms=d.last_latency_ms,
        error=d.last_error,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        created_at=d.created_at,
    )


def _check_events(events: list[str] | None) -> None:
    if events is None:
        return
    unknown = [e for e in events if e not in webhooks.EVENT_TYPES]
    if unknown or not events:
        valid = ", ".join(webhooks.EVENT_TYPES)
        raise ApiError(
            422,
            "unknown_event_type",
            f"unknown event types: {', '.join(unknown)}" if unknown else "events is empty",
            f"use some of: {valid} (or leave events out for all of them)",
            fields=[FieldProblem(field="events", code="unknown_event_type", message=valid)],
        )


async def _check_url(request: Request, url: str) -> None:
    try:
        await check_url(url, allow_private=request.app.state.settings.webhook_allow_private)
    except UnsafeTarget as exc:
        raise ApiError(400, "unsafe_webhook_url", exc.message, exc.remedy) from exc


async def _load(s: Session, caller: Admin, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    found = await webhooks.endpoint(s, caller.tenant_id, endpoint_id)
    if found is None:
        raise not_found("webhook endpoint")
    return found


@router.post("/webhook-endpoints", status_code=201, response_model=EndpointWithSecret)
async def create(
    body: EndpointIn, request: Request, caller: Admin, s: Session
) -> EndpointWithSecret:
    """Add an endpoint; the answer carries its secret (the only time it is shown)."""
    _check_events(body.events)
    await _check_url(request, body.url)
    e = await webhooks.create_endpoint(
        s, caller.tenant_id, url=body.url, events=body.events, description=body.description
    )
    await s.commit()
    return _with_secret(e)


@router.get("/webhook-endpoints", response_model=EndpointList)
async def list_endpoints(caller: Admin, s: Session) -> EndpointList:
    return EndpointList(
        endpoints=[endpoint_out(e) for e in await webhooks.endpoints(s, caller.tenant_id)]
    )


@router.get("/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: uuid.UUID, caller: Admin, s: Session) -> EndpointOut:
    return endpoint_out(await _load(s, caller, endpoint_id))


@router.patch("/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
async def patch(
    endpoint_id: uuid.UUID, body: EndpointPatch, request: Request, caller: Admin, s: Session
) -> EndpointOut:
    """Change some fields; `"events": null` sends every type again."""
    e = await _load(s, caller, endpoint_id)
    sent = body.model_dump(exclude_unset=True)
    if "url" in sent:
        if body.url is None:
            raise ApiError(422, "null", "url must not be null", "give an http(s) URL")
        await _check_url(request, body.url)
        e.url = body.url
    if "events" in sent:
        _check_events(body.events)
        e.events = list(body.events) if body.events is not None else None
    if "description" in sent:
        e.description = body.description
    if sent.get("enabled") is not None and body.enabled != e.enabled:
        webhooks.set_enabled(e, bool(body.enabled), "disabled by an administrator")
    await s.commit()
    return endpoint_out(e)


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
async def delete(endpoint_id: uuid.UUID, caller: Admin, s: Session) -> Response:
    """Remove the endpoint with its delivery log; nothing more is sent to it."""
    await webhooks.delete_endpoint(s, await _load(s, caller, endpoint_id))
    await s.commit()
    return Response(status_code=204)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret)
async def rotate_secret(endpoint_id: uuid.UUID, caller: Admin, s: Session) -> EndpointWithSecret:
    """A new secret; for 24 hours messages carry signatures by both (space-separated), so
    receivers switch over without losing any."""
    e = await _load(s, caller, endpoint_id)
    webhooks.rotate_secret(e)
    await s.commit()
    return _with_secret(e)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", response_model=DeliveryList)
async def delivery_log(
    endpoint_id: uuid.UUID,
    caller: Admin,
    s: Session,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryList:
    """The endpoint's deliveries, newest first: status, attempts, HTTP status, latency."""
    e = await _load(s, caller, endpoint_id)
    return DeliveryList(deliveries=[delivery_out(x) for x in await deliveries.log(s, e.id, limit)])


@router.post(
    "/webhook-endpoints/{endpoint_id}/messages/{message_id}/replay",
    status_code=202,
    response_model=DeliveryOut,
)
async def replay(endpoint_id: uuid.UUID, message_id: str, caller: Admin, s: Session) -> DeliveryOut:
    """Send a message again (a new delivery, the same `webhook-id`), due at once."""
    e = await _load(s, caller, endpoint_id)
    message = await deliveries.message(s, caller.tenant_id, message_id)
    if message is None:
        raise not_found("webhook message")
    d = await deliveries.replay(s, e, message)
    await s.commit()
    return delivery_out(deliveries.LogEntry(d, message.type))
