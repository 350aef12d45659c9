"""Discovery documents: the JWKS clients verify ID tokens with, and openid-configuration."""

from __future__ import annotations

import base64

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..auth import world_of
from .common import base_url
from .id_tokens import signing_key
from .token import JWT_BEARER


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def certs(request: Request) -> Response:
    key, kid = signing_key()
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }
    return JSONResponse({"keys": [jwk]})


async def openid_configuration(request: Request) -> Response:
    base = base_url(request)
    return JSONResponse(
        {
            "issuer": world_of(request).config.issuer,
            "authorization_endpoint": f"{base}/o/oauth2/v2/auth",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/v1/userinfo",
            "revocation_endpoint": f"{base}/revoke",
            "jwks_uri": f"{base}/oauth2/v3/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token", JWT_BEARER],
        }
    )
