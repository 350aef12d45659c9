"""Bearer tokens for a stored Google connection: OAuth refresh or a service account.

A sync's tokens stay encrypted as its start read them until a request sends one
(`StoredCredentials`). A refreshed access token is written back to the connection (encrypted)
in its own transaction, so the next run does not refresh again. A refresh that Google refuses for good (`invalid_grant`)
surfaces as `GrantRevoked`; the engine turns that into `needs_reauth` on the connection.
Token requests count towards the run's Google requests like Calendar calls do.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import httpx

from calsync.google import errors
from calsync.google.auth import CachedTokenProvider, TokenProvider
from calsync.google.calendar import CalendarClient, count_request_hook, make_http_client
from calsync.google.models import OAuthToken
from calsync.google.oauth import GoogleOAuth, UserCredentials
from calsync.google.ratelimit import RateLimiter
from calsync.google.retry import RetryPolicy
from calsync.google.service_account import ServiceAccountKey, ServiceAccountTokens
from calsync.settings import Settings
from calsync.store import connections
from calsync.store.crypto import Sealed
from calsync.store.db import Database
from calsync.store.models import GoogleConnection, Tenant
from calsync.store.statuses import AuthMode, Code
from calsync.store.sync_rows import Secrets

#: connections whose access token a process keeps (`GoogleAccess`): past it, it forgets them all
MAX_KEPT_TOKENS = 10_000


class NotConnected(errors.GoogleError):
    code = Code.NOT_CONNECTED
    default_message = "Google Calendar is not connected for this user."
    remedy = "Connect Google Calendar in Settings → Google Calendar; CRM changes made meanwhile wait and sync then."
    needs_reauth = True


def _persist(db: Database, connection_id: uuid.UUID) -> Callable[[OAuthToken], Awaitable[None]]:
    async def on_token(token: OAuthToken) -> None:
        async with db.session() as session:
            await connections.store_access_token(
                session, connection_id, token.access_token, token.expires_at, token.refresh_token
            )
            await session.commit()

    return on_token


def count_oauth_requests(oauth: GoogleOAuth) -> None:
    """Count OAuth token requests in the current run's count (`calendar.count_requests`).

    GoogleOAuth sends through authlib's own httpx client rather than `calendar.send`, so the
    counting hook goes on that client (once; it is shared by every connection of the process).
    """
    hooks = oauth._client.event_hooks["request"]
    if count_request_hook not in hooks:
        hooks.append(count_request_hook)


def load_service_account_key(tenant: Tenant, secrets: Secrets | None = None) -> ServiceAccountKey:
    """The tenant's uploaded key (JSON, or P12 with its password: Google's default when none
    was given); `ServiceAccountKeyError` when there is none or it is broken. `secrets`: the
    key as a sync's start read it, still encrypted (the tenant's own columns are not loaded)."""
    if secrets is None:
        raw, password = tenant.service_account_key, tenant.service_account_key_password
    else:
        raw = secrets.service_account_key.data() if secrets.service_account_key else None
        sealed = secrets.service_account_key_password
        password = sealed.text() if sealed else None
    if raw is None:
        raise errors.ServiceAccountKeyError("No service-account key has been uploaded.")
    if (tenant.service_account_key_format or "json") == "p12":
        return ServiceAccountKey.from_p12(
            raw, client_email=tenant.service_account_email or "", password=password
        )
    return ServiceAccountKey.from_json(raw)


def stored_token(connection: GoogleConnection) -> OAuthToken | None:
    if not connection.access_token:
        return None
    return _token(connection.access_token, connection.access_token_expires_at)


def _token(access_token: str, expires: datetime | None) -> OAuthToken:
    return OAuthToken(
        access_token=access_token,
        expires_at=expires.timestamp() if expires is not None else None,
    )


class StoredCredentials(UserCredentials):
    """A connection's OAuth grant as a sync's start read it, still encrypted: the access
    token is decrypted when the first request needs it (not at all once it has expired), the
    refresh token when a refresh does. A sync that sends nothing decrypts nothing. `opened`:
    the access token's stored text → its value, as the process kept it (`GoogleAccess`)."""

    def __init__(
        self,
        oauth: GoogleOAuth,
        refresh_token: Sealed,
        access_token: Sealed | None,
        expires: datetime | None,
        *,
        account: str,
        on_token: Callable[[OAuthToken], Awaitable[None]],
        opened: Callable[[Sealed], str] = Sealed.text,
    ) -> None:
        super().__init__(oauth, "", account=account, on_token=on_token)
        self._sealed_refresh: Sealed | None = refresh_token
        self._sealed_access = access_token
        self._expires = expires
        self._opened = opened

    async def access_token(self) -> str:
        sealed, self._sealed_access = self._sealed_access, None
        if sealed is not None and self._token is None:
            expires_at = self._expires.timestamp() if self._expires is not None else None
            if expires_at is None or expires_at - self.leeway > self._clock():
                self._token = _token(self._opened(sealed), self._expires)
        return await super().access_token()

    async def _fetch(self) -> OAuthToken:
        sealed, self._sealed_refresh = self._sealed_refresh, None
        if sealed is not None:
            self.refresh_token_value = sealed.text()
        if not self.refresh_token_value:
            raise NotConnected()
        return await super()._fetch()


@dataclass(frozen=True)
class _CompanyKey:
    """A company's token source and the version of the stored key it was built from."""

    version: str | None
    tokens: ServiceAccountTokens


