"""/api/v1/webhook-endpoints: admin keys only, per tenant, clear errors; the secret only at
creation and rotation; the delivery log; replays."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from calsync.settings import Settings
from calsync.store import crypto
from calsync.store.db import Database
from calsync.web.app import create_app
from tests.calsync.conftest import World, make_world

from .conftest import add_endpoint, deliver
from .receiver import Receiver

BASE = "/api/v1/webhook-endpoints"


async def test_create_list_get_patch_delete(world: World, receiver: Receiver) -> None:
    resp = await world.call(
        "POST",
        BASE,
        json={"url": receiver.url, "events": ["activity.created"], "description": "CRM"},
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["events"] == ["activity.created"] and created["enabled"] is True
    assert created["description"] == "CRM"
    endpoint_id = created["id"]

    listed = (await world.call("GET", BASE)).json()["endpoints"]
    assert [e["id"] for e in listed] == [endpoint_id]
    assert "secret" not in listed[0]
    got = (await world.call("GET", f"{BASE}/{endpoint_id}")).json()
    assert "secret" not in got and got["url"] == receiver.url

    resp = await world.call(
        "PATCH", f"{BASE}/{endpoint_id}", json={"events": None, "description": "all"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["events"] is None and resp.json()["description"] == "all"
    resp = await world.call("PATCH", f"{BASE}/{endpoint_id}", json={"enabled": False})
    assert resp.json()["enabled"] is False
    assert resp.json()["disabled_reason"] == "disabled by an administrator"

    resp = await world.call("DELETE", f"{BASE}/{endpoint_id}")
    assert resp.status_code == 204
    assert (await world.call("GET", f"{BASE}/{endpoint_id}")).status_code == 404
    assert (await world.call("GET", BASE)).json()["endpoints"] == []


async def test_unknown_event_types_answer_422_listing_the_valid_ones(
    world: World, receiver: Receiver
) -> None:
    resp = await world.call("POST", BASE, json={"url": receiver.url, "events": ["activity.moved"]})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "unknown_event_type" and "activity.moved" in error["message"]
    assert "activity.created" in error["remedy"] and "sync.issue" in error["remedy"]
    resp = await world.call("POST", BASE, json={"url": receiver.url, "events": []})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_event_type"
    endpoint = await add_endpoint(world, receiver.url)
    resp = await world.call("PATCH", f"{BASE}/{endpoint['id']}", json={"events": ["nope"]})
    assert resp.status_code == 422
    resp = await world.call("PATCH", f"{BASE}/{endpoint['id']}", json={"url": None})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "null"
    resp = await world.call("POST", BASE, json={"url": receiver.url, "secret": "mine"})
    assert resp.status_code == 422  # unknown fields are refused


async def test_user_keys_and_other_tenants_see_nothing(
    world: World, other_world: World, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    _, user_key = await world.user("someone@example.com")
    for method, path in (
        ("GET", BASE),
        ("POST", BASE),
        ("GET", f"{BASE}/{endpoint['id']}"),
        ("POST", f"{BASE}/{endpoint['id']}/rotate-secret"),
    ):
        resp = await world.call(method, path, user_key, json={"url": receiver.url})
        assert resp.status_code == 403, (method, path, resp.text)
    assert (await other_world.call("GET", BASE)).json()["endpoints"] == []
    for method, path in (
        ("GET", f"{BASE}/{endpoint['id']}"),
        ("PATCH", f"{BASE}/{endpoint['id']}"),
        ("DELETE", f"{BASE}/{endpoint['id']}"),
        ("POST", f"{BASE}/{endpoint['id']}/rotate-secret"),
        ("GET", f"{BASE}/{endpoint['id']}/deliveries"),
        ("POST", f"{BASE}/{endpoint['id']}/messages/msg_x/replay"),
    ):
        resp = await other_world.call(method, path, json={})
        assert resp.status_code == 404, (method, path, resp.text)
    resp = await world.call("GET", f"{BASE}/{uuid.uuid4()}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = await world.call("POST", f"{BASE}/{endpoint['id']}/messages/msg_none/replay")
    assert resp.status_code == 404 and "message" in resp.json()["error"]["message"]
    assert (await world.call("GET", BASE, "csk_wrong")).status_code == 401


async def test_replay_sends_the_same_message_again(
    world: World, db: Database, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    owner, _ = await world.user("owner@example.com")
    resp = await world.call(
        "POST",
        "/api/v1/activities",
        json={
            "owner_id": str(owner),
            "subject": "Replayed",
            "start": "2030-01-07T10:00:00Z",
            "end": "2030-01-07T11:00:00Z",
            "time_zone": "UTC",
        },
    )
    assert resp.status_code == 201
    assert await deliver(db) == 1
    (first,) = receiver.wait_for(1)
    message_id = first.headers["webhook-id"]
    resp = await world.call("POST", f"{BASE}/{endpoint['id']}/messages/{message_id}/replay")
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "pending" and resp.json()["message_id"] == message_id
    assert await deliver(db) == 1
    second = receiver.wait_for(2)[1]
    assert second.headers["webhook-id"] == message_id and second.body == first.body
    log = (await world.call("GET", f"{BASE}/{endpoint['id']}/deliveries?limit=1")).json()
    assert len(log["deliveries"]) == 1
    log = (await world.call("GET", f"{BASE}/{endpoint['id']}/deliveries")).json()
    assert [d["type"] for d in log["deliveries"]] == ["activity.created"] * 2
    resp = await world.call("GET", f"{BASE}/{endpoint['id']}/deliveries?limit=0")
    assert resp.status_code == 422


@pytest.fixture
async def strict_client(
    db: Database, keyring: crypto.Keyring, tmp_path: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app as deployed: private targets not allowed."""
    settings = Settings(data_dir=tmp_path, mode="sandbox")
    assert settings.webhook_allow_private is False
    app = create_app(settings, database=db, keyring=keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as c:
        yield c


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",
        "http://10.0.0.5/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hooks",
        "http://localhost/hooks",
        "file:///etc/passwd",
    ],
)
async def test_unsafe_urls_answer_400_with_a_remedy(
    db: Database, strict_client: httpx.AsyncClient, url: str
) -> None:
    strict = await make_world(db, strict_client)
    resp = await strict.call("POST", BASE, json={"url": url})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unsafe_webhook_url" and error["remedy"]
    assert (await strict.call("GET", BASE)).json()["endpoints"] == []


