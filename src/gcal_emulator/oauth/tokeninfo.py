"""What a client does with a token it holds: revoke it, ask tokeninfo about it, or read the
person's userinfo with it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import errors
from ..auth import bearer, world_of
from ..errors import OAuthError
from ..state import SCOPE_EMAIL, SCOPE_PROFILE, AccessToken, World
from .common import json_response, request_params, subject_id
from .grants import has_refresh_token, revoke_grant
from .id_tokens import id_tokeninfo
from .scopes import IDENTITY_SCOPES, ordered_scopes


async def revoke(request: Request) -> Response:
    world = world_of(request)
    params = await request_params(request)
    raw = params.get("token", "")
    with world.lock:
        if not raw:
            raise errors.invalid_request("Missing required parameter: token")
        rt = world.refresh_tokens.get(raw)
        if rt is not None and not rt.revoked:
            revoke_grant(world, rt.grant_id)
            return json_response({})
        at = world.valid_access_token(raw)
        if at is not None:
            if at.grant_id is not None:
                revoke_grant(world, at.grant_id)
            else:
                at.revoked = True
            return json_response({})
    raise OAuthError("invalid_token", "Token expired or revoked")


def _access_type(world: World, tok: AccessToken) -> str:
    if tok.grant_id is None:
        return "online"
    return "offline" if has_refresh_token(world, tok.grant_id) else "online"


async def tokeninfo(request: Request) -> Response:
    world = world_of(request)
    params = await request_params(request)
    with world.lock:
        raw = params.get("access_token", "")
        tok = world.valid_access_token(raw) if raw else None
        if tok is None:
            id_token = params.get("id_token", "")
            if id_token:
                return id_tokeninfo(id_token)
            return json_response(
                {"error": "invalid_token", "error_description": "Invalid Value"}, 400
            )
        expires_in = int(tok.expires_at - world.clock.now())
        body: dict[str, Any] = {"azp": tok.client_id, "aud": tok.client_id}
        if tok.scopes & IDENTITY_SCOPES:
            body["sub"] = subject_id(tok.email)
        body["scope"] = " ".join(ordered_scopes(tok.scopes))
        body["exp"] = str(int(tok.expires_at))
        body["expires_in"] = str(expires_in)
        if SCOPE_EMAIL in tok.scopes:
            body["email"] = tok.email
            body["email_verified"] = "true"
        body["access_type"] = _access_type(world, tok)
        return json_response(body)


def _unauthorized(request: Request) -> Response:
    headers = {
        "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
    }
    if request.url.path.startswith("/oauth2/v2/"):
        body: dict[str, Any] = {
            "error": {
                "code": 401,
                "message": "Request is missing required authentication credential. Expected "
                "OAuth 2 access token, login cookie or other valid authentication credential.",
                "status": "UNAUTHENTICATED",
            }
        }
    else:
        body = {"error": "invalid_request", "error_description": "Invalid Credentials"}
    return JSONResponse(body, status_code=401, headers=headers)


async def userinfo(request: Request) -> Response:
    world = world_of(request)
    raw = bearer(request)
    with world.lock:
        tok = world.valid_access_token(raw) if raw else None
        if tok is None or not tok.scopes & IDENTITY_SCOPES:
            return _unauthorized(request)
        request.state.account = tok.email
        account = world.accounts.get(tok.email)
        name = account.name if account is not None else tok.email
    given, _, family = name.partition(" ")
    v2 = request.url.path.startswith("/oauth2/v2/")
    body: dict[str, Any] = {("id" if v2 else "sub"): subject_id(tok.email)}
    if SCOPE_EMAIL in tok.scopes:
        body["email"] = tok.email
        body["verified_email" if v2 else "email_verified"] = True
    if SCOPE_PROFILE in tok.scopes:
        body["name"] = name
        body["given_name"] = given
        if family:
            body["family_name"] = family
    return JSONResponse(body)
