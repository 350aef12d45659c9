"""Connecting a user's Google account: OAuth 2.0 web flow with PKCE, refresh, revoke, userinfo.

The protocol work is authlib's `AsyncOAuth2Client`; this module adds what calsync needs around
it: a single-use `state` bound to the CRM user (kept in a `StateStore` the caller may persist),
Google's extra parameters (`access_type=offline`, `prompt=consent`, `include_granted_scopes`,
`login_hint`), and Google's failures turned into `errors` classes.

`UserCredentials` is the `TokenProvider` of one connection: it refreshes with the stored refresh
token under a per-connection lock, so concurrent refreshes never race.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import authlib.deprecate
import httpx

from calsync import clock as wall
from calsync import runtime
from calsync.settings import Settings, get_settings

from . import errors
from .auth import CachedTokenProvider
from .models import OAuthToken, UserInfo
from .retry import RetryPolicy

with warnings.catch_warnings():
    # authlib warns that it will prefer the future `httpx2` package; plain httpx still works
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.common.security import generate_token
    from authlib.integrations.base_client import OAuthError as AuthlibOAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

T = TypeVar("T")

SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"
SCOPE_EMAIL = "https://www.googleapis.com/auth/userinfo.email"
DEFAULT_SCOPES = ("openid", SCOPE_EMAIL, SCOPE_CALENDAR)
CALLBACK_PATH = "/oauth/google/callback"
STATE_TTL_SECONDS = 600.0  # Google's authorization codes live ten minutes, so do our states


# -- the pending authorization (`state`) ------------------------------------------------------


@dataclass(frozen=True)
class PendingAuthorization:
    """What is remembered between sending the user to Google and Google sending them back."""

    state: str
    user_key: str  # the CRM user who started the flow
    code_verifier: str  # PKCE secret; only its S256 hash went to Google
    redirect_uri: str
    created_at: float
    login_hint: str | None = None
    # an opaque binding to the browser that started the flow (a hash of a cookie the web layer
    # set); None for a flow started through the REST API, bound only by being single-use
    browser: str | None = None


class StateStore(Protocol):
    """Keeps pending authorizations; `take` must remove, so a state works only once."""

    async def put(self, pending: PendingAuthorization) -> None: ...

    async def take(self, state: str) -> PendingAuthorization | None: ...


class MemoryStateStore:
    """In-process `StateStore` (one web process, tests); persist them for several processes."""

    def __init__(self) -> None:
        self._items: dict[str, PendingAuthorization] = {}

    async def put(self, pending: PendingAuthorization) -> None:
        self._items[pending.state] = pending

    async def take(self, state: str) -> PendingAuthorization | None:
        return self._items.pop(state, None)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Authorization:
    """The outcome of a completed connect: who (Google e-mail) and the tokens to store."""

    user_key: str
    email: str
    token: OAuthToken

    @property
    def refresh_token(self) -> str | None:
        return self.token.refresh_token


# -- the flow ---------------------------------------------------------------------------------


class GoogleOAuth:
    """calsync's OAuth client for Google (one per process; safe to share across users)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        state_store: StateStore | None = None,
        redirect_uri: str | None = None,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        state_ttl: float = STATE_TTL_SECONDS,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = wall.now,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        if not self.settings.oauth_configured:
            raise errors.OAuthNotConfigured()
        secret = self.settings.google_client_secret
        assert secret is not None
        self.client_id = str(self.settings.google_client_id)
        self.redirect_uri = redirect_uri or self.settings.public_url.rstrip("/") + CALLBACK_PATH
        self.scopes = scopes
        self.state_store: StateStore = (
            state_store if state_store is not None else MemoryStateStore()
        )
        self.state_ttl = state_ttl
        self.retry = retry or RetryPolicy.from_settings(self.settings)
        self._clock = clock
        self._client = AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=secret.get_secret_value(),
            token_endpoint_auth_method="client_secret_post",
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=self.settings.google_timeout_seconds,
            transport=transport,
            verify=runtime.tls_context(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # step 1: send the user to Google

    async def authorization_url(
        self, user_key: str, *, login_hint: str | None = None, browser: str | None = None
    ) -> str:
        """Google's consent URL for this CRM user; its `state` is remembered, single-use, and
        with `browser` finishes only where the same `browser` value comes back."""
        state = secrets.token_urlsafe(32)
        verifier = generate_token(64)  # RFC 7636: 43-128 unreserved characters
        extra: dict[str, str] = {
            "access_type": "offline",  # we need a refresh token
            "prompt": "consent",  # ...and Google only re-sends one after consent
            "include_granted_scopes": "true",
        }
        if login_hint:
            extra["login_hint"] = login_hint
        url, _ = self._client.create_authorization_url(
            self.settings.google_auth_url,
            state=state,
            code_verifier=verifier,
            scope=" ".join(self.scopes),
            **extra,
        )
        await self.state_store.put(
            PendingAuthorization(
                state=state,
                user_key=user_key,
                code_verifier=verifier,
                redirect_uri=self.redirect_uri,
                created_at=self._clock(),
                login_hint=login_hint,
                browser=browser,
            )
        )
        return str(url)

    # step 2: Google sends the user back with ?state=...&code=... (or ?error=...)

    async def complete(
        self,
        *,
        state: str | None,
        code: str | None = None,
        error: str | None = None,
        user_key: str | None = None,
        browser: str | None = None,
    ) -> Authorization:
        """Check the state (once, for this user and browser), exchange the code, look up the
        e-mail.

        Raises `InvalidState` (unknown, reused, expired or another user's state), `WrongBrowser`
        (started in another browser: the state is used up all the same),
        `AuthorizationFailed` (declined, bad code or PKCE verifier), `InsufficientScope`
        (calendar access unticked on the consent screen).
        """
        pending = await self.state_store.take(state) if state else None
        if pending is None:
            raise errors.InvalidState()
        if self._clock() - pending.created_at > self.state_ttl:
            raise errors.InvalidState()
        if user_key is not None and not secrets.compare_digest(user_key, pending.user_key):
            raise errors.InvalidState()
        if pending.browser is not None and not (
            browser is not None and secrets.compare_digest(browser, pending.browser)
        ):
            raise errors.WrongBrowser()
        if error:
            if error == "access_denied":
                raise errors.AuthorizationFailed(
                    "You cancelled on Google's page, so Google Calendar was not connected.",
                    reason=error,
                )
            raise errors.from_oauth_error(error, None)
        if not code:
            raise errors.AuthorizationFailed(detail="Google sent no authorization code")
        token = await self.exchange_code(code, pending.code_verifier, pending.redirect_uri)
        if SCOPE_CALENDAR not in token.scopes:
            await self.revoke(token.refresh_token or token.access_token)
            raise errors.InsufficientScope(detail=f"granted scopes: {token.scope}")
        info = await self.userinfo(token.access_token)
        return Authorization(user_key=pending.user_key, email=info.email.lower(), token=token)

    async def exchange_code(self, code: str, code_verifier: str, redirect_uri: str) -> OAuthToken:
        async def fetch() -> OAuthToken:
            raw = await self._client.fetch_token(
                self.settings.google_token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
            )
            return self._token(raw)

        try:
            return await self._call(fetch)
        except errors.GrantRevoked as exc:
            # at the exchange, invalid_grant means a bad/used code or PKCE verifier
            raise errors.AuthorizationFailed(
                "Google did not accept the sign-in (the link was already used, expired or "
                "tampered with).",
                status=exc.status,
                reason=exc.reason,
                detail=exc.detail,
            ) from exc

    # tokens of a connection

    async def refresh(self, refresh_token: str) -> OAuthToken:
        """A new access token; `GrantRevoked` when the user must connect again."""

        async def fetch() -> OAuthToken:
            raw = await self._client.refresh_token(
                self.settings.google_token_url, refresh_token=refresh_token
            )
            token = self._token(raw)
            if token.refresh_token is None:
                token.refresh_token = refresh_token
            return token

        return await self._call(fetch)

    async def revoke(self, token: str) -> None:
        """Revoke a refresh (or access) token: calsync disappears from the user's Google account.

        An already revoked or expired token counts as done."""

        async def post() -> None:
            resp = await self._client.revoke_token(self.settings.google_revoke_url, token=token)
            if resp.status_code >= 500:
                raise errors.BackendError(status=resp.status_code)
            if resp.status_code >= 400:
                body = _json(resp)
                if body.get("error") in ("invalid_token", "invalid_grant"):
                    return
                raise errors.from_oauth_error(
                    body.get("error"), body.get("error_description"), status=resp.status_code
                )

        await self._call(post)

    async def userinfo(self, access_token: str) -> UserInfo:
        """The Google account's identity (its e-mail is the connection's account)."""

        async def get() -> UserInfo:
            resp = await self._client.request(
                "GET",
                self.settings.google_userinfo_url,
                headers={"Authorization": f"Bearer {access_token}"},
                withhold_token=True,
            )
            if resp.status_code == 401:
                raise errors.TokenExpired(status=401, detail=resp.text[:200])
            if resp.status_code >= 400:
                raise errors.from_response(resp.status_code, resp.headers, resp.content)
            return UserInfo.model_validate(resp.json())

        return await self._call(get)

    def credentials(
        self,
        refresh_token: str,
        *,
        account: str,
        token: OAuthToken | None = None,
        on_token: Callable[[OAuthToken], Awaitable[None]] | None = None,
    ) -> UserCredentials:
        return UserCredentials(self, refresh_token, account=account, token=token, on_token=on_token)

    # helpers

    def _token(self, raw: dict[str, Any]) -> OAuthToken:
        token = OAuthToken.model_validate(dict(raw))
        if token.expires_in is not None:
            token.expires_at = self._clock() + token.expires_in
        return token

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            try:
                return await fn()
            except AuthlibOAuthError as exc:
                raise errors.from_oauth_error(exc.error, exc.description) from exc
            except httpx.HTTPStatusError as exc:  # authlib raises these for 5xx / non-JSON
                raise errors.from_response(
                    exc.response.status_code, exc.response.headers, exc.response.content
                ) from exc
            except httpx.TransportError as exc:
                raise errors.NetworkError(detail=f"{type(exc).__name__}: {exc}") from exc

        return await self.retry.call(once)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class UserCredentials(CachedTokenProvider):
    """One user's connection: access token from the stored refresh token, refreshed once at a time.

    `on_token` is awaited after each refresh so the caller can store the new token (encrypted).
    """

    def __init__(
        self,
        oauth: GoogleOAuth,
        refresh_token: str,
        *,
        account: str,
        token: OAuthToken | None = None,
        on_token: Callable[[OAuthToken], Awaitable[None]] | None = None,
        clock: Callable[[], float] = wall.now,
    ) -> None:
        super().__init__(account, token=token, on_token=on_token, clock=clock)
        self.oauth = oauth
        self.refresh_token_value = refresh_token

    async def _fetch(self) -> OAuthToken:
        token = await self.oauth.refresh(self.refresh_token_value)
        if token.refresh_token:
            self.refresh_token_value = token.refresh_token
        return token
