"""Company-level access: upload a service-account key (JSON or P12), test it, switch on for self."""

from __future__ import annotations

import base64
import json
from typing import Any

from .conftest import Api

SA = "sync@crm-project.iam.gserviceaccount.com"
ALICE = "alice@example.com"
BOB = "bob@example.com"
CALENDAR = "https://www.googleapis.com/auth/calendar"


def service_account(api: Api, *, delegate: bool = True) -> dict[str, Any]:
    created: dict[str, Any] = api.emu.control(
        "POST", "/service-accounts", {"client_email": SA}
    ).json()
    if delegate:
        api.emu.control(
            "POST",
            "/domains/example.com/delegations",
            {"client_id": created["client_id"], "scopes": [CALENDAR]},
        )
    return created


async def upload_json(api: Api, key: dict[str, Any], admin: str | None = None) -> Any:
    files = {"file": ("key.json", json.dumps(key).encode(), "application/json")}
    return await api.call("PUT", "/api/v1/tenant/google/service-account", admin, files=files)


async def test_json_key_test_and_enable_for_self(api: Api) -> None:
    api.emu.account(ALICE, "Alice")
    api.emu.account(BOB, "Bob")
    created = service_account(api)
    alice_id, alice_key = await api.user(ALICE)
    bob_id, bob_key = await api.user(BOB)

    # admins only
    resp = await upload_json(api, created["json_key"], alice_key)
    assert resp.status_code == 403
    resp = await upload_json(api, created["json_key"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["auth_mode"] == "service_account" and body["service_account_email"] == SA
    assert body["client_id"] == created["client_id"] and body["key_format"] == "json"
    settings = (await api.call("GET", "/api/v1/tenant/settings")).json()
    assert settings["auth_mode"] == "service_account" and settings["service_account_configured"]

    resp = await api.call(
        "POST", "/api/v1/tenant/google/service-account/test", json={"email": ALICE}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["ok"] is True and resp.json()["calendars"] == 1

    # nobody switches it on for someone else — not even an admin
    resp = await api.call(
        "PATCH", f"/api/v1/users/{alice_id}/google/settings", json={"enabled": True}
    )
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "enable_for_self_only"
    assert ALICE in resp.json()["error"]["message"]
    resp = await api.call(
        "PATCH", f"/api/v1/users/{alice_id}/google/settings", bob_key, json={"enabled": True}
    )
    assert resp.status_code == 404
    # the OAuth link is not how this company connects
    resp = await api.call("POST", f"/api/v1/users/{alice_id}/google/connect", alice_key)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "service_account_mode"

    # the user switches it on for themselves: no OAuth, the CRM e-mail is the Google identity
    resp = await api.call(
        "PATCH", f"/api/v1/users/{alice_id}/google/settings", alice_key, json={"enabled": True}
    )
    assert resp.status_code == 200, resp.text
    status = resp.json()
    assert status["status"] == "connected" and status["auth_mode"] == "service_account"
    assert status["google_email"] == ALICE and status["enabled"] is True
    assert status["import_calendar_ids"] == [ALICE] and status["export_calendar_id"] == ALICE
    # the admin may read it, and sync works through delegation
    assert (await api.status(alice_id))["status"] == "connected"
    api.insert_event(ALICE, "Board meeting")
    result = (await api.sync(alice_id)).json()
    assert result["outcome"] == "ok" and result["counts"]["created"] == 1, result
    assert [a["subject"] for a in await api.activities(alice_id)] == ["Board meeting"]
    assert (await api.status(bob_id, bob_key))["status"] == "not_connected"


async def test_test_button_reports_missing_delegation_and_unknown_user(api: Api) -> None:
    api.emu.account(ALICE)
    created = service_account(api, delegate=False)
    assert (await upload_json(api, created["json_key"])).status_code == 200
    test = "/api/v1/tenant/google/service-account/test"

    resp = await api.call("POST", test, json={"email": ALICE})
    assert resp.status_code == 422
    body = resp.json()
    assert body["ok"] is False and body["error"]["code"] == "google.unauthorized_client"
    assert "Domain-wide delegation" in body["error"]["remedy"]
    assert "admin.google.com" in body["error"]["remedy"]

    api.emu.control(
        "POST",
        "/domains/example.com/delegations",
        {"client_id": created["client_id"], "scopes": [CALENDAR]},
    )
    resp = await api.call("POST", test, json={"email": "nobody@example.com"})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "google.delegation_unknown_user"
    assert "CRM e-mail must equal the Google e-mail" in error["message"]

    # a CRM user whose e-mail is not their Google one cannot switch on either
    user_id, key = await api.user("ghost@example.com")
    resp = await api.call(
        "PATCH", f"/api/v1/users/{user_id}/google/settings", key, json={"enabled": True}
    )
    assert resp.status_code == 409
    assert "CRM e-mail must equal the Google e-mail" in resp.json()["error"]["message"]
    assert (await api.status(user_id, key))["status"] == "not_connected"

    resp = await api.call("POST", test, json={})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "email_required"


async def test_p12_key_with_password(api: Api) -> None:
    api.emu.account(ALICE)
    created = service_account(api)
    p12 = base64.b64decode(created["p12_base64"])
    url = "/api/v1/tenant/google/service-account"

    wrong = await api.call(
        "PUT",
        url,
        files={"file": ("key.p12", p12, "application/x-pkcs12")},
        data={"password": "not-the-password", "client_email": SA},
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "google.service_account_key"
    assert "password is wrong" in wrong.json()["error"]["message"]

    no_email = await api.call(
        "PUT", url, files={"file": ("key.p12", p12)}, data={"password": created["p12_password"]}
    )
    assert no_email.status_code == 422 and "e-mail" in no_email.json()["error"]["message"]

    resp = await api.call(
        "PUT",
        url,
        files={"file": ("key.p12", p12, "application/x-pkcs12")},
        data={"password": created["p12_password"], "client_email": SA},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["key_format"] == "p12" and body["client_id"] == created["client_id"]
    resp = await api.call(
        "POST", "/api/v1/tenant/google/service-account/test", json={"email": ALICE}
    )
    assert resp.status_code == 200, resp.text and resp.json()["ok"] is True

    broken = await api.call("PUT", url, files={"file": ("key.json", b"{not json")})
    assert broken.status_code == 422 and "not a JSON file" in broken.json()["error"]["message"]


def _ec_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


async def test_a_broken_json_key_is_422_and_the_working_key_stays(api: Api) -> None:
    """Issue 13 item 6: an EC key, a client_email that is not text, ... were stored (200) over
    a working key, and Test then answered 500."""
    api.emu.account(ALICE, "Alice")
    created = service_account(api)
    assert (await upload_json(api, created["json_key"])).status_code == 200
    good = created["json_key"]
    for broken, says in (
        ({**good, "private_key": _ec_pem()}, "not an RSA key"),
        ({**good, "client_email": 5}, "client_email"),
        ({**good, "client_email": "not-an-address"}, "client_email"),
        ({**good, "private_key_id": 7}, "private_key_id"),
        ({**good, "token_uri": "file:///etc/passwd"}, "token_uri"),
    ):
        resp = await upload_json(api, broken)
        assert resp.status_code == 422, resp.text
        assert says in resp.json()["error"]["message"]
    settings = (await api.call("GET", "/api/v1/tenant/settings")).json()
    assert settings["service_account_email"] == SA and settings["auth_mode"] == "service_account"
    resp = await api.call(
        "POST", "/api/v1/tenant/google/service-account/test", json={"email": ALICE}
    )
    assert resp.status_code == 200 and resp.json()["ok"] is True, resp.text
