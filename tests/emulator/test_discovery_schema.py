"""The schema checker itself, and rich Event/Events answers checked against the discovery document."""

from __future__ import annotations

import pytest

from tests.conftest import Emulator
from tests.emulator.schema import assert_matches_schema, discovery, schema_errors
from tests.emulator.test_events import Api


def test_the_bundled_discovery_document_is_calendar_v3() -> None:
    doc = discovery()
    assert doc["name"] == "calendar" and doc["version"] == "v3"
    assert {"Event", "Events", "CalendarListEntry", "Error"} <= set(doc["schemas"])


def test_checker_rejects_undeclared_properties_and_wrong_types() -> None:
    good = {"id": "abcde", "start": {"date": "2024-01-01"}, "sequence": 1, "attendees": []}
    assert_matches_schema(good, "Event")
    bad = {
        "id": 5,
        "start": {"date": "2024/01/01"},
        "updated": "yesterday",
        "sequence": "1",
        "attendees": [{"email": "a@b.c", "optional": "yes"}],
        "extendedProperties": {"private": {"k": 1}},
        "invented": True,
    }
    problems = "\n".join(schema_errors(bad, {"$ref": "Event"}))
    for fragment in (
        "$.id: expected string",
        "$.start.date: '2024/01/01' is not a yyyy-mm-dd date",
        "$.updated: 'yesterday' is not an RFC 3339 date-time",
        "$.sequence: expected integer",
        "$.attendees[0].optional: expected boolean",
        "$.extendedProperties.private['k']: expected string",
        "property 'invented' is not declared",
    ):
        assert fragment in problems
    with pytest.raises(AssertionError):
        assert_matches_schema(bad, "Event")


def test_rich_events_and_lists_match_the_discovery_document(emulator: Emulator) -> None:
    emulator.account("ada@example.com", "Ada")
    emulator.account("bob@example.com", "Bob")
    ada = Api(emulator, "ada@example.com")  # Api checks every 200 answer against the schema
    master = ada.insert(
        "primary",
        {
            "summary": "Everything",
            "description": "d",
            "location": "l",
            "colorId": "4",
            "start": {"dateTime": "2024-03-25T09:00:00", "timeZone": "Europe/Oslo"},
            "end": {"dateTime": "2024-03-25T10:00:00", "timeZone": "Europe/Oslo"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE;TZID=Europe/Oslo:20240401T090000"],
            "attendees": [
                {"email": "bob@example.com", "optional": True, "additionalGuests": 1},
                {"email": "room@resource.calendar.google.com", "resource": True},
            ],
            "extendedProperties": {"private": {"a": "1"}, "shared": {"b": "2"}},
            "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]},
            "transparency": "transparent",
            "visibility": "private",
            "guestsCanModify": False,
        },
    )
    ada.patch("primary", f"{master['id']}_20240325T080000Z", {"summary": "first"})
    ada.delete("primary", f"{master['id']}_20240408T070000Z")
    for params in ({}, {"singleEvents": "true"}, {"showDeleted": "true"}):
        body = ada.list("primary", **params)
        assert body["items"]
    assert_matches_schema(ada.list("primary", singleEvents="true", showDeleted="true"), "Events")
    assert_matches_schema(ada.get("primary", master["id"]), "Event")
    Api(emulator, "bob@example.com").list("primary")
    # error bodies are not in the discovery document; their shape is Google's JSON error format
    err = ada.req("GET", "/calendars/primary/events/nosuch").json()["error"]
    assert set(err) == {"errors", "code", "message"}
    assert set(err["errors"][0]) <= {"domain", "reason", "message", "locationType", "location"}
