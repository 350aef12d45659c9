"""The token endpoint: authorization_code (with PKCE), refresh_token and the service-account
JWT bearer grant, with Google's error texts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import unquote_plus

import jwt
from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..auth import world_of
from ..errors import OAuthError
from ..state import AccessToken, AuthCode, OAuthClient, RefreshToken, ServiceAccount, World
from .common import base_url, json_response, request_params
from .consent import PKCE_RE
from .id_tokens import sign_id_token
from .scopes import ordered_scopes, parse_scopes

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# audiences Google accepts in a service-account assertion besides the emulator's own /token
GOOGLE_TOKEN_AUDIENCES = frozenset(
    {
        GOOGLE_TOKEN_URI,
        "https://www.googleapis.com/oauth2/v4/token",
        "https://accounts.google.com/o/oauth2/token",
    }
)
ASSERTION_MAX_LIFETIME = 3600
CLOCK_SKEW = 300
BAD_ASSERTION_TIME = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


def _client_auth(request: Request, world: World, params: dict[str, str]) -> OAuthClient:
    """client_secret_basic or client_secret_post, with Google's error texts."""
    client_id = params.get("client_id", "")
    secret: str | None = params.get("client_secret")
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            user, _, password = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise errors.invalid_request("Could not determine client ID from request.") from exc
        client_id, secret = unquote_plus(user), unquote_plus(password)
    if not client_id:
        raise errors.invalid_request("Could not determine client ID from request.")
    client = world.oauth_clients.get(client_id)
    if client is None:
        raise errors.invalid_client()
    if not secret:
        raise errors.invalid_request("client_secret is missing.")
    if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise errors.invalid_client("Unauthorized")
    return client


def _pkce_ok(code: AuthCode, verifier: str) -> bool:
    if not PKCE_RE.match(verifier):
        return False
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        computed = verifier
    return hmac.compare_digest(computed.encode(), (code.code_challenge or "").encode())


def _token_body(
    world: World, tok: AccessToken, refresh: RefreshToken | None, id_token: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": tok.token,
        "expires_in": int(tok.expires_at - world.clock.now()),
    }
    if refresh is not None:
        body["refresh_token"] = refresh.token
    body["scope"] = " ".join(ordered_scopes(tok.scopes))
    body["token_type"] = "Bearer"
    if id_token is not None:
        body["id_token"] = id_token
    return body


def _authorization_code(request: Request, world: World, params: dict[str, str]) -> Response:
    client = _client_auth(request, world, params)
    raw_code = params.get("code", "")
    if not raw_code:
        raise errors.invalid_request("Missing required parameter: code")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise errors.invalid_request("Missing parameter: redirect_uri")
    code = world.auth_codes.get(raw_code)
    if code is None or code.client_id != client.client_id:
        raise errors.invalid_grant("Malformed auth code.")
    nonce = code.nonce
    if code.used or code.expires_at <= world.clock.now():
        raise errors.invalid_grant("Bad Request")
    code.used = True  # one attempt per code, successful or not
    grant = world.grants.get(code.grant_id)
    if grant is None or grant.revoked:
        raise errors.invalid_grant("Bad Request")
    if redirect_uri != code.redirect_uri:
        raise OAuthError("redirect_uri_mismatch", "Bad Request")
    if code.code_challenge is not None:
        verifier = params.get("code_verifier", "")
        if not verifier:
            raise errors.invalid_grant("Missing code verifier.")
        if not _pkce_ok(code, verifier):
            raise errors.invalid_grant("Invalid code verifier.")
    tok = world.issue_access_token(code.email, code.scopes, client.client_id, grant_id=grant.id)
    refresh = None
    if code.offline and code.prompt_consent:
        refresh = RefreshToken(
            token="1//0" + secrets.token_urlsafe(48),
            email=code.email,
            client_id=client.client_id,
            scopes=code.scopes,
            grant_id=grant.id,
        )
        world.refresh_tokens[refresh.token] = refresh
    id_token = None
    if "openid" in code.scopes:
        id_token = sign_id_token(
            world, code.email, client.client_id, client.client_id, code.scopes, nonce
        )
    return json_response(_token_body(world, tok, refresh, id_token))


