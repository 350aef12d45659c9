"""Company-level access: a service account with domain-wide delegation acting as each user.

The admin uploads the key Google Cloud console gave them — a JSON file, or a P12 file with its
password (Google's is `notasecret`) plus the service account's e-mail. calsync signs a JWT
(RFC 7523) with google-auth's RSA signer, impersonating one Workspace user (`sub`), and trades it
for an access token at Google's token endpoint over httpx. Tokens are cached per user until
shortly before they expire.

Every way this fails for an admin has its own message: a damaged key file or wrong P12
password (`ServiceAccountKeyError`), the client ID not authorised in the Admin console
(`UnauthorizedClient`), and a CRM user without a matching Google account
(`DelegatedUserNotFound`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt

from calsync import clock as wall
from calsync.settings import Settings, get_settings

from . import errors
from .auth import CachedTokenProvider
from .calendar import make_http_client, send
from .models import OAuthToken
from .retry import RetryPolicy

SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
DEFAULT_P12_PASSWORD = "notasecret"  # what Google Cloud console sets on every P12 key
ASSERTION_LIFETIME = 3600  # Google's maximum


def _key_error(message: str, detail: str | None = None) -> errors.ServiceAccountKeyError:
    return errors.ServiceAccountKeyError(message, detail=detail)


@dataclass(frozen=True)
class ServiceAccountKey:
    """A loaded key: who the service account is and how it signs."""

    client_email: str
    signer: crypt.Signer = field(repr=False)
    client_id: str | None = None  # the number an admin authorises for domain-wide delegation
    private_key_id: str | None = None
    source: str = "json"  # "json" | "p12"

    @classmethod
    def from_json(
        cls, data: bytes | str | Mapping[str, Any], *, filename: str = "the JSON key file"
    ) -> ServiceAccountKey:
        """Load Google's JSON key (IAM & Admin → Service accounts → Keys → Add key → JSON)."""
        info: Any = data
        if isinstance(data, bytes | str):
            try:
                info = json.loads(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _key_error(
                    f"{filename} is not a JSON file; upload the .json key Google Cloud console "
                    "downloaded (or choose P12 if you have a .p12 file).",
                    str(exc),
                ) from exc
        if not isinstance(info, Mapping):
            raise _key_error(f"{filename} does not contain a JSON object.")
        if "web" in info or "installed" in info:
            raise _key_error(
                f"{filename} is an OAuth client file, not a service-account key; create a key "
                "under IAM & Admin → Service accounts → Keys."
            )
        if info.get("type") not in (None, "service_account"):
            raise _key_error(
                f"{filename} is a '{info.get('type')}' credential, not a service-account key."
            )
        missing = [k for k in ("client_email", "private_key") if not info.get(k)]
        if missing:
            raise _key_error(
                f"{filename} is missing {', '.join(missing)}; it is not a complete key."
            )
        client_email = info["client_email"]
        if not isinstance(client_email, str) or not _EMAIL.match(client_email.strip()):
            raise _key_error(
                f"client_email in {filename} is not an e-mail address; it is not a Google key."
            )
        for name in ("private_key", "private_key_id", "client_id", "token_uri"):
            value = info.get(name)
            number = name == "client_id" and isinstance(value, int) and not isinstance(value, bool)
            if value is not None and not isinstance(value, str) and not number:
                raise _key_error(f"{name} in {filename} is not text; the file is damaged.")
        token_uri = info.get("token_uri")
        if token_uri is not None and not token_uri.startswith(("https://", "http://")):
            raise _key_error(f"token_uri in {filename} is not a web address.")
        pem = str(info["private_key"]).encode("utf-8")
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise _key_error(
                f"The private key in {filename} cannot be read; the file is damaged.", str(exc)
            ) from exc
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise _key_error(
                f"The private key in {filename} is not an RSA key; Google's service-account "
                "keys are RSA: create a new JSON key in Google Cloud console."
            )
        try:
            signer = crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
                pem, key_id=info.get("private_key_id")
            )
        except (ValueError, TypeError) as exc:
            raise _key_error(
                f"The private key in {filename} cannot be read; the file is damaged.", str(exc)
            ) from exc
        return cls(
            client_email=client_email.strip().lower(),
            signer=signer,
            client_id=str(info["client_id"]) if info.get("client_id") else None,
            private_key_id=info.get("private_key_id"),
            source="json",
        )

    @classmethod
    def from_p12(
        cls,
        data: bytes,
        *,
        client_email: str,
        password: str | None = DEFAULT_P12_PASSWORD,
        client_id: str | None = None,
        filename: str = "the P12 key file",
    ) -> ServiceAccountKey:
        """Load a P12 key; Google's password is `notasecret` unless the admin changed it."""
        if not isinstance(client_email, str) or not _EMAIL.match(client_email.strip()):
            raise _key_error("Enter the service account's e-mail address together with a P12 key.")
        stripped = data.lstrip()
        if stripped[:1] == b"{":
            raise _key_error(f"{filename} is a JSON key, not P12; upload it as a JSON key.")
        if stripped[:5] == b"-----":
            raise _key_error(f"{filename} is a PEM file, not P12; upload the .p12 file.")
        if not data or data[0] != 0x30:  # every PKCS#12 file is a DER SEQUENCE
            raise _key_error(
                f"{filename} is not a P12 file (it is damaged or another kind of file)."
            )
        pw = (password or DEFAULT_P12_PASSWORD).encode("utf-8")
        try:
            key, _cert, _ = pkcs12.load_key_and_certificates(data, pw)
        except ValueError as exc:
            raise _key_error(
                f"{filename} could not be opened: the password is wrong (Google's P12 password "
                f"is '{DEFAULT_P12_PASSWORD}' unless it was changed) or the file is damaged.",
                str(exc),
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise _key_error(f"{filename} holds no RSA private key; it is not a Google key.")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(
            client_email=client_email.strip().lower(),
            signer=crypt.RSASigner.from_string(pem),  # type: ignore[no-untyped-call]
            client_id=client_id,
            source="p12",
        )

    def assertion(
        self, *, subject: str | None, scopes: tuple[str, ...], audience: str, now: float
    ) -> str:
        """A signed JWT asking for `scopes` as `subject` (RFC 7523 §2.1)."""
        iat = int(now)
        claims: dict[str, Any] = {
            "iss": self.client_email,
            "scope": " ".join(scopes),
            "aud": audience,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME,
        }
        if subject:
            claims["sub"] = subject
        encoded: bytes = google_jwt.encode(self.signer, claims)  # type: ignore[no-untyped-call]
        return encoded.decode("ascii")


def p12_client_id(data: bytes, password: str | None) -> str | None:
    """Google puts the service account's client ID in the P12 certificate's common name."""
    try:
        _, cert, _ = pkcs12.load_key_and_certificates(
            data, (password or DEFAULT_P12_PASSWORD).encode("utf-8")
        )
    except ValueError:
        return None
    if not isinstance(cert, x509.Certificate):
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) and value.isdigit() else None