async def test_unsafe_url_refused_on_update_too(
    db: Database, strict_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = await make_world(db, strict_client)
    from calsync.web.api import webhook_endpoints

    async def public(url: str, *, allow_private: bool) -> None:
        return None

    monkeypatch.setattr(webhook_endpoints, "check_url", public)
    endpoint = await add_endpoint(strict, "https://crm.example.com/hooks")
    monkeypatch.undo()
    resp = await strict.call("PATCH", f"{BASE}/{endpoint['id']}", json={"url": "http://10.0.0.1/"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "unsafe_webhook_url"


async def test_a_target_that_turned_private_is_refused_at_delivery(
    world: World, db: Database, receiver: Receiver
) -> None:
    """DNS may change after the endpoint was saved: each delivery checks again."""
    from calsync.jobs.webhooks import Deliverer

    endpoint = await add_endpoint(world, receiver.url)
    owner, _ = await world.user("owner@example.com")
    await world.call(
        "POST",
        "/api/v1/activities",
        json={
            "owner_id": str(owner),
            "subject": "Refused",
            "start": "2030-01-07T10:00:00Z",
            "end": "2030-01-07T11:00:00Z",
            "time_zone": "UTC",
        },
    )
    assert await Deliverer(db, allow_private=False).run() == 1
    assert receiver.requests == []
    (entry,) = (await world.call("GET", f"{BASE}/{endpoint['id']}/deliveries")).json()["deliveries"]
    assert entry["status"] == "failed" and "loopback" in entry["error"]
    assert entry["http_status"] is None


async def test_secrets_are_encrypted_at_rest(
    world: World, db: Database, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    rotated = (await world.call("POST", f"{BASE}/{endpoint['id']}/rotate-secret")).json()
    from sqlalchemy import text

    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT secret, previous_secret FROM webhook_endpoint"))
        ).all()
    stored = repr(rows)
    assert endpoint["secret"] not in stored and rotated["secret"] not in stored
    assert endpoint["secret"][6:] not in stored  # not even the base64 part


async def test_delivery_connects_to_the_address_that_was_checked(
    world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No DNS-rebinding window: the deliverer resolves the name once, checks the addresses and
    connects to the checked one (Host header and TLS server name stay the URL's host), rather
    than letting the HTTP client resolve the name again — where a rebinding DNS server could
    answer 127.0.0.1 or the cloud metadata address the second time."""
    import asyncio
    import socket

    import httpx

    from calsync.jobs.webhooks import Deliverer

    answers = iter(["93.184.216.34", "127.0.0.1", "169.254.169.254"])

    async def rebinding(host: str, port: int, **kwargs: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    endpoint = await add_endpoint(world, "https://crm.example.com:8443/hooks?x=1")
    owner, _ = await world.user("owner@example.com")
    await world.call(
        "POST",
        "/api/v1/activities",
        json={
            "owner_id": str(owner),
            "subject": "Pinned",
            "start": "2030-01-07T10:00:00Z",
            "end": "2030-01-07T11:00:00Z",
            "time_zone": "UTC",
        },
    )
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding)
    deliverer = Deliverer(db, allow_private=False, transport=httpx.MockTransport(handler))
    assert await deliverer.run() == 1
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34:8443/hooks?x=1"
    assert request.headers["host"] == "crm.example.com:8443"
    assert request.extensions["sni_hostname"] == "crm.example.com"
    assert Webhook(endpoint["secret"]).verify(request.content, dict(request.headers))