@dataclass
class GoogleAccess:
    """What the engine needs to talk to Google: settings, and shared clients (one per process).

    A company's service-account token source is kept per process and tagged with the stored
    key's version (`tenant.service_account_key_version`, new whenever the key is stored):
    a use that reads another version from the tenant's row builds a new one from the key
    then stored, so a key replaced by any process takes effect at every process's next sync;
    the key itself is decrypted only when a source is built. A user's access token is kept
    the same way, per connection with the stored (encrypted) text it was decrypted from: a
    sync that reads that text again sends it without a decryption (≈ 0.1 ms of a sync's CPU,
    issue 16); a token stored since (a refresh, a reconnect, another process's) is decrypted
    once. Kept in this process's memory only, as its requests hold it anyway."""

    settings: Settings
    oauth: GoogleOAuth | None = None
    http: httpx.AsyncClient | None = None
    retry: RetryPolicy | None = None
    rate_limiter: RateLimiter | Literal["settings"] | None = "settings"
    _service_accounts: dict[uuid.UUID, _CompanyKey] = field(default_factory=dict, init=False)
    #: the service accounts' token requests' client (without `http`): one for every company
    #: and key, so a replaced token source has nothing to close (a run may still use it)
    _token_http: httpx.AsyncClient | None = field(default=None, init=False)
    #: connection id → (its access token's stored text, the token): the last one decrypted
    _access_tokens: dict[uuid.UUID, tuple[str, str]] = field(default_factory=dict, init=False)

    def tokens(
        self,
        db: Database,
        tenant: Tenant,
        connection: GoogleConnection,
        secrets: Secrets | None = None,
    ) -> TokenProvider:
        """The connection's bearer tokens. `secrets`: its credentials as a sync's start read
        them (store.sync_rows.load), decrypted only when a request sends one; without, the
        connection's and tenant's own (decrypted columns)."""
        if connection.auth_mode == AuthMode.SERVICE_ACCOUNT:
            return self.service_account(tenant, secrets).for_user(connection.google_email or "")
        refresh = connection.refresh_token if secrets is None else secrets.refresh_token
        if not refresh:
            raise NotConnected()
        if self.oauth is None:
            self.oauth = GoogleOAuth(self.settings, retry=self.retry)
        count_oauth_requests(self.oauth)
        account = connection.google_email or str(connection.id)
        if secrets is not None:
            assert secrets.refresh_token is not None
            return StoredCredentials(
                self.oauth,
                secrets.refresh_token,
                secrets.access_token,
                connection.access_token_expires_at,
                account=account,
                on_token=_persist(db, connection.id),
                opened=functools.partial(self._access_token, connection.id),
            )
        provider: CachedTokenProvider = self.oauth.credentials(
            connection.refresh_token or "",
            account=account,
            token=stored_token(connection),
            on_token=_persist(db, connection.id),
        )
        return provider

    def _access_token(self, connection_id: uuid.UUID, sealed: Sealed) -> str:
        """The connection's access token as stored in `sealed`: the one kept if it was
        decrypted from that text, else decrypted (and kept instead)."""
        kept = self._access_tokens.get(connection_id)
        if kept is not None and kept[0] == sealed.token:
            return kept[1]
        if len(self._access_tokens) >= MAX_KEPT_TOKENS:
            self._access_tokens.clear()  # a bound, not a cache policy: the next ones decrypt
        value = sealed.text()
        self._access_tokens[connection_id] = (sealed.token, value)
        return value

    def service_account(
        self, tenant: Tenant, secrets: Secrets | None = None
    ) -> ServiceAccountTokens:
        """The company's token source for the key stored now: the one kept if it was built
        from this version of the key, else a new one (kept instead). `secrets`: the key as a
        sync's start read it, still encrypted; without, the tenant's own columns.
        `ServiceAccountKeyError` when there is no key or it is broken (nothing is kept)."""
        version = tenant.service_account_key_version
        kept = self._service_accounts.get(tenant.id)
        if kept is not None:
            if kept.version == version:
                return kept.tokens
            self.forget_service_account(tenant.id)
        tokens = ServiceAccountTokens(
            load_service_account_key(tenant, secrets),
            settings=self.settings,
            http=self.http or self._token_client(),
            retry=self.retry,
        )
        self._service_accounts[tenant.id] = _CompanyKey(version, tokens)
        return tokens

    def forget_service_account(self, tenant_id: uuid.UUID) -> None:
        """Let go of the company's token source (its key was replaced or removed): the next
        use builds one from the key stored then. A run that holds it finishes with it."""
        self._service_accounts.pop(tenant_id, None)

    def _token_client(self) -> httpx.AsyncClient:
        if self._token_http is None:
            self._token_http = make_http_client(self.settings)
        return self._token_http

    def client(self, tokens: TokenProvider) -> CalendarClient:
        return CalendarClient(
            tokens,
            settings=self.settings,
            http=self.http,
            retry=self.retry,
            rate_limiter=self.rate_limiter,
        )

    async def aclose(self) -> None:
        if self.oauth is not None:
            await self.oauth.aclose()
        for kept in self._service_accounts.values():
            await kept.tokens.aclose()  # closes nothing of its own: the client is ours
        self._service_accounts.clear()
        if self._token_http is not None:
            await self._token_http.aclose()
            self._token_http = None
