"""Issue 12.6, the conflict log and the settings preview (issue 12), and issue 14.4's states,
through the API: nothing ticked says "nothing to do", unticked calendars keep their history,
runs name their calendar, conflicts are readable newest first, a Save's consequences are told."""

from __future__ import annotations

import uuid
from datetime import timedelta

from calsync.store import bindings, connections, runs
from calsync.store.base import utcnow
from calsync.store.db import Database

from .conftest import Api
from .test_settings import ALICE, connected, patch


async def test_nothing_ticked_says_nothing_to_do_and_keeps_the_history(api: Api) -> None:
    user_id, key, crm, _ = await connected(api)
    status, body = await patch(api, user_id, key, export_calendar_id=crm)
    assert status == 200 and body["sync_state"] == "on", body
    await api.activity(user_id, "Budget review")
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"

    status, body = await patch(api, user_id, key, import_calendar_ids=[], export_calendar_id=None)
    assert status == 200, body
    assert body["enabled"] is True and body["sync_state"] == "nothing_selected"
    assert body["last_sync_at"] is not None  # not "Never": the history stays
    runs_ = (await api.call("GET", f"/api/v1/users/{user_id}/google/runs", key)).json()["runs"]
    assert {r["calendar_id"] for r in runs_} == {ALICE, crm}
    assert {r["calendar_name"] for r in runs_} == {ALICE, "CRM"}
    assert all(r["calendar_syncing"] is False for r in runs_)
    listed = (await api.call("GET", f"/api/v1/users/{user_id}/google/calendars", key)).json()
    assert {c["state"] for c in listed["calendars"]} == {"unselected"}

    status, body = await patch(api, user_id, key, enabled=False)
    assert body["sync_state"] == "off"


async def test_preview_tells_what_a_save_will_do(api: Api) -> None:
    user_id, key, crm, _ = await connected(api)
    path = f"/api/v1/users/{user_id}/google/settings/preview"
    await api.activity(user_id, "Budget review")
    await api.activity(user_id, "Customer call", days=4)
    api.insert_event(ALICE, "Dentist")  # made in Google: never moves
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"

    resp = await api.call("POST", path, key, json={"export_calendar_id": crm})
    assert resp.status_code == 200, resp.text
    (warning,) = resp.json()["warnings"]
    assert warning["code"] == "export_calendar_moves" and warning["count"] == 2
    assert warning["from_calendar"] == ALICE and warning["to_calendar"] == "CRM"

    resp = await api.call(
        "POST", path, key, json={"import_calendar_ids": [], "export_calendar_id": None}
    )
    assert [w["code"] for w in resp.json()["warnings"]] == ["nothing_to_sync"]
    # a preview changes nothing; a harmless change has no warning; bad input is a 422
    assert (await api.status(user_id, key))["export_calendar_id"] == ALICE
    resp = await api.call("POST", path, key, json={"direction": "google_to_crm"})
    assert resp.json() == {"warnings": []}
    resp = await api.call("POST", path, key, json={"direction": "sideways"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "validation_failed"


async def test_conflicts_newest_first_paginated(api: Api, db: Database) -> None:
    user_id, key, _, _ = await connected(api)
    async with db.session() as s:
        conn = await connections.for_user(s, user_id)
        assert conn is not None
        (binding,) = await bindings.for_connection(s, conn.id)
        for n in range(3):
            c = runs.record_conflict(
                s,
                api.world.tenant_id,
                binding.id,
                None,
                field="summary",
                base=["Review"],
                crm=[f"CRM title {n}"],
                google=[f"Google title {n}"],
                decision="google",
                policy="latest_wins",
                activity_id=None,
                link_id=None,
                google_event_id=f"ev{n}",
            )
            c.decided_at = utcnow() + timedelta(minutes=n)
        await s.commit()
    path = f"/api/v1/users/{user_id}/google/conflicts"
    body = (await api.call("GET", path, key, params={"limit": 2})).json()
    assert body["total"] == 3 and body["limit"] == 2 and body["offset"] == 0
    assert [c["crm_value"] for c in body["conflicts"]] == [["CRM title 2"], ["CRM title 1"]]
    first = body["conflicts"][0]
    assert first["google_value"] == ["Google title 2"] and first["base_value"] == ["Review"]
    assert first["decision"] == "google" and first["field"] == "summary"
    assert first["calendar_id"] == ALICE and first["decided_at"]
    rest = (await api.call("GET", path, key, params={"limit": 2, "offset": 2})).json()
    assert [c["google_event_id"] for c in rest["conflicts"]] == ["ev0"]
    bad = await api.call("GET", path, key, params={"limit": 0})
    assert bad.status_code == 422
    other, _ = await api.user("someone@example.com")
    empty = (await api.call("GET", f"/api/v1/users/{other}/google/conflicts")).json()
    assert empty == {"conflicts": [], "total": 0, "limit": 50, "offset": 0}


async def test_a_reconnect_clears_the_old_needs_reauth_error(api: Api, db: Database) -> None:
    user_id, key, _, _ = await connected(api)
    async with db.session() as s:
        conn = await connections.for_user(s, user_id)
        assert conn is not None
        (binding,) = await bindings.for_connection(s, conn.id)
        run = await runs.start(s, api.world.tenant_id, binding.id, trigger="poll", full_sync=False)
        await runs.finish(
            s,
            run.id,
            outcome="needs_reauth",
            counts={},
            full_sync=False,
            error_code="google.grant_revoked",
            error_message="Google no longer accepts calsync's access.",
        )
        await s.commit()
    status = await api.status(user_id, key)  # connected again since that run
    assert status["status"] == "connected" and status["last_error"] is None
    assert status["last_run"]["outcome"] == "needs_reauth"  # the history still says it


async def test_unknown_user_and_calendar(api: Api) -> None:
    resp = await api.call("GET", f"/api/v1/users/{uuid.uuid4()}/google/calendars")
    assert resp.status_code == 404
