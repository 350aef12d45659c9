"""Connecting a user's Google account: link, consent, callback, status; what goes wrong."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
from sqlalchemy import text

from calsync.store.db import Database
from tests.conftest import Emulator

from .conftest import CALLBACK, PUBLIC_URL, Api, build_app, settings_for

ALICE = "alice@example.com"


async def test_full_connect_flow(api: Api, db: Database) -> None:
    api.emu.account(ALICE, "Alice Example")
    user_id, key = await api.user(ALICE)
    before = await api.status(user_id, key)
    assert before["status"] == "not_connected" and before["calendars"] == []

    url = await api.authorization_url(user_id, key)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["redirect_uri"] == PUBLIC_URL + CALLBACK
    assert query["code_challenge_method"] == "S256" and query["access_type"] == "offline"
    assert query["login_hint"] == ALICE and len(query["state"]) >= 32
    page = await api.callback(await api.consent(url, ALICE))
    assert page.status_code == 200
    assert "Connected as alice@example.com" in page.text
    assert page.headers["content-type"].startswith("text/html")

    status = await api.status(user_id, key)
    assert status["status"] == "connected"
    assert status["google_email"] == ALICE and status["auth_mode"] == "oauth"
    assert status["enabled"] is True and status["direction"] == "two_way"
    (primary,) = status["calendars"]
    assert primary["id"] == ALICE and primary["primary"] is True
    assert primary["import"] is True and primary["export"] is True
    assert primary["access_role"] == "owner" and primary["writable"] is True
    assert status["import_calendar_ids"] == [ALICE] and status["export_calendar_id"] == ALICE
    assert status["last_error"] is None and status["last_run"] is None

    # tokens are stored encrypted, and the state is gone (single use)
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT refresh_token, access_token FROM google_connection WHERE user_id = :u"
                ),
                {"u": user_id.hex if db.dialect == "sqlite" else user_id},
            )
        ).one()
        states = await conn.scalar(text("SELECT count(*) FROM oauth_state"))
    assert all(value.startswith("gAAAAA") for value in row)
    assert states == 0


async def test_state_is_single_use_and_cannot_be_forged(api: Api) -> None:
    api.emu.account(ALICE)
    user_id, key = await api.user(ALICE)
    callback = await api.consent(await api.authorization_url(user_id, key), ALICE)
    assert (await api.callback(callback)).status_code == 200

    again = await api.callback(callback, json=True)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "google.oauth_state_invalid"
    assert "once" in again.json()["error"]["remedy"]

    forged = await api.callback(f"{CALLBACK}?state=forged-state&code=whatever")
    assert forged.status_code == 400
    assert "no longer valid" in forged.text and "Connect Google" in forged.text

    missing = await api.callback(CALLBACK, json=True)
    assert missing.status_code == 400


async def test_access_denied_on_googles_page(api: Api) -> None:
    api.emu.account(ALICE)
    user_id, key = await api.user(ALICE)
    callback = await api.consent(await api.authorization_url(user_id, key), ALICE, "deny")
    assert "error=access_denied" in callback
    page = await api.callback(callback)
    assert page.status_code == 400
    assert "cancelled" in page.text and "allow access" in page.text  # what happened, what to do
    assert (await api.status(user_id, key))["status"] == "not_connected"


async def test_who_may_connect(api: Api, db: Database) -> None:
    api.emu.account(ALICE)
    alice_id, alice_key = await api.user(ALICE)
    bob_id, bob_key = await api.user("bob@example.com")
    # a user key acts on its own user only
    resp = await api.call("POST", f"/api/v1/users/{alice_id}/google/connect", bob_key)
    assert resp.status_code == 404
    resp = await api.call("GET", f"/api/v1/users/{alice_id}/google", bob_key)
    assert resp.status_code == 404
    # an admin key may start it for any user of its tenant (the state is bound to that user)
    await api.connect(alice_id, ALICE)
    assert (await api.status(alice_id, alice_key))["status"] == "connected"
    assert (await api.status(bob_id, bob_key))["status"] == "not_connected"
    # another tenant's admin sees nothing
    from tests.calsync.conftest import make_world

    other = await make_world(db, api.world.client)
    for method, path in (
        ("GET", f"/api/v1/users/{alice_id}/google"),
        ("POST", f"/api/v1/users/{alice_id}/google/connect"),
        ("DELETE", f"/api/v1/users/{alice_id}/google"),
        ("POST", f"/api/v1/users/{alice_id}/google/sync"),
    ):
        resp = await other.call(method, path)
        assert resp.status_code == 404, (method, path, resp.text)


async def test_calendar_module_off(api: Api) -> None:
    user_id, key = await api.user(ALICE)
    resp = await api.call(
        "PATCH", "/api/v1/tenant/settings", json={"calendar_module_enabled": False}
    )
    assert resp.status_code == 200, resp.text
    resp = await api.call("POST", f"/api/v1/users/{user_id}/google/connect", key)
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert (
        error["code"] == "calendar_module_disabled" and "calendar_module_enabled" in error["remedy"]
    )


async def test_oauth_not_configured(emulator: Emulator, db: Database, keyring: object) -> None:
    from calsync.store import crypto
    from tests.calsync.conftest import make_world

    assert isinstance(keyring, crypto.Keyring)
    app = build_app(settings_for(emulator, oauth=False), db, keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as client:
        world = await make_world(db, client)
        user_id, key = await world.user(ALICE)
        resp = await world.call("POST", f"/api/v1/users/{user_id}/google/connect", key)
        assert resp.status_code == 409
        error = resp.json()["error"]
        assert error["code"] == "google.oauth_not_configured"
        assert "CALSYNC_GOOGLE_CLIENT_ID" in error["remedy"]
        assert "CALSYNC_GOOGLE_CLIENT_SECRET" in error["remedy"]
        page = await client.get(f"{CALLBACK}?state=x&code=y")
        assert page.status_code == 409 and "CALSYNC_GOOGLE_CLIENT_ID" in page.text


async def test_status_survives_google_failing(api: Api) -> None:
    api.emu.account(ALICE)
    user_id, key = await api.user(ALICE)
    await api.connect(user_id, ALICE, key)
    api.emu.control("POST", "/faults", {"path_regex": "/calendarList", "status": 503})
    status = await api.status(user_id, key)
    assert status["status"] == "connected"
    assert [c["id"] for c in status["calendars"]] == [ALICE]  # the stored choice
    assert status["calendars"][0]["import"] is True
    assert status["last_error"]["code"] == "google.backend_error"
    assert status["last_error"]["remedy"]
