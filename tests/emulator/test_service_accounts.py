"""Service accounts and domain-wide delegation, driven by google-auth and google-api-python-client
unchanged: only the key's token_uri and the client's api_endpoint point at the emulator."""

from __future__ import annotations

import base64
import time
from typing import Any

import google.auth.transport.requests
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from google.auth import crypt
from google.auth.exceptions import RefreshError
from google.oauth2 import service_account
from googleapiclient.discovery import build

from gcal_emulator import persist
from gcal_emulator.state import ServiceAccount
from tests.conftest import Emulator

CALENDAR = "https://www.googleapis.com/auth/calendar"
READONLY = "https://www.googleapis.com/auth/calendar.readonly"
SA_EMAIL = "calsync@crm-project.iam.gserviceaccount.com"
ADA = "ada@example.com"


def api_endpoint(emulator: Emulator) -> str:
    # google-api-python-client uses api_endpoint *instead of* rootUrl + servicePath
    # ("https://www.googleapis.com/" + "calendar/v3/"), so the service path must be included
    return f"{emulator.url}/calendar/v3/"


def calendar_ids(emulator: Emulator, creds: Any) -> list[str]:
    service = build(
        "calendar",
        "v3",
        credentials=creds,
        static_discovery=True,
        client_options={"api_endpoint": api_endpoint(emulator)},
        cache_discovery=False,
    )
    items = service.calendarList().list().execute()["items"]
    return [item["id"] for item in items]


@pytest.fixture
def sa(emulator: Emulator) -> dict[str, Any]:
    emulator.account(ADA, "Ada")
    body: dict[str, Any] = emulator.control(
        "POST", "/service-accounts", {"client_email": SA_EMAIL}
    ).json()
    return body


def test_json_key_looks_like_googles(emulator: Emulator, sa: dict[str, Any]) -> None:
    key = sa["json_key"]
    assert key["type"] == "service_account"
    assert key["client_email"] == SA_EMAIL
    assert key["project_id"] == "crm-project"
    assert key["client_id"] == sa["client_id"] and sa["client_id"].isdigit()
    assert key["token_uri"] == f"{emulator.url}/token"
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert len(key["private_key_id"]) == 40
    assert sa["p12_password"] == "notasecret"


def test_service_account_acts_as_itself(emulator: Emulator, sa: dict[str, Any]) -> None:
    creds = service_account.Credentials.from_service_account_info(sa["json_key"], scopes=[CALENDAR])
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.token.startswith("ya29.") and creds.expiry is not None
    assert calendar_ids(emulator, creds) == [SA_EMAIL]


def test_impersonation_needs_domain_wide_delegation(emulator: Emulator, sa: dict[str, Any]) -> None:
    base = service_account.Credentials.from_service_account_info(sa["json_key"], scopes=[CALENDAR])
    request = google.auth.transport.requests.Request()
    with pytest.raises(RefreshError) as err:
        base.with_subject(ADA).refresh(request)
    assert "unauthorized_client" in str(err.value)

    # authorised for a narrower scope only: still refused
    delegation = "/domains/example.com/delegations"
    emulator.control("POST", delegation, {"client_id": sa["client_id"], "scopes": [READONLY]})
    with pytest.raises(RefreshError, match="unauthorized_client"):
        base.with_subject(ADA).refresh(request)

    emulator.control(
        "POST", delegation, {"client_id": sa["client_id"], "scopes": f"{CALENDAR},{READONLY}"}
    )
    assert calendar_ids(emulator, base.with_subject(ADA)) == [ADA]

    with pytest.raises(RefreshError) as err:
        base.with_subject("nobody@example.com").refresh(request)
    assert "invalid_grant" in str(err.value) and "Invalid email or User ID" in str(err.value)

    emulator.control("DELETE", delegation, {"client_id": sa["client_id"]})
    with pytest.raises(RefreshError, match="unauthorized_client"):
        base.with_subject(ADA).refresh(request)


