"""OpenID Connect ID tokens: signed with a per-process key (published by discovery.py), and
what tokeninfo answers for one.
"""

from __future__ import annotations

import hashlib
import time
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.responses import Response

from ..state import SCOPE_EMAIL, SCOPE_PROFILE, World
from .common import json_response, subject_id


@lru_cache(maxsize=1)
def signing_key() -> tuple[rsa.RSAPrivateKey, str]:
    """The key the emulator signs ID tokens with (one per process, published at /oauth2/v3/certs)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, hashlib.sha1(der, usedforsecurity=False).hexdigest()


def sign_id_token(
    world: World, email: str, aud: str, azp: str, scopes: frozenset[str], nonce: str | None = None
) -> str:
    key, kid = signing_key()
    # clients check iat/exp against their own clock, so ID tokens ignore the emulator's offset
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": world.config.issuer,
        "azp": azp,
        "aud": aud,
        "sub": subject_id(email),
        "iat": now,
        "exp": now + world.config.access_token_ttl,
    }
    if SCOPE_EMAIL in scopes or aud != azp:
        claims["email"] = email
        claims["email_verified"] = True
    account = world.accounts.get(email)
    if SCOPE_PROFILE in scopes and account is not None:
        claims["name"] = account.name
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def id_tokeninfo(raw: str) -> Response:
    key, _ = signing_key()
    try:
        claims = jwt.decode(
            raw,
            key.public_key(),
            algorithms=["RS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        return json_response({"error": "invalid_token", "error_description": "Invalid Value"}, 400)
    if int(claims.get("exp", 0)) <= time.time():
        return json_response({"error": "invalid_token", "error_description": "Invalid Value"}, 400)
    # tokeninfo answers every claim as a string
    return json_response(
        {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in claims.items()}
    )
