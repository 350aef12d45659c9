"""Sync now, runs and issues, disconnect and reconnect, needs_reauth — through the API."""

from __future__ import annotations

import uuid

import httpx

from calsync.store import connections
from calsync.store.db import Database

from .conftest import CLIENT_ID, CLIENT_SECRET, Api

ALICE = "alice@example.com"
BOB = "bob@example.com"


async def setup(api: Api) -> tuple[uuid.UUID, str]:
    api.emu.account(ALICE, "Alice")
    user_id, key = await api.user(ALICE)
    await api.connect(user_id, ALICE, key)
    return user_id, key


async def test_sync_wait_runs_and_issues(api: Api) -> None:
    user_id, key = await setup(api)
    api.insert_event(ALICE, "Dentist")
    await api.activity(user_id, "Budget review")
    # Google refuses the first write of the CRM entry: it is parked as an issue, the rest goes on
    api.emu.control(
        "POST",
        "/faults",
        {"method": "POST", "path_regex": "/events$", "status": 400, "count": 1},
    )
    resp = await api.sync(user_id, key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "finished" and body["outcome"] == "partial"
    assert body["counts"]["pulled"] == 1 and body["counts"]["created"] == 1
    assert body["counts"]["issues"] == 1 and body["counts"]["pushed"] == 0
    assert body["calendars"] == [ALICE]
    (run,) = body["runs"]
    assert run["outcome"] == "partial" and run["finished_at"] is not None
    # the Google event is now a CRM activity
    subjects = {a["subject"] for a in await api.activities(user_id)}
    assert subjects == {"Dentist", "Budget review"}

    issues = (await api.call("GET", f"/api/v1/users/{user_id}/google/issues", key)).json()
    (issue,) = issues["issues"]
    assert issue["code"] and issue["message"] and issue["remedy"]
    assert issue["event"]["calendar_id"] == ALICE and issue["event"]["activity_id"]
    assert issue["first_seen_at"] and issue["last_seen_at"]

    # saved again in the CRM, Google accepts it: pushed, no duplicate on either side
    resp = await api.call(
        "PATCH", f"/api/v1/activities/{issue['event']['activity_id']}", json={"subject": "Budget"}
    )
    assert resp.status_code == 200, resp.text
    again = (await api.sync(user_id, key)).json()
    assert again["outcome"] == "ok" and again["counts"]["pushed"] == 1, again
    assert sorted(e["summary"] for e in api.events(ALICE)) == ["Budget", "Dentist"]
    assert (await api.call("GET", f"/api/v1/users/{user_id}/google/issues", key)).json() == {
        "issues": []
    }
    runs = (await api.call("GET", f"/api/v1/users/{user_id}/google/runs", key)).json()["runs"]
    assert [r["outcome"] for r in runs] == ["ok", "partial"]
    assert runs[0]["counts"]["pushed"] == 1 and runs[0]["calendar_id"] == ALICE
    status = await api.status(user_id, key)
    assert status["last_run"]["id"] == runs[0]["id"] and status["last_sync_at"] is not None


async def test_sync_in_the_background(api: Api) -> None:
    user_id, key = await setup(api)
    api.insert_event(ALICE, "Lunch")
    resp = await api.call("POST", f"/api/v1/users/{user_id}/google/sync", key, json={"full": True})
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "queued" and resp.json()["calendars"] == [ALICE]
    await api.services.drain()
    runs = (await api.call("GET", f"/api/v1/users/{user_id}/google/runs", key)).json()["runs"]
    assert len(runs) == 1 and runs[0]["outcome"] == "ok" and runs[0]["full_sync"] is True
    assert [a["subject"] for a in await api.activities(user_id)] == ["Lunch"]


def refresh_works(api: Api, refresh_token: str) -> bool:
    resp = httpx.post(
        f"{api.emu.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    return resp.status_code == 200


async def stored_refresh_token(db: Database, user_id: uuid.UUID) -> str | None:
    async with db.session() as s:
        conn = await connections.for_user(s, user_id)
    assert conn is not None
    return conn.refresh_token


async def test_disconnect_then_reconnect_same_account(api: Api, db: Database) -> None:
    user_id, key = await setup(api)
    api.insert_event(ALICE, "From Google")
    await api.activity(user_id, "From the CRM")
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    token = await stored_refresh_token(db, user_id)
    assert token is not None and refresh_works(api, token)

    resp = await api.call("DELETE", f"/api/v1/users/{user_id}/google", key)
    assert resp.status_code == 200, resp.text
    assert resp.json()["revoked_at_google"] is True and resp.json()["status"] == "not_connected"
    assert not refresh_works(api, token)  # revoked at Google
    assert await stored_refresh_token(db, user_id) is None  # and forgotten here
    status = await api.status(user_id, key)
    assert status["status"] == "not_connected" and status["google_email"] is None
    # every CRM activity stays; syncing waits for a connection
    assert len(await api.activities(user_id)) == 2
    resp = await api.sync(user_id, key)
    assert resp.status_code == 409 and "/google/connect" in resp.json()["error"]["remedy"]
    # meanwhile the CRM gets a new entry; disconnecting twice is fine
    await api.activity(user_id, "While away")
    assert (await api.call("DELETE", f"/api/v1/users/{user_id}/google", key)).status_code == 200

    page = await api.connect(user_id, ALICE, key)
    assert "different Google account" not in page.text
    result = (await api.sync(user_id, key)).json()
    assert result["outcome"] == "ok", result
    assert result["counts"]["created"] == 0 and result["counts"]["pushed"] == 1
    assert sorted(a["subject"] for a in await api.activities(user_id)) == [
        "From Google",
        "From the CRM",
        "While away",
    ]
    assert sorted(e["summary"] for e in api.events(ALICE)) == [
        "From Google",
        "From the CRM",
        "While away",
    ]
    # a full resync relinks instead of duplicating
    full = (await api.sync(user_id, key, full=True)).json()
    assert full["counts"]["created"] == 0 and full["counts"]["pushed"] == 0
    assert len(api.events(ALICE)) == 3 and len(await api.activities(user_id)) == 3


async def test_reconnect_with_another_account_resets_bindings(api: Api) -> None:
    user_id, key = await setup(api)
    api.emu.account(BOB, "Bob")
    await api.account_policy(domains=["example.com"])  # Bob's account is the company's too
    crm = api.emu.control("POST", f"/accounts/{ALICE}/calendars", {"summary": "CRM"}).json()["id"]
    resp = await api.call(
        "PATCH",
        f"/api/v1/users/{user_id}/google/settings",
        key,
        json={"import_calendar_ids": [ALICE], "export_calendar_id": crm},
    )
    assert resp.status_code == 200, resp.text
    api.insert_event(ALICE, "Alice's")
    assert (await api.sync(user_id, key)).json()["counts"]["created"] == 1

    url = await api.authorization_url(user_id, key)
    page = await api.callback(await api.consent(url, BOB))
    assert page.status_code == 200 and "different Google account" in page.text
    status = await api.status(user_id, key)
    assert status["google_email"] == BOB
    assert status["import_calendar_ids"] == [BOB] and status["export_calendar_id"] == BOB
    assert status["last_run"] is None  # the old calendars' history went with them
    api.insert_event(BOB, "Bob's")
    result = (await api.sync(user_id, key)).json()
    assert result["outcome"] == "ok" and result["counts"]["created"] == 1
    # the CRM keeps what came from the old account
    assert sorted(a["subject"] for a in await api.activities(user_id)) == ["Alice's", "Bob's"]


async def test_needs_reauth_after_google_revokes(api: Api) -> None:
    user_id, key = await setup(api)
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    api.emu.control("POST", f"/accounts/{ALICE}/revoke-grants")
    resp = await api.sync(user_id, key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["outcome"] == "needs_reauth"
    assert (
        body["error"]["code"] == "google.grant_revoked" and "Reconnect" in body["error"]["remedy"]
    )
    status = await api.status(user_id, key)
    assert status["status"] == "needs_reauth"
    assert status["last_error"]["code"] == "google.grant_revoked"
    assert "Reconnect" in status["last_error"]["remedy"]
    assert status["calendars"][0]["id"] == ALICE  # stored choices still shown
    again = await api.sync(user_id, key)
    assert again.status_code == 409 and again.json()["error"]["code"] == "needs_reauth"
    # reconnecting heals it
    await api.connect(user_id, ALICE, key)
    assert (await api.status(user_id, key))["status"] == "connected"
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
