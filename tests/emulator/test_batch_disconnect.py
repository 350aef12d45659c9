"""A batch client that goes away mid-request is answered without a traceback (issue 13, item 7):
the emulator logs one line and answers 499 (nginx's "client closed request"), not a 500."""

from __future__ import annotations

import logging

import pytest
from starlette.types import Message

from gcal_emulator.app import create_app

PART = (
    b"--b\r\nContent-Type: application/http\r\n\r\n"
    b"GET /calendar/v3/users/me/calendarList HTTP/1.1\r\n\r\n"
)


@pytest.mark.parametrize("path", ["/batch/calendar/v3", "/batch"])
async def test_a_vanished_batch_client_is_no_error(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app()
    incoming: list[Message] = [
        {"type": "http.request", "body": PART, "more_body": True},  # the rest never comes
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"multipart/mixed; boundary=b"),
            (b"authorization", b"Bearer nobody"),
            (b"content-length", b"100000"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)  # raised ClientDisconnect (a 500 with a traceback)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert any("client went away" in r.getMessage() for r in caplog.records)
