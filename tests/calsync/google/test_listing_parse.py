"""Listings parse their raw body with pydantic's JSON parser (no dict in between, the hot
path of a first import); the pages must come out exactly as the dict route made them."""

from __future__ import annotations

import json
import uuid

from calsync.google import calls
from calsync.google.models import EventsPage

BODY = {
    "kind": "calendar#events",
    "timeZone": "Europe/Oslo",
    "nextSyncToken": "tok",
    "futureField": {"kept": True},
    "items": [
        {
            "id": "abc123",
            "etag": '"1"',
            "status": "confirmed",
            "updated": "2026-12-03T11:00:00.123Z",
            "summary": "Meeting",
            "iCalUID": "abc123@google.com",
            "start": {"dateTime": "2026-12-04T09:00:00+01:00", "timeZone": "Europe/Oslo"},
            "end": {"dateTime": "2026-12-04T10:00:00+01:00"},
            "organizer": {"email": "a@example.com", "self": True},
            "attendees": [{"email": "b@example.com", "responseStatus": "accepted"}],
            "extendedProperties": {"private": {"calsync_activity_id": str(uuid.uuid4())}},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
            "unknownThing": [1, 2],
        },
        {"id": "allday", "start": {"date": "2026-12-05"}, "end": {"date": "2026-12-06"}},
        {"id": "gone", "status": "cancelled"},
    ],
}


def test_listings_parse_raw_json_like_the_dict_route() -> None:
    raw = json.dumps(BODY).encode()
    for call in (
        calls.events_list("primary", max_results=2500),
        calls.events_instances("primary", "abc123"),
    ):
        assert call.parse_json is not None
        page = call.parse_json(raw)
        assert page == EventsPage.model_validate(json.loads(raw))
        assert page.to_wire() == EventsPage.model_validate(json.loads(raw)).to_wire()
    page = EventsPage.model_validate_json(raw)
    assert page.items[0].i_cal_uid == "abc123@google.com"
    assert page.items[0].attendees is not None
    assert page.items[0].attendees[0].response_status == "accepted"
    assert page.model_extra == {"futureField": {"kept": True}}


def test_a_raw_page_reads_its_tokens_and_parses_its_events_later() -> None:
    raw = json.dumps({**BODY, "nextPageToken": "p2"}).encode()
    call = calls.events_list_raw("primary", max_results=2500)
    assert call.params == calls.events_list("primary", max_results=2500).params
    assert call.parse_json is not None
    page = call.parse_json(raw)
    assert (page.next_page_token, page.next_sync_token, page.time_zone) == (
        "p2",
        "tok",
        "Europe/Oslo",
    )
    assert page.parse() == EventsPage.model_validate_json(raw)
    # a batch answer (already a dict) gives the same page
    assert call.parse(json.loads(raw)).parse() == page.parse()
