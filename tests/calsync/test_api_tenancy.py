"""Tenants, users, activity types, API keys, and isolation between tenants and users."""

from __future__ import annotations

import uuid
from typing import Any

from .conftest import World

A = "/api/v1/activities"


async def activity(
    world: World, owner: uuid.UUID, key: str | None = None, **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "start": "2025-06-02T09:00:00",
        "end": "2025-06-02T10:00:00",
        "subject": "x",
        **fields,
    }
    if key is None:
        body["owner_id"] = str(owner)
    resp = await world.call("POST", A, key, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


# authentication


async def test_missing_bad_and_revoked_keys_are_401(world: World) -> None:
    assert (await world.client.get("/api/v1/users")).status_code == 401
    for header in ("Bearer nope", "Bearer csk_" + "x" * 43, "Basic dXNlcjpwYXNz", "Bearer "):
        resp = await world.client.get("/api/v1/users", headers={"Authorization": header})
        assert resp.status_code == 401, header
        assert resp.json()["error"]["code"] in {"unauthorized", "invalid_api_key"}
        assert resp.json()["error"]["remedy"]
    user_id, key = await world.user("gone@acme.test")
    assert (await world.call("GET", "/api/v1/users", key)).status_code == 200
    assert (await world.call("DELETE", f"/api/v1/users/{user_id}")).status_code == 204
    assert (await world.call("GET", "/api/v1/users", key)).status_code == 401


# tenant settings


async def test_tenant_settings_defaults_and_patch(world: World) -> None:
    got = (await world.call("GET", "/api/v1/tenant/settings")).json()
    assert got["id"] == str(world.tenant_id)
    assert got["calendar_module_enabled"] is True and got["auth_mode"] == "oauth"
    # meetings and calls reach Google out of the box; tasks and personal entries only when the
    # admin says so, project tasks never
    assert sorted(got["exported_activity_types"]) == ["call", "meeting"]
    assert (got["default_import_type"], got["personal_import_type"]) == ("meeting", "personal")
    assert (got["poll_interval_seconds"], got["lookback_days"], got["conflict_policy"]) == (
        300,
        30,
        "latest_wins",
    )
    assert got["service_account_configured"] is False
    resp = await world.call(
        "PATCH",
        "/api/v1/tenant/settings",
        json={
            "calendar_module_enabled": False,
            "exported_activity_types": ["meeting"],
            "poll_interval_seconds": 60,
            "lookback_days": 7,
            "conflict_policy": "crm_wins",
            "default_import_type": "call",
        },
    )
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    assert patched["calendar_module_enabled"] is False and patched["exported_activity_types"] == [
        "meeting"
    ]
    assert (
        patched["poll_interval_seconds"],
        patched["lookback_days"],
        patched["conflict_policy"],
    ) == (60, 7, "crm_wins")
    assert patched["default_import_type"] == "call"


async def test_tenant_settings_validation(world: World, other_world: World) -> None:
    for body in (
        {"exported_activity_types": ["project_task"]},
        {"exported_activity_types": ["nope"]},
        {"default_import_type": "project_task"},
        {"personal_import_type": "unknown"},
        {"poll_interval_seconds": 5},
        {"lookback_days": -1},
        {"conflict_policy": "coin_flip"},
        {"auth_mode": "magic"},
        {"name": None},
        {"unknown": 1},
    ):
        resp = await world.call("PATCH", "/api/v1/tenant/settings", json=body)
        assert resp.status_code == 422, (body, resp.text)
    other_name = (await other_world.call("GET", "/api/v1/tenant/settings")).json()["name"]
    assert (
        await world.call("PATCH", "/api/v1/tenant/settings", json={"name": other_name})
    ).status_code == 409


async def test_tenant_settings_name_each_bad_type(world: World) -> None:
    resp = await world.call(
        "PATCH",
        "/api/v1/tenant/settings",
        json={
            "exported_activity_types": ["meeting", "nope", "project_task"],
            "default_import_type": "project_task",
            "personal_import_type": "unknown",
        },
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["fields"] == [
        {
            "field": "exported_activity_types",
            "code": "unknown_type",
            "message": "no activity type 'nope'",
        },
        {
            "field": "exported_activity_types",
            "code": "not_exportable",
            "message": "project tasks never sync to Google",
        },
        {
            "field": "default_import_type",
            "code": "not_importable",
            "message": "Google entries never become project tasks",
        },
        {
            "field": "personal_import_type",
            "code": "unknown_type",
            "message": "no activity type 'unknown'",
        },
    ]
    settings = (await world.call("GET", "/api/v1/tenant/settings")).json()
    assert settings["default_import_type"] != "project_task"


async def test_tenant_settings_are_admin_only(world: World) -> None:
    _, key = await world.user("ann@acme.test")
    assert (await world.call("GET", "/api/v1/tenant/settings", key)).status_code == 403
    resp = await world.call("PATCH", "/api/v1/tenant/settings", key, json={"lookback_days": 1})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "admin_required"


# users


async def test_user_crud(world: World) -> None:
    resp = await world.call("POST", "/api/v1/users", json={"email": "Ann@Acme.test", "name": "Ann"})
    assert resp.status_code == 201, resp.text
    ann = resp.json()
    assert (ann["email"], ann["role"]) == ("ann@acme.test", "user")
    assert resp.headers["Location"] == f"/api/v1/users/{ann['id']}"
    assert (
        await world.call("POST", "/api/v1/users", json={"email": "ANN@acme.test"})
    ).status_code == 409
    assert (await world.call("GET", f"/api/v1/users/{ann['id']}")).json() == ann
    resp = await world.call(
        "PATCH", f"/api/v1/users/{ann['id']}", json={"role": "admin", "name": None}
    )
    assert resp.status_code == 200 and (resp.json()["role"], resp.json()["name"]) == ("admin", None)
    await world.call("POST", "/api/v1/users", json={"email": "bob@acme.test"})
    assert (
        await world.call("PATCH", f"/api/v1/users/{ann['id']}", json={"email": "bob@acme.test"})
    ).status_code == 409
    listed = [u["email"] for u in (await world.call("GET", "/api/v1/users")).json()["users"]]
    assert listed == ["ann@acme.test", "bob@acme.test"]
    assert (await world.call("DELETE", f"/api/v1/users/{ann['id']}")).status_code == 204
    assert (await world.call("GET", f"/api/v1/users/{ann['id']}")).status_code == 404
    # the e-mail is free again once the user is gone
    assert (
        await world.call("POST", "/api/v1/users", json={"email": "ann@acme.test"})
    ).status_code == 201
    for bad in (
        {"email": "not-an-email"},
        {"email": "a@b.c", "role": "owner"},
        {},
        {"email": "a@b.c", "x": 1},
    ):
        assert (await world.call("POST", "/api/v1/users", json=bad)).status_code == 422, bad


async def test_same_email_in_two_tenants(world: World, other_world: World) -> None:
    assert (
        await world.call("POST", "/api/v1/users", json={"email": "same@x.io"})
    ).status_code == 201
    assert (
        await other_world.call("POST", "/api/v1/users", json={"email": "same@x.io"})
    ).status_code == 201


async def test_user_key_sees_only_itself(world: World) -> None:
    ann, key = await world.user("ann@acme.test")
    bob, _ = await world.user("bob@acme.test")
    assert [
        u["email"] for u in (await world.call("GET", "/api/v1/users", key)).json()["users"]
    ] == ["ann@acme.test"]
    assert (await world.call("GET", f"/api/v1/users/{ann}", key)).status_code == 200
    assert (await world.call("GET", f"/api/v1/users/{bob}", key)).status_code == 404
    assert (
        await world.call("POST", "/api/v1/users", key, json={"email": "c@acme.test"})
    ).status_code == 403
    assert (
        await world.call("PATCH", f"/api/v1/users/{ann}", key, json={"role": "admin"})
    ).status_code == 403
    assert (await world.call("DELETE", f"/api/v1/users/{bob}", key)).status_code == 403


async def test_key_of_an_admin_user_acts_for_the_tenant(world: World) -> None:
    _, key = await world.user("boss@acme.test", role="admin")
    assert (await world.call("GET", "/api/v1/tenant/settings", key)).status_code == 200
    assert len((await world.call("GET", "/api/v1/users", key)).json()["users"]) == 1


# activity types


async def test_activity_types(world: World) -> None:
    got = (await world.call("GET", "/api/v1/activity-types")).json()["activity_types"]
    assert {t["key"] for t in got} == {"meeting", "call", "task", "personal", "project_task"}
    assert all(t["built_in"] for t in got)
    assert {t["key"]: t["exported"] for t in got}["project_task"] is False
    resp = await world.call(
        "POST", "/api/v1/activity-types", json={"key": "demo", "name": "Product demo"}
    )
    assert resp.status_code == 201 and resp.json() == {
        "key": "demo",
        "name": "Product demo",
        "built_in": False,
        "exported": False,
    }
    assert (
        await world.call("POST", "/api/v1/activity-types", json={"key": "demo", "name": "Again"})
    ).status_code == 409
    for bad in (
        {"key": "Demo", "name": "x"},
        {"key": "1st", "name": "x"},
        {"key": "ok", "name": ""},
        {"key": "a" * 65, "name": "x"},
    ):
        assert (await world.call("POST", "/api/v1/activity-types", json=bad)).status_code == 422, (
            bad
        )
    owner, key = await world.user("ann@acme.test")
    assert (
        await world.call("POST", "/api/v1/activity-types", key, json={"key": "x", "name": "x"})
    ).status_code == 403
    assert (await world.call("GET", "/api/v1/activity-types", key)).status_code == 200
    created = await activity(world, owner, type="demo")
    assert created["type"] == "demo"


async def test_types_are_per_tenant(world: World, other_world: World) -> None:
    await world.call("POST", "/api/v1/activity-types", json={"key": "demo", "name": "Demo"})
    owner, _ = await other_world.user("ann@acme.test")
    resp = await other_world.call(
        "POST",
        A,
        json={
            "owner_id": str(owner),
            "type": "demo",
            "start": "2025-06-02T09:00:00",
            "end": "2025-06-02T10:00:00",
        },
    )
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_type"


# isolation between tenants


async def test_nothing_crosses_tenants(world: World, other_world: World) -> None:
    theirs_owner, _ = await other_world.user("eve@evil.test")
    theirs = await activity(other_world, theirs_owner, subject="secret")
    mine_owner, _ = await world.user("ann@acme.test")
    mine = await activity(world, mine_owner)
    url = f"{A}/{theirs['id']}"
    assert (await world.call("GET", url)).status_code == 404
    assert (await world.call("PATCH", url, json={"subject": "pwned"})).status_code == 404
    assert (await world.call("DELETE", url)).status_code == 404
    assert (await world.call("GET", f"/api/v1/users/{theirs_owner}")).status_code == 404
    assert (
        await world.call("PATCH", f"/api/v1/users/{theirs_owner}", json={"name": "x"})
    ).status_code == 404
    assert (await world.call("DELETE", f"/api/v1/users/{theirs_owner}")).status_code == 404
    listed = (await world.call("GET", A, params={"include_deleted": "true"})).json()["activities"]
    assert [a["id"] for a in listed] == [mine["id"]]
    assert (await world.call("GET", A, params={"owner": str(theirs_owner)})).json()[
        "activities"
    ] == []
    feed = (await world.call("GET", "/api/v1/changes")).json()["changes"]
    assert {c["activity_id"] for c in feed} == {mine["id"]}
    # an exception cannot hang off another tenant's series
    series = await activity(other_world, theirs_owner, recurrence=["RRULE:FREQ=DAILY"])
    resp = await world.call(
        "POST",
        A,
        json={"recurring_parent_id": series["id"], "original_start": "2025-06-03T09:00:00"},
    )
    assert resp.status_code == 422
    # the other tenant still sees its activity untouched
    assert (await other_world.call("GET", url)).json()["subject"] == "secret"


# isolation between users of one tenant


async def test_user_key_sees_own_and_attended_activities(world: World) -> None:
    ann, ann_key = await world.user("ann@acme.test")
    bob, bob_key = await world.user("bob@acme.test")
    own = await activity(world, ann, ann_key, subject="ann's")
    attended = await activity(
        world, bob, attendees=[{"email": "ANN@acme.test"}], subject="bob's, ann invited"
    )
    private = await activity(world, bob, subject="bob only")

    listed = {a["id"] for a in (await world.call("GET", A, ann_key)).json()["activities"]}
    assert listed == {own["id"], attended["id"]}
    assert own["owner_id"] == str(ann)
    assert (await world.call("GET", f"{A}/{attended['id']}", ann_key)).status_code == 200
    assert (await world.call("GET", f"{A}/{private['id']}", ann_key)).status_code == 404
    assert (
        await world.call("PATCH", f"{A}/{private['id']}", ann_key, json={"subject": "x"})
    ).status_code == 404
    # attendees see, but do not edit
    resp = await world.call("PATCH", f"{A}/{attended['id']}", ann_key, json={"subject": "x"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "read_only"
    assert (await world.call("DELETE", f"{A}/{attended['id']}", ann_key)).status_code == 403
    # a user key acts only for its user
    resp = await world.call(
        "POST",
        A,
        ann_key,
        json={"owner_id": str(bob), "start": "2025-06-02T09:00:00", "end": "2025-06-02T10:00:00"},
    )
    assert resp.status_code == 403
    resp = await world.call("PATCH", f"{A}/{own['id']}", ann_key, json={"owner_id": str(bob)})
    assert resp.status_code == 403
    # the owner edits its own; the admin sees everything
    assert (
        await world.call("PATCH", f"{A}/{own['id']}", ann_key, json={"subject": "mine"})
    ).status_code == 200
    assert len((await world.call("GET", A)).json()["activities"]) == 3
    # the change feed follows the same rule
    ann_feed = {
        c["activity_id"]
        for c in (await world.call("GET", "/api/v1/changes", ann_key)).json()["changes"]
    }
    assert ann_feed == {own["id"], attended["id"]}
    bob_feed = {
        c["activity_id"]
        for c in (await world.call("GET", "/api/v1/changes", bob_key)).json()["changes"]
    }
    assert bob_feed == {attended["id"], private["id"]}
    # the admin may hand an activity over
    resp = await world.call("PATCH", f"{A}/{own['id']}", json={"owner_id": str(bob)})
    assert resp.status_code == 200 and resp.json()["owner_id"] == str(bob)
    assert (await world.call("GET", f"{A}/{own['id']}", ann_key)).status_code == 404