def test_p12_key_with_google_auth_signer(emulator: Emulator, sa: dict[str, Any]) -> None:
    raw = base64.b64decode(sa["p12_base64"])
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(raw, b"wrong password")
    private_key, cert, _ = pkcs12.load_key_and_certificates(raw, sa["p12_password"].encode())
    assert isinstance(private_key, rsa.RSAPrivateKey) and cert is not None
    signer = crypt.RSASigner(private_key)  # a P12 carries no key id: iss identifies the account
    emulator.control(
        "POST", "/domains/example.com/delegations", {"client_id": SA_EMAIL, "scopes": [CALENDAR]}
    )
    creds = service_account.Credentials(
        signer, SA_EMAIL, f"{emulator.url}/token", scopes=[CALENDAR], subject=ADA
    )
    assert calendar_ids(emulator, creds) == [ADA]


def test_custom_p12_password(emulator: Emulator) -> None:
    body = emulator.control(
        "POST",
        "/service-accounts",
        {"client_email": "x@p.iam.gserviceaccount.com", "p12_password": "pw"},
    ).json()
    assert body["p12_password"] == "pw"
    pkcs12.load_key_and_certificates(base64.b64decode(body["p12_base64"]), b"pw")


def _assertion(key_pem: str, kid: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": SA_EMAIL,
        "scope": CALENDAR,
        "aud": "https://oauth2.googleapis.com/token",
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    return jwt.encode(payload, key_pem, algorithm="RS256", headers={"kid": kid})


def _grant(emulator: Emulator, assertion: str) -> tuple[int, dict[str, Any]]:
    resp = emulator.http.post(
        "/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )
    return resp.status_code, resp.json()


def test_assertion_checks(emulator: Emulator, sa: dict[str, Any]) -> None:
    key, kid = sa["json_key"]["private_key"], sa["private_key_id"]
    status, body = _grant(emulator, _assertion(key, kid))
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] > 3500
    status, body = _grant(emulator, _assertion(key, kid, aud=f"{emulator.url}/token"))
    assert status == 200

    other = emulator.control(
        "POST", "/service-accounts", {"client_email": "other@crm-project.iam.gserviceaccount.com"}
    ).json()["json_key"]["private_key"]
    status, body = _grant(emulator, _assertion(other, kid))
    assert (status, body["error_description"]) == (400, "Invalid JWT Signature.")

    now = int(time.time())
    for claims in (
        {"iat": now - 7200, "exp": now - 3600},  # expired
        {"iat": now, "exp": now + 7200},  # lives longer than an hour
    ):
        status, body = _grant(emulator, _assertion(key, kid, **claims))
        assert status == 400 and body["error"] == "invalid_grant"
        assert "short-lived" in body["error_description"]

    status, body = _grant(emulator, _assertion(key, kid, aud="https://example.com/token"))
    assert status == 400 and "audience" in body["error_description"]
    status, body = _grant(emulator, _assertion(key, kid, scope=""))
    assert status == 400 and body["error"] == "invalid_scope"
    status, body = _grant(
        emulator, _assertion(key, "0" * 40, iss="ghost@x.iam.gserviceaccount.com")
    )
    assert status == 400 and body["error"] == "invalid_grant"


def test_delegation_control_lists_and_validates(emulator: Emulator, sa: dict[str, Any]) -> None:
    path = "/domains/Example.com/delegations"
    emulator.control("POST", path, {"client_id": sa["client_id"], "scopes": [CALENDAR]})
    listed = emulator.control("GET", path).json()
    assert listed == {
        "domain": "example.com",
        "items": [{"client_id": sa["client_id"], "scopes": [CALENDAR]}],
    }
    bad = emulator.http.post(f"/emulator/v1{path}", json={"client_id": sa["client_id"]})
    assert bad.status_code == 400


CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def _keys_path(key_id: str, project: str = "-", account: str = SA_EMAIL) -> str:
    return f"/v1/projects/{project}/serviceAccounts/{account}/keys/{key_id}"


def test_a_second_key_leaves_the_first_valid_until_iam_deletes_it(
    emulator: Emulator, sa: dict[str, Any]
) -> None:
    """As in Google: an account has several live keys; keys.delete (google-auth's
    AuthorizedSession, as the service account with cloud-platform) retires one, and the token
    endpoint then refuses what it signs with Google's answer."""
    second = emulator.control("POST", "/service-accounts", {"client_email": SA_EMAIL}).json()
    assert second["client_id"] == sa["client_id"]
    assert second["private_key_id"] != sa["private_key_id"]
    listed = emulator.control("GET", "/service-accounts").json()["items"]
    assert listed == [
        {
            "client_email": SA_EMAIL,
            "client_id": sa["client_id"],
            "private_key_id": second["private_key_id"],
            "private_key_ids": [sa["private_key_id"], second["private_key_id"]],
        }
    ]
    first_key, first_kid = sa["json_key"]["private_key"], sa["private_key_id"]
    status, issued = _grant(emulator, _assertion(first_key, first_kid))
    assert status == 200
    for p12 in (sa, second):  # a P12 assertion names no key: any live key of the account
        private_key, _, _ = pkcs12.load_key_and_certificates(
            base64.b64decode(p12["p12_base64"]), b"notasecret"
        )
        assert isinstance(private_key, rsa.RSAPrivateKey)
        signer = crypt.RSASigner(private_key)
        creds = service_account.Credentials(
            signer, SA_EMAIL, f"{emulator.url}/token", scopes=[CALENDAR]
        )
        assert calendar_ids(emulator, creds) == [SA_EMAIL]

    admin = service_account.Credentials.from_service_account_info(
        second["json_key"], scopes=[CLOUD_PLATFORM]
    )
    session = google.auth.transport.requests.AuthorizedSession(admin)
    resp = session.delete(f"{emulator.url}{_keys_path(first_kid)}")
    assert (resp.status_code, resp.json()) == (200, {})

    status, body = _grant(emulator, _assertion(first_key, first_kid))
    assert (status, body) == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
    )
    old = service_account.Credentials.from_service_account_info(sa["json_key"], scopes=[CALENDAR])
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        old.refresh(google.auth.transport.requests.Request())
    # the access token issued before lives on until it expires; the second key still signs
    got = emulator.http.get(
        "/calendar/v3/users/me/calendarList",
        headers={"Authorization": f"Bearer {issued['access_token']}"},
    )
    assert got.status_code == 200
    status, _ = _grant(
        emulator, _assertion(second["json_key"]["private_key"], second["private_key_id"])
    )
    assert status == 200
    listed = emulator.control("GET", "/service-accounts").json()["items"]
    assert listed[0]["private_key_ids"] == [second["private_key_id"]]

    # deleted already, or never there: 404 in the shape of Google's newer APIs
    again = session.delete(f"{emulator.url}{_keys_path(first_kid)}")
    assert again.status_code == 404 and again.json()["error"]["status"] == "NOT_FOUND"
    by_id = session.delete(f"{emulator.url}{_keys_path(first_kid, 'crm-project', sa['client_id'])}")
    assert by_id.status_code == 404 and "key" in by_id.json()["error"]["message"]
    other_project = session.delete(f"{emulator.url}{_keys_path(second['private_key_id'], 'other')}")
    assert other_project.status_code == 404


