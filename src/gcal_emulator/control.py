"""The control API under /emulator/v1: how tests set the world up and look inside it.

Documented with curl examples in docs/emulator.md. Tests outside this repository rely on these
paths; fields may be added, never removed.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .auth import world_of
from .state import DEFAULT_SCOPES, Fault

PREFIX = "/emulator/v1"


class _HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


_Logged = TypeVar("_Logged", bound=_HasSeq)


class ControlError(Exception):
    pass


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = await request.json()
    except ValueError as exc:
        raise ControlError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


def _handler(
    fn: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        try:
            with world_of(request).lock:
                return await fn(request)
        except ControlError as exc:
            return _err(400, str(exc))
        except KeyError as exc:
            return _err(404, f"not found: {exc.args[0]}")

    return wrapped


def _need(data: dict[str, Any], key: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise ControlError(f"'{key}' is required")
    return data[key]


@_handler
async def reset(request: Request) -> Response:
    world = world_of(request)
    world.reset()
    world.changed("reset", None)
    return JSONResponse({"ok": True})


@_handler
async def add_account(request: Request) -> Response:
    data = await _json(request)
    world = world_of(request)
    email = str(_need(data, "email")).lower()
    if "@" not in email:
        raise ControlError("'email' must be an e-mail address")
    acc = world.add_account(email, data.get("name"), time_zone=data.get("timeZone", "UTC"))
    return JSONResponse(
        {"email": acc.email, "name": acc.name, "primary_calendar_id": acc.primary_calendar_id},
        status_code=201,
    )


@_handler
async def add_accounts(request: Request) -> Response:
    """Many accounts in one request (benchmarks seed thousands), each exactly as `POST
    /accounts` makes it, and with `token` an access token each as `POST
    /accounts/{email}/tokens` issues it. All or nothing: the body is checked before any
    account is made."""
    data = await _json(request)
    world = world_of(request)
    specs = data.get("accounts")
    if not isinstance(specs, list) or not specs:
        raise ControlError("'accounts' must be a non-empty list")
    for spec in specs:
        if not isinstance(spec, dict):
            raise ControlError("each of 'accounts' must be an object")
        if "@" not in str(_need(spec, "email")):
            raise ControlError("'email' must be an e-mail address")
    token = data.get("token")
    if token is not None and not isinstance(token, dict):
        raise ControlError("'token' must be an object")
    scopes = (token or {}).get("scopes") or sorted(DEFAULT_SCOPES)
    if not isinstance(scopes, list):
        raise ControlError("'scopes' must be a list")
    ttl = int((token or {}).get("expires_in") or world.config.access_token_ttl)
    items = []
    for spec in specs:
        acc = world.add_account(
            str(spec["email"]).lower(), spec.get("name"), time_zone=spec.get("timeZone", "UTC")
        )
        item: dict[str, Any] = {
            "email": acc.email,
            "name": acc.name,
            "primary_calendar_id": acc.primary_calendar_id,
        }
        if token is not None:
            tok = world.issue_access_token(
                acc.email, frozenset(scopes), client_id="emulator-control", ttl=ttl
            )
            item["access_token"] = tok.token
            item["expires_in"] = int(tok.expires_at - world.clock.now())
        items.append(item)
    return JSONResponse({"items": items}, status_code=201)


@_handler
async def list_accounts(request: Request) -> Response:
    world = world_of(request)
    return JSONResponse({"items": [asdict(a) for a in world.accounts.values()]})


@_handler
async def add_calendar(request: Request) -> Response:
    world = world_of(request)
    email = request.path_params["email"].lower()
    if email not in world.accounts:
        raise KeyError(email)
    data = await _json(request)
    cal = world.add_calendar(
        email,
        str(_need(data, "summary")),
        time_zone=data.get("timeZone", "UTC"),
        calendar_id=data.get("id"),
        description=data.get("description", ""),
    )
    world.changed("calendarList", email)
    return JSONResponse(
        {"id": cal.id, "summary": cal.summary, "timeZone": cal.time_zone, "owner": cal.owner},
        status_code=201,
    )


@_handler
async def set_acl(request: Request) -> Response:
    world = world_of(request)
    cal = world.calendars[request.path_params["calendar_id"]]
    data = await _json(request)
    email = str(_need(data, "email")).lower()
    role = str(_need(data, "role"))
    if role not in ("owner", "writer", "reader", "freeBusyReader", "none"):
        raise ControlError("role must be owner, writer, reader, freeBusyReader or none")
    if role == "none":
        cal.acl.pop(email, None)
        entry = world.calendar_list.get(email, {}).get(cal.id)
        if entry is not None:
            entry.deleted = True
            entry.seq = world.next_seq()
    else:
        cal.acl[email] = role
        if email in world.accounts:
            world.list_calendar_for(email, cal.id)
    world.changed("calendarList", email)
    return JSONResponse({"calendar_id": cal.id, "email": email, "role": role})


@_handler
async def delete_calendar(request: Request) -> Response:
    """Delete a secondary calendar as its owner would (import bindings then see 404)."""
    world = world_of(request)
    cal = world.calendars[request.path_params["calendar_id"]]
    cal.deleted = True
    for email, entries in world.calendar_list.items():
        entry = entries.get(cal.id)
        if entry is not None and not entry.deleted:
            entry.deleted = True
            entry.seq = world.next_seq()
            world.changed("calendarList", email)
    return JSONResponse({"ok": True})


@_handler
async def issue_token(request: Request) -> Response:
    world = world_of(request)
    email = request.path_params["email"].lower()
    if email not in world.accounts:
        raise KeyError(email)
    data = await _json(request)
    scopes = data.get("scopes") or sorted(DEFAULT_SCOPES)
    if not isinstance(scopes, list):
        raise ControlError("'scopes' must be a list")
    tok = world.issue_access_token(
        email,
        frozenset(scopes),
        client_id="emulator-control",
        ttl=int(data.get("expires_in") or world.config.access_token_ttl),
    )
    return JSONResponse(
        {
            "access_token": tok.token,
            "token_type": "Bearer",
            "expires_in": int(tok.expires_at - world.clock.now()),
            "scope": " ".join(sorted(tok.scopes)),
        }
    )


@_handler
async def add_oauth_client(request: Request) -> Response:
    from .state import OAuthClient

    world = world_of(request)
    data = await _json(request)
    uris = data.get("redirect_uris") or []
    if not isinstance(uris, list):
        raise ControlError("'redirect_uris' must be a list")
    client = OAuthClient(
        client_id=str(_need(data, "client_id")),
        client_secret=str(_need(data, "client_secret")),
        redirect_uris=[str(u) for u in uris],
    )
    world.oauth_clients[client.client_id] = client
    return JSONResponse(asdict(client), status_code=201)


@_handler
async def revoke_grants(request: Request) -> Response:
    world = world_of(request)
    email = request.path_params["email"].lower()
    if email not in world.accounts:
        raise KeyError(email)
    return JSONResponse({"revoked_grants": world.revoke_grants_of(email)})


@_handler
async def expire_sync_tokens(request: Request) -> Response:
    world = world_of(request)
    cal = world.calendars[request.path_params["calendar_id"]]
    cal.sync_floor_seq = world.next_seq()
    return JSONResponse({"ok": True})


@_handler
async def expire_access_tokens(request: Request) -> Response:
    """Make every access token of a person (or everyone) expire now; refresh tokens live on."""
    world = world_of(request)
    data = await _json(request)
    email = (data.get("email") or "").lower() or None
    n = 0
    for tok in world.access_tokens.values():
        if email is None or tok.email == email:
            tok.expires_at = min(tok.expires_at, world.clock.now())
            n += 1
    return JSONResponse({"expired": n})


@_handler
async def add_fault(request: Request) -> Response:
    world = world_of(request)
    data = await _json(request)
    status = int(_need(data, "status"))
    if not 100 <= status <= 599:
        raise ControlError("'status' must be an HTTP status code")
    world.fault_seq += 1
    rate = float(data.get("rate", 1.0))
    if not 0.0 <= rate <= 1.0:
        raise ControlError("'rate' must be between 0 and 1")
    fault = Fault(
        id=world.fault_seq,
        status=status,
        method=data.get("method"),
        path_regex=data.get("path_regex"),
        reason=data.get("reason"),
        count=data.get("count"),
        rate=rate,
        latency_ms=int(data.get("latency_ms") or 0),
        retry_after=data.get("retry_after"),
    )
    world.faults.append(fault)
    return JSONResponse(asdict(fault), status_code=201)


@_handler
async def clear_faults(request: Request) -> Response:
    world = world_of(request)
    world.faults.clear()
    world.latency_ms = 0
    return JSONResponse({"ok": True})


@_handler
async def list_faults(request: Request) -> Response:
    return JSONResponse({"items": [asdict(f) for f in world_of(request).faults]})


@_handler
async def set_latency(request: Request) -> Response:
    world = world_of(request)
    data = await _json(request)
    world.latency_ms = max(0, int(data.get("ms", 0)))
    return JSONResponse({"ms": world.latency_ms})


@_handler
async def set_quota(request: Request) -> Response:
    world = world_of(request)
    data = await _json(request)
    q = world.quota
    q.enabled = bool(data.get("enabled", True))
    q.per_user_per_minute = int(data.get("per_user_per_minute", q.per_user_per_minute))
    q.per_project_per_minute = int(data.get("per_project_per_minute", q.per_project_per_minute))
    world.user_windows.clear()
    world.project_windows.clear()
    return JSONResponse(asdict(q))


def _after(request: Request) -> int:
    try:
        return int(request.query_params.get("after", "0"))
    except ValueError as exc:
        raise ControlError("'after' must be an integer") from exc


def _since(log: Sequence[_Logged], after: int) -> Sequence[_Logged]:
    """The entries of a log with `seq > after`. A log is appended in `seq` order, so a
    binary search finds the first: a client reading what happened since its last look (a
    benchmark, every tick) costs what it reads, not the whole log."""
    return log[bisect.bisect_right(log, after, key=lambda entry: entry.seq) :]


@_handler
async def list_requests(request: Request) -> Response:
    after = _after(request)
    items = [asdict(r) for r in _since(world_of(request).requests, after)]
    return JSONResponse({"items": items, "last_seq": world_of(request).log_seq})


@_handler
async def list_emails(request: Request) -> Response:
    after = _after(request)
    return JSONResponse({"items": [asdict(e) for e in _since(world_of(request).emails, after)]})


@_handler
async def list_deliveries(request: Request) -> Response:
    after = _after(request)
    return JSONResponse({"items": [asdict(d) for d in _since(world_of(request).deliveries, after)]})


@_handler
async def list_channels(request: Request) -> Response:
    return JSONResponse({"items": [asdict(c) for c in world_of(request).channels.values()]})


@_handler
async def silence_channel(request: Request) -> Response:
    """Make a channel stop delivering without a trace (or deliver again): it stays live for
    watch, stop and expiry, as a Google channel that silently broke does."""
    world = world_of(request)
    data = await _json(request)
    with world.lock:
        channel = world.channels.get(request.path_params["channel_id"])
        if channel is None:
            return _err(404, "no such channel")
        channel.silent = bool(data.get("silent", True))
    return JSONResponse(asdict(channel))


@_handler
async def clock(request: Request) -> Response:
    world = world_of(request)
    if request.method == "POST":
        data = await _json(request)
        seconds = float(data.get("advance_seconds", 0))
        if seconds < 0:
            raise ControlError("'advance_seconds' must not be negative")
        world.clock.advance(seconds)
        world.changed("clock", None)
    return JSONResponse(
        {
            "now": world.clock.now(),
            "offset_seconds": world.clock.offset,
            "iso": world.clock.now_dt().isoformat(),
        }
    )


routes = [
    Route(f"{PREFIX}/reset", reset, methods=["POST"]),
    Route(f"{PREFIX}/accounts", add_account, methods=["POST"]),
    Route(f"{PREFIX}/accounts", list_accounts, methods=["GET"]),
    Route(f"{PREFIX}/accounts/batch", add_accounts, methods=["POST"]),
    Route(f"{PREFIX}/accounts/{{email}}/calendars", add_calendar, methods=["POST"]),
    Route(f"{PREFIX}/accounts/{{email}}/tokens", issue_token, methods=["POST"]),
    Route(f"{PREFIX}/accounts/{{email}}/revoke-grants", revoke_grants, methods=["POST"]),
    Route(f"{PREFIX}/calendars/{{calendar_id}}/acl", set_acl, methods=["POST"]),
    Route(f"{PREFIX}/calendars/{{calendar_id}}", delete_calendar, methods=["DELETE"]),
    Route(
        f"{PREFIX}/calendars/{{calendar_id}}/expire-sync-tokens",
        expire_sync_tokens,
        methods=["POST"],
    ),
    Route(f"{PREFIX}/tokens/expire", expire_access_tokens, methods=["POST"]),
    Route(f"{PREFIX}/oauth-clients", add_oauth_client, methods=["POST"]),
    Route(f"{PREFIX}/faults", add_fault, methods=["POST"]),
    Route(f"{PREFIX}/faults", list_faults, methods=["GET"]),
    Route(f"{PREFIX}/faults", clear_faults, methods=["DELETE"]),
    Route(f"{PREFIX}/latency", set_latency, methods=["POST"]),
    Route(f"{PREFIX}/quotas", set_quota, methods=["POST"]),
    Route(f"{PREFIX}/requests", list_requests, methods=["GET"]),
    Route(f"{PREFIX}/emails", list_emails, methods=["GET"]),
    Route(f"{PREFIX}/deliveries", list_deliveries, methods=["GET"]),
    Route(f"{PREFIX}/channels", list_channels, methods=["GET"]),
    Route(f"{PREFIX}/channels/{{channel_id}}/silence", silence_channel, methods=["POST"]),
    Route(f"{PREFIX}/clock", clock, methods=["GET", "POST"]),
]
