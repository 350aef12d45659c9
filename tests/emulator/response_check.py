"""ASGI middleware for the test emulator: every Calendar API JSON response it serves is checked
against the discovery document, so every test in the suite also tests the emulator's fidelity."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.emulator.schema import schema, schema_errors

_CAL = r"/calendar/v3/calendars/[^/]+"
# (method or None for any, path pattern, schema of a successful JSON answer)
ROUTES: list[tuple[str | None, re.Pattern[str], str]] = [
    (None, re.compile(rf"^{_CAL}/events/watch$"), "Channel"),
    (None, re.compile(r"^/calendar/v3/users/me/calendarList/watch$"), "Channel"),
    ("GET", re.compile(rf"^{_CAL}/events$"), "Events"),
    ("GET", re.compile(rf"^{_CAL}/events/[^/]+/instances$"), "Events"),
    (None, re.compile(rf"^{_CAL}/events(/[^/]+(/move)?|/import|/quickAdd)?$"), "Event"),
    ("GET", re.compile(r"^/calendar/v3/users/me/calendarList$"), "CalendarList"),
    (None, re.compile(r"^/calendar/v3/users/me/calendarList(/[^/]+)?$"), "CalendarListEntry"),
    ("GET", re.compile(rf"^{_CAL}/acl$"), "Acl"),
    (None, re.compile(rf"^{_CAL}/acl(/[^/]+)?$"), "AclRule"),
    (None, re.compile(rf"^{_CAL}$|^/calendar/v3/calendars$"), "Calendar"),
    ("GET", re.compile(r"^/calendar/v3/colors$"), "Colors"),
]


def schema_for(method: str, path: str) -> str | None:
    for want, pattern, name in ROUTES:
        if (want is None or want == method) and pattern.match(path):
            return name
    return None


class ResponseChecker:
    """Records every schema violation in `problems`; the `emulator` fixture fails on any."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.problems: list[str] = []
        self.checked = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/calendar/v3/"):
            await self.app(scope, receive, send)
            return
        name = schema_for(scope["method"], scope["path"])
        status = 0
        content_type = ""
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers") or [])
                content_type = headers.get(b"content-type", b"").decode()
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if name is None or not 200 <= status < 300 or "json" not in content_type:
            return
        if "fields=" in scope.get("query_string", b"").decode():
            return  # a partial response declares a subset; types are still Google's
        body: Any = json.loads(b"".join(chunks) or b"null")
        self.checked += 1
        for problem in schema_errors(body, schema(name), name):
            self.problems.append(f"{scope['method']} {scope['path']}: {problem}")
