"""The OAuth 2.0 web-server flow against the emulator, driven by authlib as a real client would."""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import google.auth.transport.requests
import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from google.oauth2 import id_token as google_id_token

from tests.conftest import Emulator

CLIENT_ID = "crm-web.apps.googleusercontent.com"
CLIENT_SECRET = "s3cret"
REDIRECT = "https://crm.example.com/google/callback"
CALENDAR = "https://www.googleapis.com/auth/calendar"
READONLY = "https://www.googleapis.com/auth/calendar.readonly"
EMAIL = "https://www.googleapis.com/auth/userinfo.email"
PROFILE = "https://www.googleapis.com/auth/userinfo.profile"
ADA = "ada@example.com"


class ConsentForm(HTMLParser):
    """The consent page's one form: action, hidden fields, account radios."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}
        self.accounts: list[str] = []
        self.checked: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"] or ""] = a.get("value") or ""
        elif tag == "input" and a.get("type") == "radio":
            self.accounts.append(a["value"] or "")
            if "checked" in a:
                self.checked = a["value"]


@pytest.fixture
def setup(emulator: Emulator) -> Emulator:
    emulator.account(ADA, "Ada Lovelace")
    emulator.account("bob@example.com", "Bob")
    emulator.control(
        "POST",
        "/oauth-clients",
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT]},
    )
    return emulator


def session(emulator: Emulator, scope: str, **kwargs: Any) -> OAuth2Session:
    return OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope=scope, redirect_uri=REDIRECT, **kwargs)


def consent(
    emulator: Emulator, url: str, account: str | None = ADA, action: str = "allow"
) -> httpx.Response:
    """What a person does in the browser: open the page, pick the account, press a button."""
    page = emulator.http.get(url)
    assert page.status_code == 200, page.text
    form = ConsentForm(page.text)
    data = dict(form.hidden, action=action)
    if account:
        data["account"] = account
    resp = emulator.http.post(urljoin(url, form.action), data=data)
    assert resp.status_code == 302, resp.text
    return resp


def auth_url(emulator: Emulator, **params: str) -> str:
    query = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": CALENDAR,
        **params,
    }
    return str(httpx.URL(f"{emulator.url}/o/oauth2/v2/auth", params=query))


def code_of(resp: httpx.Response) -> str:
    return parse_qs(urlparse(resp.headers["location"]).query)["code"][0]


def exchange(emulator: Emulator, code: str, **extra: str) -> httpx.Response:
    return emulator.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **extra,
        },
    )


def refresh(emulator: Emulator, refresh_token: str) -> httpx.Response:
    return emulator.http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )


def calendar_list(emulator: Emulator, token: str) -> httpx.Response:
    return emulator.http.get(
        "/calendar/v3/users/me/calendarList", headers={"Authorization": f"Bearer {token}"}
    )


def test_code_flow_with_pkce_refresh_and_revoke(setup: Emulator) -> None:
    emu = setup
    client = session(emu, f"openid email {CALENDAR}", code_challenge_method="S256")
    verifier = generate_token(64)
    url, state = client.create_authorization_url(
        f"{emu.url}/o/oauth2/v2/auth",
        code_verifier=verifier,
        access_type="offline",
        prompt="consent",
        login_hint=ADA,
    )
    assert "code_challenge_method=S256" in url
    redirected = consent(emu, url)
    location = redirected.headers["location"]
    assert location.startswith(REDIRECT + "?")
    assert parse_qs(urlparse(location).query)["state"] == [state]

    token = client.fetch_token(
        f"{emu.url}/token", authorization_response=location, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    assert 3500 < token["expires_in"] <= 3600
    assert token["refresh_token"].startswith("1//")
    assert set(token["scope"].split()) == {"openid", EMAIL, CALENDAR}
    claims = google_id_token.verify_token(
        token["id_token"],
        google.auth.transport.requests.Request(),
        audience=CLIENT_ID,
        certs_url=f"{emu.url}/oauth2/v3/certs",
    )
    assert claims["email"] == ADA and claims["iss"] == "https://accounts.google.com"

    listed = calendar_list(emu, token["access_token"])
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()["items"]] == [ADA]

    # refresh: a new access token, the refresh token is not sent again
    raw = refresh(emu, token["refresh_token"])
    assert raw.status_code == 200
    assert "refresh_token" not in raw.json()
    assert raw.json()["access_token"] != token["access_token"]
    refreshed = client.refresh_token(f"{emu.url}/token", refresh_token=token["refresh_token"])
    assert calendar_list(emu, refreshed["access_token"]).status_code == 200

    # revoke the grant: every token of it dies, refresh answers invalid_grant
    revoked = client.revoke_token(f"{emu.url}/revoke", token=token["refresh_token"])
    assert revoked.status_code == 200
    with pytest.raises(OAuthError) as err:
        client.refresh_token(f"{emu.url}/token", refresh_token=token["refresh_token"])
    assert err.value.error == "invalid_grant"
    assert err.value.description == "Token has been expired or revoked."
    assert calendar_list(emu, refreshed["access_token"]).status_code == 401
    again = emu.http.post("/revoke", data={"token": token["refresh_token"]})
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_token",
        "error_description": "Token expired or revoked",
    }


def test_pkce_mismatch_and_code_reuse_are_invalid_grant(setup: Emulator) -> None:
    emu = setup
    client = session(emu, CALENDAR, code_challenge_method="S256")
    verifier = generate_token(64)
    url, _ = client.create_authorization_url(f"{emu.url}/o/oauth2/auth", code_verifier=verifier)
    location = consent(emu, url).headers["location"]
    with pytest.raises(OAuthError) as err:
        client.fetch_token(
            f"{emu.url}/token", authorization_response=location, code_verifier=generate_token(64)
        )
    assert err.value.error == "invalid_grant"
    assert err.value.description == "Invalid code verifier."

    url, _ = client.create_authorization_url(f"{emu.url}/o/oauth2/auth", code_verifier=verifier)
    location = consent(emu, url).headers["location"]
    client.fetch_token(f"{emu.url}/token", authorization_response=location, code_verifier=verifier)
    with pytest.raises(OAuthError) as err:
        client.fetch_token(
            f"{emu.url}/token", authorization_response=location, code_verifier=verifier
        )
    assert err.value.error == "invalid_grant"

    # a PKCE request whose exchange forgets the verifier
    url, _ = client.create_authorization_url(f"{emu.url}/o/oauth2/auth", code_verifier=verifier)
    resp = exchange(emu, code_of(consent(emu, url)))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_plain_pkce_and_wrong_redirect_uri_at_token_endpoint(setup: Emulator) -> None:
    emu = setup
    verifier = generate_token(50)
    code = code_of(consent(emu, auth_url(emu, code_challenge=verifier)))
    wrong = exchange(emu, code, code_verifier=verifier, redirect_uri=REDIRECT + "x")
    assert wrong.status_code == 400 and wrong.json()["error"] == "redirect_uri_mismatch"
    code = code_of(consent(emu, auth_url(emu, code_challenge=verifier)))
    assert exchange(emu, code, code_verifier=verifier).status_code == 200
    s256 = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    code = code_of(
        consent(emu, auth_url(emu, code_challenge=s256.decode(), code_challenge_method="S256"))
    )
    assert exchange(emu, code, code_verifier=verifier).status_code == 200


def test_bad_requests_show_an_error_page_and_never_redirect(setup: Emulator) -> None:
    emu = setup
    page = emu.http.get(auth_url(emu, redirect_uri="https://evil.example.com/cb"))
    assert page.status_code == 400
    assert "location" not in page.headers
    assert "Error 400: redirect_uri_mismatch" in page.text
    page = emu.http.get(auth_url(emu, client_id="nobody.apps.googleusercontent.com"))
    assert page.status_code == 401 and "Error 401: invalid_client" in page.text
    page = emu.http.get(auth_url(emu, scope=""))
    assert page.status_code == 400 and "Missing required parameter: scope" in page.text
    page = emu.http.get(auth_url(emu, response_type="token"))
    assert page.status_code == 400 and "location" not in page.headers
    page = emu.http.get(auth_url(emu, code_challenge="x" * 43, code_challenge_method="S512"))
    assert page.status_code == 400


def test_deny_redirects_with_access_denied(setup: Emulator) -> None:
    resp = consent(setup, auth_url(setup, state="xyz"), action="deny")
    query = parse_qs(urlparse(resp.headers["location"]).query)
    assert query == {"state": ["xyz"], "error": ["access_denied"]}


def test_login_hint_preselects_the_account(setup: Emulator) -> None:
    page = setup.http.get(auth_url(setup, login_hint="bob@example.com"))
    form = ConsentForm(page.text)
    assert sorted(form.accounts) == [ADA, "bob@example.com"]
    assert form.checked == "bob@example.com"
    assert ConsentForm(setup.http.get(auth_url(setup)).text).checked is None
    # Allow without choosing an account stays on the page
    form = ConsentForm(setup.http.get(auth_url(setup)).text)
    resp = setup.http.post(form.action, data=dict(form.hidden, action="allow"))
    assert resp.status_code == 400 and "location" not in resp.headers


def test_refresh_token_only_on_first_offline_grant_or_consent(setup: Emulator) -> None:
    emu = setup

    def tokens(**params: str) -> dict[str, Any]:
        resp = exchange(emu, code_of(consent(emu, auth_url(emu, **params))))
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    assert "refresh_token" not in tokens()  # online
    assert "refresh_token" in tokens(access_type="offline")  # first offline grant
    assert "refresh_token" not in tokens(access_type="offline")  # already granted
    assert "refresh_token" in tokens(access_type="offline", prompt="consent")
    assert "refresh_token" not in tokens(prompt="consent")  # consent but online


def test_include_granted_scopes_unions_earlier_grants(setup: Emulator) -> None:
    emu = setup
    first = exchange(emu, code_of(consent(emu, auth_url(emu, scope=READONLY)))).json()
    assert first["scope"] == READONLY
    plain = exchange(emu, code_of(consent(emu, auth_url(emu, scope="email")))).json()
    assert plain["scope"] == EMAIL
    url = auth_url(emu, scope="email", include_granted_scopes="true")
    union = exchange(emu, code_of(consent(emu, url))).json()
    assert set(union["scope"].split()) == {READONLY, EMAIL}


def test_prompt_none_needs_an_earlier_grant(setup: Emulator) -> None:
    emu = setup
    resp = emu.http.get(auth_url(emu, prompt="none", login_hint=ADA))
    assert parse_qs(urlparse(resp.headers["location"]).query)["error"] == ["consent_required"]
    consent(emu, auth_url(emu))
    resp = emu.http.get(auth_url(emu, prompt="none", login_hint=ADA))
    assert resp.status_code == 302 and exchange(emu, code_of(resp)).status_code == 200


def test_access_token_expires_with_the_clock_and_refresh_recovers(setup: Emulator) -> None:
    emu = setup
    body = exchange(emu, code_of(consent(emu, auth_url(emu, access_type="offline")))).json()
    assert calendar_list(emu, body["access_token"]).status_code == 200
    emu.control("POST", "/clock", {"advance_seconds": 3601})
    expired = calendar_list(emu, body["access_token"])
    assert expired.status_code == 401
    assert expired.json()["error"]["errors"][0]["reason"] == "authError"
    fresh = refresh(emu, body["refresh_token"]).json()
    assert calendar_list(emu, fresh["access_token"]).status_code == 200


def test_password_change_kills_refresh_tokens(setup: Emulator) -> None:
    emu = setup
    body = exchange(emu, code_of(consent(emu, auth_url(emu, access_type="offline")))).json()
    emu.control("POST", f"/accounts/{ADA}/revoke-grants")
    resp = refresh(emu, body["refresh_token"])
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    assert calendar_list(emu, body["access_token"]).status_code == 401


def test_token_endpoint_client_authentication(setup: Emulator) -> None:
    emu = setup
    code = code_of(consent(emu, auth_url(emu)))
    wrong = exchange(emu, code, client_secret="nope")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    unknown = exchange(emu, code, client_id="who")
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    # HTTP Basic works too (client_secret_basic)
    basic = emu.http.post(
        "/oauth2/v4/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert basic.status_code == 200, basic.text
    odd = emu.http.post("/token", data={"grant_type": "password"})
    assert odd.status_code == 400 and odd.json()["error"] == "unsupported_grant_type"
    assert refresh(emu, "1//nonsense").json()["error"] == "invalid_grant"


def test_tokeninfo_and_userinfo(setup: Emulator) -> None:
    emu = setup
    url = auth_url(emu, scope=f"openid email profile {CALENDAR}", access_type="offline")
    body = exchange(emu, code_of(consent(emu, url))).json()
    info = emu.http.get("/tokeninfo", params={"access_token": body["access_token"]}).json()
    assert info["azp"] == info["aud"] == CLIENT_ID
    assert info["email"] == ADA and info["email_verified"] == "true"
    assert CALENDAR in info["scope"].split() and info["access_type"] == "offline"
    assert 3500 < int(info["expires_in"]) <= 3600 and int(info["exp"]) > 0
    about = emu.http.get("/tokeninfo", params={"id_token": body["id_token"]}).json()
    assert about["aud"] == CLIENT_ID and about["email"] == ADA
    assert about["email_verified"] == "true"
    bad = emu.http.get("/oauth2/v3/tokeninfo", params={"access_token": "ya29.nope"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_token"

    auth = {"Authorization": f"Bearer {body['access_token']}"}
    me = emu.http.get("/oauth2/v3/userinfo", headers=auth).json()
    assert me["email"] == ADA and me["email_verified"] is True
    assert me["name"] == "Ada Lovelace" and me["sub"].isdigit()
    v2 = emu.http.get("/oauth2/v2/userinfo", headers=auth).json()
    assert v2["id"] == me["sub"] and v2["verified_email"] is True
    assert emu.http.get("/v1/userinfo", headers=auth).json()["sub"] == me["sub"]
    nope = emu.http.get("/oauth2/v3/userinfo", headers={"Authorization": "Bearer ya29.x"})
    assert nope.status_code == 401 and "WWW-Authenticate" in nope.headers
    # a calendar-only token says nothing about the person
    only = exchange(emu, code_of(consent(emu, auth_url(emu)))).json()["access_token"]
    assert (
        emu.http.get("/oauth2/v3/userinfo", headers={"Authorization": f"Bearer {only}"}).status_code
        == 401
    )


def test_revoking_an_access_token_revokes_the_grant(setup: Emulator) -> None:
    emu = setup
    body = exchange(emu, code_of(consent(emu, auth_url(emu, access_type="offline")))).json()
    assert emu.http.post(f"/o/oauth2/revoke?token={body['access_token']}").json() == {}
    assert refresh(emu, body["refresh_token"]).json()["error"] == "invalid_grant"
    # after a revoke the next offline consent gets a refresh token again (a first grant)
    again = exchange(emu, code_of(consent(emu, auth_url(emu, access_type="offline")))).json()
    assert "refresh_token" in again


def test_id_token_carries_the_nonce_and_reset_forgets_codes(setup: Emulator) -> None:
    url = auth_url(setup, scope=f"openid {EMAIL}", nonce="n-0S6_WzA2Mj")
    code = code_of(consent(setup, url))
    token = exchange(setup, code).json()
    claims = google_id_token.verify_token(
        token["id_token"],
        google.auth.transport.requests.Request(),
        audience=CLIENT_ID,
        certs_url=f"{setup.url}/oauth2/v3/certs",
    )
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    # a code issued before a reset is unknown afterwards, nonce and all
    second = code_of(consent(setup, url))
    setup.control("POST", "/reset")
    setup.control(
        "POST",
        "/oauth-clients",
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT]},
    )
    assert exchange(setup, second).json()["error"] == "invalid_grant"
    assert setup.world.auth_codes == {}
