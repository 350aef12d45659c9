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


def test_accounts_in_one_request_are_like_accounts_made_one_by_one(emulator: Emulator) -> None:
    """Benchmarks seed thousands of accounts with one request: each has its primary calendar
    and a working token, for the Calendar API as an account made by `POST /accounts`."""
    made = emulator.control(
        "POST",
        "/accounts/batch",
        {
            "accounts": [{"email": "Ada@Example.com", "name": "Ada"}, {"email": "bob@example.com"}],
            "token": {"expires_in": 600},
        },
    ).json()["items"]
    assert [(m["email"], m["name"], m["primary_calendar_id"]) for m in made] == [
        ("ada@example.com", "Ada", "ada@example.com"),
        ("bob@example.com", "bob", "bob@example.com"),
    ]
    assert made[0]["access_token"].startswith("ya29.") and 0 < made[0]["expires_in"] <= 600
    one_by_one = emulator.account("cy@example.com")
    for email, token in [(m["email"], m["access_token"]) for m in made] + [
        (one_by_one, emulator.token(one_by_one))
    ]:
        auth = {"Authorization": f"Bearer {token}"}
        listed = emulator.http.get("/calendar/v3/users/me/calendarList", headers=auth).json()
        assert [(e["id"], e["accessRole"], e.get("primary")) for e in listed["items"]] == [
            (email, "owner", True)
        ]
        event = {
            "summary": "seeded",
            "start": {"dateTime": "2026-12-04T10:00:00Z"},
            "end": {"dateTime": "2026-12-04T11:00:00Z"},
        }
        resp = emulator.http.post(
            f"/calendar/v3/calendars/{email}/events", json=event, headers=auth
        )
        assert resp.status_code == 200, resp.text
        events = emulator.http.get(f"/calendar/v3/calendars/{email}/events", headers=auth).json()
        assert [e["summary"] for e in events["items"]] == ["seeded"]
    # each token acts as its own account only
    ada = {"Authorization": f"Bearer {made[0]['access_token']}"}
    resp = emulator.http.get("/calendar/v3/calendars/bob@example.com/events", headers=ada)
    assert resp.status_code == 404


def test_accounts_in_one_request_are_all_or_nothing(emulator: Emulator) -> None:
    body = {"accounts": [{"email": "ada@example.com"}, {"email": "not an address"}]}
    resp = emulator.http.post("/emulator/v1/accounts/batch", json=body)
    assert resp.status_code == 400
    assert "'email' must be an e-mail address" in resp.json()["error"]["message"]
    assert emulator.control("GET", "/accounts").json()["items"] == []
    made = emulator.control("POST", "/accounts/batch", {"accounts": [{"email": "ada@example.com"}]})
    assert "access_token" not in made.json()["items"][0]  # tokens only when asked for
