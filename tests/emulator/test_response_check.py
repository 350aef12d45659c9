"""The fixture's response checker catches what the discovery document does not declare."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.emulator.response_check import ResponseChecker, schema_for


async def _bad_event(request: Request) -> JSONResponse:
    return JSONResponse({"kind": "calendar#event", "id": "x1", "sequence": "1", "colour": "red"})


async def test_undeclared_fields_and_wrong_types_are_recorded() -> None:
    app = Starlette(routes=[Route("/calendar/v3/calendars/{cal}/events/{eid}", _bad_event)])
    checker = ResponseChecker(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=checker), base_url="http://emu"
    ) as client:
        resp = await client.get("/calendar/v3/calendars/a@example.com/events/x1")
    assert resp.json()["id"] == "x1"  # the response still reaches the client
    assert checker.checked == 1
    assert any("'colour' is not declared" in p for p in checker.problems)
    assert any("sequence: expected integer" in p for p in checker.problems)


def test_paths_map_to_their_schemas() -> None:
    cal = "/calendar/v3/calendars/primary"
    assert schema_for("GET", f"{cal}/events") == "Events"
    assert schema_for("POST", f"{cal}/events") == "Event"
    assert schema_for("PATCH", f"{cal}/events/abc") == "Event"
    assert schema_for("GET", f"{cal}/events/abc/instances") == "Events"
    assert schema_for("POST", f"{cal}/events/watch") == "Channel"
    assert schema_for("GET", "/calendar/v3/users/me/calendarList") == "CalendarList"
    assert schema_for("GET", "/calendar/v3/users/me/calendarList/primary") == "CalendarListEntry"
    assert schema_for("GET", cal) == "Calendar"
    assert schema_for("GET", "/calendar/v3/colors") == "Colors"
