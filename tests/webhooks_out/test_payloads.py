"""The outbox's rendering of an activity (store level, written with the change) agrees with
the REST API's `activity_out` for every kind of entry."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from calsync.store import activities
from calsync.store.db import Database
from calsync.store.webhook_payloads import activity_payload
from calsync.web.api.activities import activity_out
from tests.calsync.conftest import World

BODIES: list[dict[str, Any]] = [
    {
        "subject": "Timed, with attendees",
        "start": "2030-03-30T23:30:00+01:00",
        "end": "2030-03-31T03:30:00+02:00",
        "time_zone": "Europe/Oslo",
        "location": "Oslo",
        "description": "Agenda",
        "attendees": [
            {"email": "a@example.com", "display_name": "A", "optional": True},
            {"email": "b@example.com"},
        ],
    },
    {"subject": "All day", "start": "2030-05-17", "end": "2030-05-18", "visibility": "private"},
    {
        "subject": "Weekly",
        "start": "2030-01-07T09:00:00Z",
        "end": "2030-01-07T09:30:00Z",
        "time_zone": "UTC",
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5"],
        "transparency": "transparent",
    },
]


@pytest.mark.parametrize("body", BODIES, ids=[b["subject"] for b in BODIES])
async def test_payload_matches_the_rest_api(
    world: World, db: Database, body: dict[str, Any]
) -> None:
    owner, _ = await world.user(f"{uuid.uuid4().hex[:8]}@example.com")
    resp = await world.call("POST", "/api/v1/activities", json={"owner_id": str(owner), **body})
    assert resp.status_code == 201, resp.text
    shown = resp.json()
    async with db.session() as s:
        row = await activities.get(s, world.tenant_id, uuid.UUID(shown["id"]))
        assert row is not None
        api = activity_out(row).model_dump(mode="json")
        payload = activity_payload(row)
    api.pop("read_only")
    api.pop("problem")
    assert payload == api
    assert payload == {k: v for k, v in shown.items() if k not in ("read_only", "problem")}
