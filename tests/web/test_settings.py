"""Choosing calendars (by id, export only where the user may write), direction, on/off."""

from __future__ import annotations

import uuid

from .conftest import Api

ALICE = "alice@example.com"
BOB = "bob@example.com"


async def connected(api: Api) -> tuple[uuid.UUID, str, str, str]:
    """Alice connected; she owns a "CRM" calendar and sees Bob's calendar read-only."""
    api.emu.account(ALICE, "Alice")
    api.emu.account(BOB, "Bob")
    crm = str(
        api.emu.control("POST", f"/accounts/{ALICE}/calendars", {"summary": "CRM"}).json()["id"]
    )
    api.emu.control("POST", f"/calendars/{BOB}/acl", {"email": ALICE, "role": "reader"})
    user_id, key = await api.user(ALICE)
    await api.connect(user_id, ALICE, key)
    return user_id, key, crm, BOB


async def patch(api: Api, user_id: uuid.UUID, key: str, **body: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    resp = await api.call("PATCH", f"/api/v1/users/{user_id}/google/settings", key, json=body)
    return resp.status_code, resp.json()


async def test_calendars_by_id_and_writable_export(api: Api) -> None:
    user_id, key, crm, shared = await connected(api)
    listed = {c["id"]: c for c in (await api.status(user_id, key))["calendars"]}
    assert set(listed) == {ALICE, crm, shared}
    assert listed[shared]["access_role"] == "reader" and listed[shared]["writable"] is False
    assert listed[crm]["import"] is False and listed[crm]["export"] is False

    # a name is not an id: refused, with the id it probably meant
    status, body = await patch(api, user_id, key, import_calendar_ids=["CRM"])
    assert status == 422
    assert body["error"]["code"] == "unknown_calendar"
    assert crm in body["error"]["message"] and "by their id" in body["error"]["remedy"]
    assert body["error"]["fields"][0]["field"] == "import_calendar_ids"

    # a calendar the user can only read cannot receive CRM entries
    status, body = await patch(api, user_id, key, export_calendar_id=shared)
    assert status == 422
    assert body["error"]["code"] == "export_calendar_not_writable"
    assert "owner or writer" in body["error"]["remedy"]

    # primary + shared flow in, CRM entries go to the separate calendar
    status, body = await patch(
        api, user_id, key, import_calendar_ids=[ALICE, shared], export_calendar_id=crm
    )
    assert status == 200, body
    flags = {c["id"]: (c["import"], c["export"]) for c in body["calendars"]}
    assert flags == {ALICE: (True, False), crm: (False, True), shared: (True, False)}
    assert body["import_calendar_ids"] == [ALICE, shared] and body["export_calendar_id"] == crm

    # direction, private events and off: stored, calendars unchanged
    status, body = await patch(
        api, user_id, key, direction="google_to_crm", private_events="busy", enabled=False
    )
    assert status == 200, body
    assert body["direction"] == "google_to_crm" and body["private_events"] == "busy"
    assert body["enabled"] is False
    assert body["export_calendar_id"] == crm
    # nothing to sync while switched off
    resp = await api.sync(user_id, key)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "nothing_to_sync"
    status, body = await patch(api, user_id, key, enabled=True, import_calendar_ids=[ALICE])
    assert status == 200 and body["enabled"] is True
    assert {c["id"] for c in body["calendars"] if c["import"]} == {ALICE}

    # invalid values are plain validation errors
    status, body = await patch(api, user_id, key, direction="sideways")
    assert status == 422 and body["error"]["code"] == "validation_failed"


async def test_settings_need_a_connection(api: Api) -> None:
    api.emu.account(ALICE)
    user_id, key = await api.user(ALICE)
    status, body = await patch(api, user_id, key, enabled=True)
    assert status == 409
    assert body["error"]["code"] == "not_connected" and "/google/connect" in body["error"]["remedy"]
