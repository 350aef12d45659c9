"""Every event type from the sync against the emulator, delivered to a stub receiver and
verified with the standardwebhooks library: activities changed in Google (source "google"),
a connection that needs reauth and is reconnected, a calendar the mass-delete guard paused,
a sync issue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from calsync.store import crypto
from calsync.store.db import Database
from calsync.store.webhooks import EVENT_TYPES
from calsync.sync.google_services import GoogleServices
from tests.calsync.conftest import make_world
from tests.conftest import Emulator
from tests.web.conftest import Api, build_app, register_client, settings_for

from .conftest import add_endpoint, deliver
from .receiver import Receiver

ALICE = "alice@example.com"


@pytest.fixture
async def api(emulator: Emulator, db: Database, keyring: crypto.Keyring) -> AsyncIterator[Api]:
    register_client(emulator)
    app = build_app(settings_for(emulator, webhook_allow_private=True), db, keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as client:
        yield Api(await make_world(db, client), app, emulator)
        services: GoogleServices = app.state.google
        await services.aclose()


async def _received(db: Database, receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Deliver what is due; every message verified with the endpoint's secret."""
    await deliver(db)
    out = []
    for request in receiver.requests:
        body: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
        out.append(body)
    receiver.requests.clear()
    return out


async def _connected(api: Api) -> tuple[uuid.UUID, str]:
    api.emu.account(ALICE, "Alice")
    user_id, key = await api.user(ALICE)
    await api.connect(user_id, ALICE, key)
    return user_id, key


async def test_google_changes_arrive_as_activity_events_from_google(
    api: Api, db: Database, receiver: Receiver
) -> None:
    user_id, key = await _connected(api)
    endpoint = await add_endpoint(api.world, receiver.url, events=list(EVENT_TYPES))
    secret = endpoint["secret"]
    event_id = api.insert_event(ALICE, "Dentist")
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    (created,) = await _received(db, receiver, secret)
    assert created["type"] == "activity.created" and created["data"]["source"] == "google"
    activity = created["data"]["activity"]
    assert activity["subject"] == "Dentist" and activity["owner_id"] == str(user_id)
    shown = (await api.call("GET", f"/api/v1/activities/{activity['id']}")).json()
    assert activity == {k: v for k, v in shown.items() if k not in ("read_only", "problem")}

    with api.google(ALICE) as g:
        resp = g.patch(f"/calendars/{ALICE}/events/{event_id}", json={"summary": "Dentist 2"})
        assert resp.status_code == 200, resp.text
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    (updated,) = await _received(db, receiver, secret)
    assert updated["type"] == "activity.updated" and updated["data"]["source"] == "google"
    assert updated["data"]["activity"]["subject"] == "Dentist 2"
    assert updated["data"]["activity"]["version"] > activity["version"]

    with api.google(ALICE) as g:
        assert g.delete(f"/calendars/{ALICE}/events/{event_id}").status_code == 204
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    (deleted,) = await _received(db, receiver, secret)
    assert deleted["type"] == "activity.deleted" and deleted["data"]["source"] == "google"
    assert deleted["data"]["activity"]["deleted_at"] is not None

    # a CRM write that the sync then pushes to Google: one event, from the CRM
    await api.activity(user_id, "From the CRM")
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    events = await _received(db, receiver, secret)
    assert events and events[0]["type"] == "activity.created"
    assert all(e["data"]["source"] == "crm" for e in events)


async def test_needs_reauth_and_reconnected(api: Api, db: Database, receiver: Receiver) -> None:
    user_id, key = await _connected(api)
    endpoint = await add_endpoint(
        api.world, receiver.url, events=["connection.needs_reauth", "connection.reconnected"]
    )
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    api.emu.control("POST", f"/accounts/{ALICE}/revoke-grants")
    assert (await api.sync(user_id, key)).json()["outcome"] == "needs_reauth"
    (event,) = await _received(db, receiver, endpoint["secret"])
    assert event["type"] == "connection.needs_reauth"
    data = event["data"]
    assert data["user_id"] == str(user_id) and data["google_email"] == ALICE
    assert data["code"] == "google.grant_revoked" and data["message"]
    # meeting it again says nothing more
    await api.sync(user_id, key)
    assert await _received(db, receiver, endpoint["secret"]) == []
    await api.connect(user_id, ALICE, key)
    (event,) = await _received(db, receiver, endpoint["secret"])
    assert event["type"] == "connection.reconnected"
    assert event["data"]["previous_status"] == "needs_reauth"
    assert event["data"]["account_changed"] is False and event["data"]["user_id"] == str(user_id)


async def test_calendar_paused_and_sync_issue(api: Api, db: Database, receiver: Receiver) -> None:
    user_id, key = await _connected(api)
    endpoint = await add_endpoint(api.world, receiver.url, events=["calendar.paused", "sync.issue"])
    secret = endpoint["secret"]
    # a write Google refuses once: a sync issue
    await api.activity(user_id, "Refused")
    api.emu.control(
        "POST", "/faults", {"method": "POST", "path_regex": "/events$", "status": 400, "count": 1}
    )
    assert (await api.sync(user_id, key)).json()["outcome"] == "partial"
    (issue,) = await _received(db, receiver, secret)
    assert issue["type"] == "sync.issue"
    assert issue["data"]["code"] and issue["data"]["message"] and issue["data"]["remedy"]
    assert issue["data"]["google_calendar_id"] == ALICE and issue["data"]["activity_id"]
    # every Google entry deleted at once: the guard pauses the calendar
    ids = [api.insert_event(ALICE, f"Visit {i}", days=1 + i % 5) for i in range(24)]
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    await _received(db, receiver, secret)
    with api.google(ALICE) as g:
        for event_id in ids:
            assert g.delete(f"/calendars/{ALICE}/events/{event_id}").status_code == 204
    assert (await api.sync(user_id, key)).json()["outcome"] == "paused"
    events = await _received(db, receiver, secret)
    (paused,) = [e for e in events if e["type"] == "calendar.paused"]
    data = paused["data"]
    assert data["google_calendar_id"] == ALICE and data["held_back_deletions"] >= 24
    assert data["reason"] and data["user_id"] == str(user_id) and data["binding_id"]