class ServiceAccountTokens:
    """Fetches delegated tokens for many users with one key; share one per tenant."""

    def __init__(
        self,
        key: ServiceAccountKey,
        *,
        settings: Settings | None = None,
        http: httpx.AsyncClient | None = None,
        scopes: tuple[str, ...] = (SCOPE_CALENDAR,),
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = wall.now,
    ) -> None:
        self.key = key
        self.settings = settings or get_settings()
        self._owns_http = http is None
        self.http = http or make_http_client(self.settings)
        self.scopes = scopes
        self.retry = retry or RetryPolicy.from_settings(self.settings)
        self._clock = clock
        self._providers: dict[str, ServiceAccountCredentials] = {}

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    def for_user(self, email: str) -> ServiceAccountCredentials:
        """The (cached) token provider acting as `email`."""
        key = email.strip().lower()
        provider = self._providers.get(key)
        if provider is None:
            provider = ServiceAccountCredentials(self, key)
            self._providers[key] = provider
        return provider

    async def fetch(self, subject: str | None) -> OAuthToken:
        """A fresh access token for `subject` (None: the service account itself)."""
        token_url = self.settings.google_token_url
        assertion = self.key.assertion(
            subject=subject, scopes=self.scopes, audience=token_url, now=self._clock()
        )

        async def once() -> OAuthToken:
            request = self.http.build_request(
                "POST",
                token_url,
                data={"grant_type": JWT_BEARER, "assertion": assertion},
                headers={"Accept": "application/json"},
            )
            resp = await send(self.http, request)
            try:
                body = resp.json()
            except ValueError:
                body = None
            if resp.status_code >= 500 or not isinstance(body, dict):
                raise errors.from_response(resp.status_code, resp.headers, resp.content)
            if resp.status_code >= 400 or "error" in body:
                raise errors.from_oauth_error(
                    body.get("error"),
                    body.get("error_description"),
                    status=resp.status_code,
                    service_account=True,
                )
            token = OAuthToken.model_validate(body)
            if token.expires_in is not None:
                token.expires_at = self._clock() + token.expires_in
            return token

        result: OAuthToken = await self.retry.call(once)
        return result

    async def check(self, subject: str) -> OAuthToken:
        """The admin's "Test" button: can we act as this user right now? Raises if not."""
        return await self.fetch(subject)


class ServiceAccountCredentials(CachedTokenProvider):
    """`TokenProvider` for one impersonated user; tokens cached until shortly before expiry."""

    def __init__(self, tokens: ServiceAccountTokens, subject: str) -> None:
        super().__init__(subject, clock=tokens._clock)
        self.tokens = tokens

    async def _fetch(self) -> OAuthToken:
        return await self.tokens.fetch(self.account)