def _refresh(request: Request, world: World, params: dict[str, str]) -> Response:
    raw = params.get("refresh_token", "")
    if not raw:
        raise errors.invalid_request("Missing required parameter: refresh_token")
    client = _client_auth(request, world, params)
    rt = world.refresh_tokens.get(raw)
    grant = world.grants.get(rt.grant_id) if rt is not None else None
    if rt is None or rt.revoked or grant is None or grant.revoked:
        raise errors.invalid_grant("Token has been expired or revoked.")
    if rt.client_id != client.client_id:
        raise errors.unauthorized_client("Unauthorized")
    scopes = rt.scopes
    if params.get("scope"):
        asked = frozenset(parse_scopes(params["scope"]))
        if not asked <= rt.scopes:
            raise OAuthError(
                "invalid_scope",
                "The OAuth scopes requested are not a subset of the scopes granted.",
            )
        scopes = asked
    tok = world.issue_access_token(rt.email, scopes, client.client_id, grant_id=rt.grant_id)
    request.state.account = rt.email  # the request log says whose refresh it was
    id_token = None
    if "openid" in scopes:
        id_token = sign_id_token(world, rt.email, client.client_id, client.client_id, scopes)
    return json_response(_token_body(world, tok, None, id_token))


def _find_service_account(world: World, kid: str | None, iss: str) -> ServiceAccount | None:
    if kid:
        for sa in world.service_accounts.values():
            if kid in sa.keys:
                return sa
    return world.service_accounts.get(iss.lower())  # keyed by client_email


def _public_keys(sa: ServiceAccount, kid: str | None) -> list[str]:
    """The live keys the assertion may be signed with: the one its `kid` names, or every one
    of the account (a P12 key's assertion names none). A deleted key's id names none: its
    signature then verifies with no key ("Invalid JWT Signature.", as Google answers)."""
    if kid:
        return [sa.keys[kid]] if kid in sa.keys else []
    return list(sa.keys.values())


def _times_ok(world: World, iat: int, exp: int) -> bool:
    """The client signs with its own (real) clock: accept if either real or emulator time fits."""
    if exp - iat > ASSERTION_MAX_LIFETIME or exp <= iat:
        return False
    for now in (time.time(), world.clock.now()):
        if iat - CLOCK_SKEW <= now < exp:
            return True
    return False


def _jwt_bearer(request: Request, world: World, params: dict[str, str]) -> Response:
    assertion = params.get("assertion", "")
    if not assertion:
        raise errors.invalid_request("Missing required parameter: assertion")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise errors.invalid_grant("Invalid JWT: malformed assertion.") from exc
    iss = str(unverified.get("iss", ""))
    sa = _find_service_account(world, header.get("kid"), iss)
    if sa is None or iss.lower() != sa.client_email:
        raise errors.invalid_grant("Invalid grant: account not found")
    if header.get("alg") != "RS256":
        raise errors.invalid_grant("Invalid JWT Signature.")
    claims: dict[str, Any] | None = None
    for public_key in _public_keys(sa, header.get("kid")):
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
            break
        except jwt.PyJWTError:
            continue
    if claims is None:
        raise errors.invalid_grant("Invalid JWT Signature.")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or not _times_ok(world, iat, exp):
        raise errors.invalid_grant(BAD_ASSERTION_TIME)
    own = {f"{base_url(request)}/token", f"{base_url(request)}/oauth2/v4/token"}
    if claims.get("aud") not in GOOGLE_TOKEN_AUDIENCES | own:
        raise errors.invalid_grant(
            f"Invalid JWT: Failed audience check. The expected value was {GOOGLE_TOKEN_URI}"
        )
    scopes = frozenset(parse_scopes(str(claims.get("scope", ""))))
    audience = claims.get("target_audience")
    if not scopes and isinstance(audience, str) and audience:
        # an ID-token request (google.oauth2.service_account.IDTokenCredentials)
        return json_response(
            {"id_token": sign_id_token(world, sa.client_email, audience, sa.client_id, scopes)}
        )
    if not scopes:
        raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    email = sa.client_email
    sub = str(claims.get("sub") or "").lower()
    if sub and sub != sa.client_email:
        domain = sub.rpartition("@")[2]
        allowed = world.delegations.get(domain, {}).get(sa.client_id)
        if allowed is None or not scopes <= allowed:
            raise errors.unauthorized_client()
        person = world.accounts.get(sub)
        if person is None or person.is_service_account:
            raise errors.invalid_grant("Invalid email or User ID")
        email = sub
    tok = world.issue_access_token(email, scopes, sa.client_id)
    return json_response(
        {
            "access_token": tok.token,
            "expires_in": int(tok.expires_at - world.clock.now()),
            "token_type": "Bearer",
        }
    )


async def token(request: Request) -> Response:
    world = world_of(request)
    params = await request_params(request)
    grant_type = params.get("grant_type", "")
    with world.lock:
        if not grant_type:
            raise errors.invalid_request("Missing required parameter: grant_type")
        if grant_type == "authorization_code":
            return _authorization_code(request, world, params)
        if grant_type == "refresh_token":
            return _refresh(request, world, params)
        if grant_type == JWT_BEARER:
            return _jwt_bearer(request, world, params)
        raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