def test_deleting_a_key_needs_a_cloud_platform_token(
    emulator: Emulator, sa: dict[str, Any]
) -> None:
    path = _keys_path(sa["private_key_id"], "crm-project")
    resp = emulator.http.delete(path)
    assert resp.status_code == 401 and resp.json()["error"]["status"] == "UNAUTHENTICATED"
    bogus = emulator.http.delete(path, headers={"Authorization": "Bearer ya29.nope"})
    assert bogus.status_code == 401 and "invalid authentication" in bogus.json()["error"]["message"]
    calendar_only = emulator.token(ADA, [CALENDAR])
    resp = emulator.http.delete(path, headers={"Authorization": f"Bearer {calendar_only}"})
    assert resp.status_code == 403 and resp.json()["error"]["status"] == "PERMISSION_DENIED"
    admin = emulator.token(ADA, [CLOUD_PLATFORM])
    resp = emulator.http.delete(path, headers={"Authorization": f"Bearer {admin}"})
    assert resp.status_code == 200
    status, body = _grant(emulator, _assertion(sa["json_key"]["private_key"], sa["private_key_id"]))
    assert status == 400 and body["error_description"] == "Invalid JWT Signature."


def test_a_state_file_from_before_several_keys_loads_its_key() -> None:
    old = {
        "__dataclass__": "gcal_emulator.state:ServiceAccount",
        "fields": {
            "client_email": SA_EMAIL,
            "client_id": "1234",
            "private_key_id": "abc",
            "public_key_pem": "PEM",
        },
    }
    loaded = persist.decode(old)
    assert isinstance(loaded, ServiceAccount) and loaded.keys == {"abc": "PEM"}
    assert persist.decode(persist.encode(loaded)).keys == {"abc": "PEM"}
