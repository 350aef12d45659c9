"""User connections against the emulator's OAuth server: PKCE, state, refresh, revoke, userinfo."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from calsync.google import errors
from calsync.google.calendar import CalendarClient
from calsync.google.oauth import SCOPE_CALENDAR, GoogleOAuth, MemoryStateStore
from calsync.google.retry import RetryPolicy
from calsync.settings import Settings
from tests.conftest import Emulator

from .conftest import CLIENT_ID, REDIRECT_URI, connect, consent, log_mark, log_since


async def test_authorization_url_carries_google_parameters(oauth: GoogleOAuth) -> None:
    url = await oauth.authorization_url("crm-user-1", login_hint="alice@example.com")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(oauth.settings.google_auth_url + "?")
    assert q["client_id"] == CLIENT_ID
    assert q["redirect_uri"] == REDIRECT_URI
    assert q["response_type"] == "code"
    assert q["access_type"] == "offline"
    assert q["prompt"] == "consent"
    assert q["include_granted_scopes"] == "true"
    assert q["login_hint"] == "alice@example.com"
    assert q["code_challenge_method"] == "S256"
    assert SCOPE_CALENDAR in q["scope"].split()
    # the challenge is S256 of the verifier remembered with the state; the verifier never leaves
    pending = await oauth.state_store.take(q["state"])
    assert pending is not None and pending.user_key == "crm-user-1"
    digest = hashlib.sha256(pending.code_verifier.encode()).digest()
    assert q["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pending.code_verifier not in url


async def test_connect_exchanges_code_and_reads_email(
    emulator: Emulator, oauth: GoogleOAuth
) -> None:
    emulator.account("alice@example.com", "Alice Example")
    auth = await connect(oauth, "alice@example.com")
    assert auth.email == "alice@example.com"
    assert auth.user_key == "crm-user-1"
    assert auth.refresh_token
    assert SCOPE_CALENDAR in auth.token.scopes
    assert auth.token.expires_at is not None
    info = await oauth.userinfo(auth.token.access_token)
    assert info.email == "alice@example.com"


async def test_reused_state_is_rejected(emulator: Emulator, oauth: GoogleOAuth) -> None:
    emulator.account("alice@example.com")
    url = await oauth.authorization_url("crm-user-1")
    callback = await consent(url, "alice@example.com")
    await oauth.complete(state=callback["state"], code=callback["code"], user_key="crm-user-1")
    with pytest.raises(errors.InvalidState) as exc:
        await oauth.complete(state=callback["state"], code=callback["code"], user_key="crm-user-1")
    assert exc.value.code == "google.oauth_state_invalid"
    assert "only once" in exc.value.remedy


async def test_state_of_another_user_unknown_or_stale_is_rejected(
    emulator: Emulator, settings: Settings, oauth_client: None, retry: RetryPolicy
) -> None:
    emulator.account("alice@example.com")
    now = [1_000_000.0]
    flow = GoogleOAuth(settings, retry=retry, clock=lambda: now[0], state_ttl=600)
    try:
        url = await flow.authorization_url("crm-user-1")
        callback = await consent(url, "alice@example.com")
        # bound to crm-user-1: crm-user-2 cannot complete it (and it is spent by trying)
        with pytest.raises(errors.InvalidState):
            await flow.complete(state=callback["state"], code=callback["code"], user_key="u2")
        with pytest.raises(errors.InvalidState):
            await flow.complete(state="forged", code=callback["code"])
        with pytest.raises(errors.InvalidState):
            await flow.complete(state=None, code=callback["code"])
        url = await flow.authorization_url("crm-user-1")
        callback = await consent(url, "alice@example.com")
        now[0] += 601
        with pytest.raises(errors.InvalidState):
            await flow.complete(state=callback["state"], code=callback["code"])
    finally:
        await flow.aclose()


async def test_pkce_verifier_mismatch_is_rejected(emulator: Emulator, oauth: GoogleOAuth) -> None:
    emulator.account("alice@example.com")
    store = oauth.state_store
    assert isinstance(store, MemoryStateStore)
    url = await oauth.authorization_url("crm-user-1")
    callback = await consent(url, "alice@example.com")
    # an attacker holding the code but not our verifier
    pending = await store.take(callback["state"])
    assert pending is not None
    await store.put(replace(pending, code_verifier="x" * 64))
    with pytest.raises(errors.AuthorizationFailed) as exc:
        await oauth.complete(state=callback["state"], code=callback["code"])
    assert exc.value.reason == "invalid_grant"
    assert exc.value.detail == "Invalid code verifier."
    assert exc.value.code == "google.authorization_failed"
    assert not exc.value.needs_reauth


async def test_declined_consent(emulator: Emulator, oauth: GoogleOAuth) -> None:
    emulator.account("alice@example.com")
    url = await oauth.authorization_url("crm-user-1")
    callback = await consent(url, "alice@example.com", action="deny")
    assert callback["error"] == "access_denied"
    with pytest.raises(errors.AuthorizationFailed, match="cancelled"):
        await oauth.complete(state=callback["state"], error=callback["error"])


async def test_wrong_client_secret(
    emulator: Emulator, settings: Settings, oauth_client: None, retry: RetryPolicy
) -> None:
    emulator.account("alice@example.com")
    bad = Settings(**{**settings.model_dump(), "google_client_secret": SecretStr("nope")})
    flow = GoogleOAuth(bad, retry=retry)
    try:
        url = await flow.authorization_url("u")
        callback = await consent(url, "alice@example.com")
        with pytest.raises(errors.InvalidClient) as exc:
            await flow.complete(state=callback["state"], code=callback["code"])
        assert "CALSYNC_GOOGLE_CLIENT_SECRET" in exc.value.remedy
    finally:
        await flow.aclose()


def test_oauth_not_configured(emulator: Emulator) -> None:
    with pytest.raises(errors.OAuthNotConfigured) as exc:
        GoogleOAuth(Settings(google_emulator_url=emulator.url, google_client_id=None))
    assert exc.value.code == "google.oauth_not_configured"
    assert "CALSYNC_GOOGLE_CLIENT_ID" in exc.value.remedy


async def test_concurrent_refreshes_of_one_connection_do_not_race(
    emulator: Emulator, oauth: GoogleOAuth
) -> None:
    emulator.account("alice@example.com")
    auth = await connect(oauth, "alice@example.com")
    assert auth.refresh_token
    stored = []

    async def on_token(token: object) -> None:
        stored.append(token)

    creds = oauth.credentials(auth.refresh_token, account=auth.email, on_token=on_token)
    mark = log_mark(emulator)
    tokens = await asyncio.gather(*(creds.access_token() for _ in range(20)))
    assert len(set(tokens)) == 1
    assert creds.refresh_count == 1
    assert len(stored) == 1
    token_posts = [r for r in log_since(emulator, mark) if r["path"] == "/token"]
    assert len(token_posts) == 1
    # a 401 seen by many callers with the same rejected token: one refresh between them
    rejected = tokens[0]
    again = await asyncio.gather(*(creds.refresh(rejected=rejected) for _ in range(10)))
    assert len(set(again)) == 1 and again[0] != rejected
    assert creds.refresh_count == 2


async def test_revoked_grant_needs_reauth(
    emulator: Emulator, oauth: GoogleOAuth, settings: Settings, retry: RetryPolicy
) -> None:
    emulator.account("alice@example.com")
    auth = await connect(oauth, "alice@example.com")
    assert auth.refresh_token
    creds = oauth.credentials(auth.refresh_token, account=auth.email, token=auth.token)
    async with CalendarClient(creds, settings=settings, retry=retry) as client:
        assert await client.calendars()
        # a password change: Google kills every grant, refresh and access token
        emulator.control("POST", "/accounts/alice@example.com/revoke-grants")
        with pytest.raises(errors.GrantRevoked) as exc:
            await client.calendars()
    err = exc.value
    assert err.code == "google.grant_revoked"
    assert err.needs_reauth and not err.retryable
    assert "Reconnect Google Calendar in Settings → Google Calendar" in err.remedy
    assert "password change" in err.remedy
    assert err.reason == "invalid_grant"


async def test_revoke_disconnects_and_is_idempotent(emulator: Emulator, oauth: GoogleOAuth) -> None:
    emulator.account("alice@example.com")
    auth = await connect(oauth, "alice@example.com")
    assert auth.refresh_token
    await oauth.revoke(auth.refresh_token)
    await oauth.revoke(auth.refresh_token)  # already revoked: still fine
    with pytest.raises(errors.GrantRevoked):
        await oauth.refresh(auth.refresh_token)


async def test_token_endpoint_outage_is_retried(
    emulator: Emulator, oauth: GoogleOAuth, fake_time: object
) -> None:
    emulator.account("alice@example.com")
    auth = await connect(oauth, "alice@example.com")
    assert auth.refresh_token
    emulator.control("POST", "/faults", {"path_regex": "^/token$", "status": 503, "count": 2})
    token = await oauth.refresh(auth.refresh_token)
    assert token.access_token
    emulator.control("POST", "/faults", {"path_regex": "^/token$", "status": 503})
    with pytest.raises(errors.BackendError):
        await oauth.refresh(auth.refresh_token)


async def test_a_browser_bound_state_needs_the_same_browser(
    emulator: Emulator, oauth: GoogleOAuth
) -> None:
    """A flow bound to a browser (the pages) finishes only with that binding; an unbound one
    (the REST API) with or without one."""
    emulator.account("alice@example.com")
    for presented in (None, "other-browser"):
        url = await oauth.authorization_url("crm-user-1", browser="this-browser")
        callback = await consent(url, "alice@example.com")
        with pytest.raises(errors.WrongBrowser) as exc:
            await oauth.complete(state=callback["state"], code=callback["code"], browser=presented)
        assert exc.value.code == "google.oauth_wrong_browser"
        # used up all the same
        with pytest.raises(errors.InvalidState):
            await oauth.complete(
                state=callback["state"], code=callback["code"], browser="this-browser"
            )
    url = await oauth.authorization_url("crm-user-1", browser="this-browser")
    callback = await consent(url, "alice@example.com")
    done = await oauth.complete(
        state=callback["state"], code=callback["code"], browser="this-browser"
    )
    assert done.email == "alice@example.com"
    url = await oauth.authorization_url("crm-user-1")
    callback = await consent(url, "alice@example.com")
    done = await oauth.complete(state=callback["state"], code=callback["code"], browser="any")
    assert done.user_key == "crm-user-1"
