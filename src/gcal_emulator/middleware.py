"""Request log, global latency and fault injection for every Google path (all but /emulator/v1).

It is plain ASGI so batch parts, which batch.py dispatches through the whole app again, are
logged and fault-injected exactly like requests that arrive on their own.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors
from .state import Fault, LoggedRequest, World

CONTROL_PREFIX = "/emulator/v1"
# the OAuth server's paths answer errors in OAuth's shape, not the Calendar API's
OAUTH_PATHS = ("/token", "/revoke", "/tokeninfo", "/o/oauth2", "/oauth2/")
OAUTH_DEFAULT_ERROR = {
    400: "invalid_request",
    401: "invalid_client",
    403: "access_denied",
    429: "rate_limit_exceeded",
}
OAUTH_DESCRIPTIONS = {
    "invalid_grant": "Token has been expired or revoked.",
    "invalid_client": "The OAuth client was not found.",
    "unauthorized_client": "Client is unauthorized to retrieve access tokens using this method.",
    "invalid_request": "Bad Request",
}

routes: list[BaseRoute] = []


def is_google_path(path: str) -> bool:
    return not (path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"))


def is_oauth_path(path: str) -> bool:
    return path.startswith(OAUTH_PATHS)


def _matches(fault: Fault, method: str, path: str) -> bool:
    if fault.method and fault.method.upper() != method.upper():
        return False
    if fault.path_regex:
        try:
            if re.search(fault.path_regex, path) is None:
                return False
        except re.error:
            return False
    return True


def pick_fault(world: World, method: str, path: str) -> Fault | None:
    """The first fault that fires for this request; spends one of its `count`."""
    with world.lock:
        for fault in list(world.faults):
            if fault.count is not None and fault.count <= 0:
                world.faults.remove(fault)
                continue
            if not _matches(fault, method, path):
                continue
            if fault.rate < 1.0 and random.random() >= fault.rate:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    world.faults.remove(fault)
            return fault
    return None


def fault_response(fault: Fault, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of an injected error, in the shape the real endpoint uses."""
    body: dict[str, Any]
    if is_oauth_path(path):
        if fault.status >= 500:
            error = fault.reason or "internal_failure"
        else:
            error = fault.reason or OAUTH_DEFAULT_ERROR.get(fault.status, "invalid_request")
        body = {"error": error, "error_description": OAUTH_DESCRIPTIONS.get(error, error)}
    else:
        body = errors.from_reason(fault.status, fault.reason).body()
    headers = [("content-type", "application/json; charset=UTF-8")]
    if fault.retry_after is not None:
        headers.append(("retry-after", str(fault.retry_after)))
    if fault.status == 401 and not is_oauth_path(path):
        headers.append(
            (
                "www-authenticate",
                'Bearer realm="https://accounts.google.com/", error="invalid_token"',
            )
        )
    return fault.status, headers, json.dumps(body).encode()


def account_from_headers(world: World, headers: list[tuple[bytes, bytes]]) -> str | None:
    """Who a request acts as, from its bearer token, when no handler said so (faults, batch)."""
    for name, value in headers:
        if name == b"authorization":
            raw = value.decode("latin-1")
            if raw[:7].lower() == "bearer ":
                tok = world.access_tokens.get(raw[7:].strip())
                return tok.email if tok is not None else None
    return None


def log_request(
    world: World,
    *,
    method: str,
    path: str,
    query: str,
    status: int,
    account: str | None,
    started_at: float,
    duration_ms: float,
) -> LoggedRequest:
    with world.lock:
        world.log_seq += 1
        entry = LoggedRequest(
            seq=world.log_seq,
            method=method,
            path=path,
            query=query,
            status=status,
            account=account,
            at=started_at,
            duration_ms=round(duration_ms, 3),
        )
        world.requests.append(entry)
    return entry


class GoogleMiddleware:
    """Wraps the app: latency and faults before a Google request, a log entry after it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_google_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        world: World = scope["app"].state.world
        method: str = scope["method"]
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        started_at = world.clock.now()
        t0 = time.perf_counter()
        state = scope.setdefault("state", {})
        status = 500

        def finish() -> None:
            account = state.get("account") or account_from_headers(world, scope["headers"])
            log_request(
                world,
                method=method,
                path=path,
                query=query,
                status=status,
                account=account,
                started_at=started_at,
                duration_ms=(time.perf_counter() - t0) * 1000,
            )

        if world.latency_ms > 0 and not state.get("batch_part"):
            # one round trip: a batch waits it once, not once per part (batch.py)
            await asyncio.sleep(world.latency_ms / 1000)
        fault = pick_fault(world, method, path)
        if fault is not None:
            if fault.latency_ms > 0:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault.status >= 400:
                status, headers, body = fault_response(fault, path)
                raw_headers = [(k.encode(), v.encode()) for k, v in headers]
                raw_headers.append((b"content-length", str(len(body)).encode()))
                await send(
                    {"type": "http.response.start", "status": status, "headers": raw_headers}
                )
                await send({"type": "http.response.body", "body": body})
                finish()
                return
            # a fault with a 1xx-3xx status only delays the request

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            finish()


def install(app: Starlette) -> None:
    app.add_middleware(GoogleMiddleware)
