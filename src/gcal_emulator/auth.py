"""Bearer-token checks for the Calendar API: who is calling, with which scopes, within quota."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from . import errors
from .state import (
    SCOPE_CALENDAR,
    SCOPE_CALENDAR_READONLY,
    SCOPE_EVENTS,
    SCOPE_EVENTS_READONLY,
    AccessToken,
    World,
)

# which scopes allow what, as in the Calendar API's discovery document
EVENTS_READ = frozenset(
    {SCOPE_CALENDAR, SCOPE_CALENDAR_READONLY, SCOPE_EVENTS, SCOPE_EVENTS_READONLY}
)
EVENTS_WRITE = frozenset({SCOPE_CALENDAR, SCOPE_EVENTS})
CALENDARS_READ = frozenset({SCOPE_CALENDAR, SCOPE_CALENDAR_READONLY})
CALENDARS_WRITE = frozenset({SCOPE_CALENDAR})


def world_of(request: Request) -> World:
    world: World = request.app.state.world
    return world


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    token = request.query_params.get("access_token")
    return token or None


def authenticate(request: Request, allowed: frozenset[str]) -> AccessToken:
    """The caller's token, or the Google error for a missing/expired token, missing scope or quota.

    Sets `request.state.account` so the request log can say who called.
    """
    world = world_of(request)
    raw = bearer(request)
    tok = world.valid_access_token(raw) if raw else None
    if tok is None:
        raise errors.auth_error()
    request.state.account = tok.email
    if not (tok.scopes & allowed):
        raise errors.insufficient_permissions()
    limited = world.check_quota(tok.email, tok.client_id)
    if limited == "userRateLimitExceeded":
        raise errors.user_rate_limit_exceeded()
    if limited:
        raise errors.rate_limit_exceeded()
    return tok


async def json_body(request: Request) -> dict[str, Any]:
    """A request's JSON object body ({} when empty), or Google's 400 parseError."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise errors.parse_error() from exc
    if not isinstance(data, dict):
        raise errors.parse_error()
    return data
