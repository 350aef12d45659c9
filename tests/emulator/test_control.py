"""The control API sets up accounts, calendars and tokens that the Calendar API then honours."""

from __future__ import annotations

from tests.conftest import Emulator


def test_account_has_primary_calendar_and_token(emulator: Emulator) -> None:
    cal = emulator.account("ada@example.com", "Ada")
    assert cal == "ada@example.com"
    token = emulator.token("ada@example.com")
    assert token.startswith("ya29.")


def test_control_errors_are_json(emulator: Emulator) -> None:
    resp = emulator.http.post("/emulator/v1/accounts", json={"name": "no email"})
    assert resp.status_code == 400
    assert "'email' is required" in resp.json()["error"]["message"]
    resp = emulator.http.post("/emulator/v1/accounts/nobody@example.com/tokens", json={})
    assert resp.status_code == 404


def test_clock_only_moves_forward(emulator: Emulator) -> None:
    before = emulator.control("GET", "/clock").json()["now"]
    after = emulator.control("POST", "/clock", {"advance_seconds": 3600}).json()["now"]
    assert after - before >= 3600
    resp = emulator.http.post("/emulator/v1/clock", json={"advance_seconds": -1})
    assert resp.status_code == 400


def test_reset_starts_a_new_world_with_the_real_time(emulator: Emulator) -> None:
    """A clock moved forward by one test must not leak into the next: Google's `updated`
    would lie in the future and every "latest wins" decision would favour Google."""
    emulator.control("POST", "/clock", {"advance_seconds": 7 * 86400})
    emulator.control("POST", "/reset")
    assert emulator.control("GET", "/clock").json()["offset_seconds"] == 0
