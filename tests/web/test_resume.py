"""Issue 12.2: a calendar the mass-delete guard paused says why, and the user (or an admin)
resumes it through the API — confirming the deletions, or after restoring the entries in Google
(still missing, it pauses again). Against the emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

from .conftest import Api

ALICE = "alice@example.com"
N = 24


async def paused(api: Api) -> tuple[uuid.UUID, str, list[str]]:
    """Alice with N Google entries in the CRM, all deleted in Google: the guard pauses."""
    api.emu.account(ALICE, "Alice")
    user_id, key = await api.user(ALICE)
    await api.connect(user_id, ALICE, key)
    ids = [api.insert_event(ALICE, f"Visit {i}", days=1 + i % 5) for i in range(N)]
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    assert len(await api.activities(user_id)) == N
    with api.google(ALICE) as g:
        for event_id in ids:
            assert g.delete(f"/calendars/{ALICE}/events/{event_id}").status_code == 204
    body = (await api.sync(user_id, key)).json()
    assert body["outcome"] == "paused", body
    assert len(await api.activities(user_id)) == N  # nothing deleted in the CRM
    return user_id, key, ids


async def calendars(api: Api, user_id: uuid.UUID, key: str | None = None) -> list[dict[str, Any]]:
    resp = await api.call("GET", f"/api/v1/users/{user_id}/google/calendars", key)
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["calendars"]
    return rows


async def resume(
    api: Api, user_id: uuid.UUID, binding_id: str, key: str | None = None, **body: Any
) -> dict[str, Any]:
    resp = await api.call(
        "POST",
        f"/api/v1/users/{user_id}/google/calendars/{binding_id}/resume",
        key,
        json={"wait": True, **body},
    )
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def test_a_paused_calendar_says_why_and_what_to_do(api: Api) -> None:
    user_id, key, _ = await paused(api)
    (cal,) = await calendars(api, user_id, key)
    assert cal["state"] == "paused" and cal["guarded_deletions"] == N
    assert cal["paused_at"] is not None and f"{N} of the {N}" in cal["paused_reason"]
    assert cal["deletions_confirmed"] is False and cal["calendar_name"] == ALICE
    # Sync now does not resume it; the issue's remedy names the page button, the API and the CLI
    skipped = (await api.sync(user_id, key)).json()
    assert skipped["outcome"] == "skipped"
    assert "Apply the deletions" in skipped["runs"][0]["error"]["remedy"]
    issues = (await api.call("GET", f"/api/v1/users/{user_id}/google/issues", key)).json()
    (issue,) = [i for i in issues["issues"] if i["code"] == "calsync.mass_delete_guard"]
    for action in ("Apply the deletions", "Resume: I restored them", "/resume", "calsync resume"):
        assert action in issue["remedy"], issue["remedy"]
    status = await api.status(user_id, key)
    assert status["sync_state"] == "paused"
    assert status["last_error"]["code"] == "calsync.mass_delete_guard"


async def test_confirming_the_deletions_applies_them(api: Api) -> None:
    user_id, key, _ = await paused(api)
    (cal,) = await calendars(api, user_id, key)
    out = await resume(api, user_id, cal["id"], key, confirm_deletions=True)
    assert out["status"] == "finished" and out["run"]["outcome"] == "ok", out
    assert out["run"]["counts"]["deleted"] == N
    assert out["calendar"]["state"] == "syncing" and out["calendar"]["deletions_confirmed"] is False
    assert await api.activities(user_id) == [] and api.events(ALICE) == []
    issues = (await api.call("GET", f"/api/v1/users/{user_id}/google/issues", key)).json()
    assert issues == {"issues": []}  # the guard's issue is settled
    # the confirmation is used up: the next run is an ordinary one
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    (cal,) = await calendars(api, user_id, key)
    assert cal["state"] == "syncing" and cal["guarded_deletions"] is None


async def test_resuming_after_restoring_in_google_deletes_nothing(api: Api) -> None:
    user_id, key, ids = await paused(api)
    with api.google(ALICE) as g:  # restored from Google's bin
        for event_id in ids:
            resp = g.patch(f"/calendars/{ALICE}/events/{event_id}", json={"status": "confirmed"})
            assert resp.status_code == 200, resp.text
    (cal,) = await calendars(api, user_id, key)
    out = await resume(api, user_id, cal["id"], key, confirm_deletions=False)
    assert out["run"]["outcome"] == "ok" and out["run"]["counts"]["deleted"] == 0, out
    assert out["calendar"]["state"] == "syncing"
    assert len(await api.activities(user_id)) == N
    assert len(api.events(ALICE)) == N  # one copy each side, nothing duplicated


async def test_resuming_without_restoring_pauses_again(api: Api) -> None:
    user_id, key, _ = await paused(api)
    (cal,) = await calendars(api, user_id, key)
    out = await resume(api, user_id, cal["id"], key, confirm_deletions=False)
    assert out["run"]["outcome"] == "paused" and out["calendar"]["state"] == "paused"
    issues = (await api.call("GET", f"/api/v1/users/{user_id}/google/issues", key)).json()
    assert [i["code"] for i in issues["issues"]] == ["calsync.mass_delete_guard"]
    assert len(await api.activities(user_id)) == N


async def test_an_admin_resumes_in_the_background_and_bad_requests_say_why(api: Api) -> None:
    user_id, _, _ = await paused(api)
    (cal,) = await calendars(api, user_id)  # the world's admin key
    path = f"/api/v1/users/{user_id}/google/calendars/{cal['id']}/resume"
    missing = await api.call("POST", path, json={})
    assert missing.status_code == 422, missing.text
    unknown = await api.call(
        "POST",
        f"/api/v1/users/{user_id}/google/calendars/{uuid.uuid4()}/resume",
        json={"confirm_deletions": True},
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "calendar_not_found"
    resp = await api.call("POST", path, json={"confirm_deletions": True})
    assert resp.status_code == 202 and resp.json()["status"] == "queued", resp.text
    await api.services.drain()
    assert await api.activities(user_id) == []
    again = await api.call("POST", path, json={"confirm_deletions": True})
    assert again.status_code == 409 and again.json()["error"]["code"] == "calendar_not_paused"
