"""What syncs (DESIGN.md rule 8): exported activity types, private Google entries under each
policy (and a change of policy re-applied), event kinds Google manages itself, and what Google
holds that the CRM does not map (guests, conference data) surviving CRM edits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from calsync.domain.ids import google_event_id
from calsync.store import connections, tenants

from .conftest import ZONE, Harness, at


def writes(h: Harness, mark: int) -> list[dict[str, Any]]:
    return [r for r in h.requests_since(mark) if r["method"] in ("PATCH", "POST", "PUT", "DELETE")]


async def set_policy(h: Harness, policy: str) -> None:
    async with h.db.session() as s:
        conn = await connections.get(s, h.connection_id)
        assert conn is not None
        conn.private_events = policy
        await s.commit()


async def set_exported(h: Harness, keys: list[str]) -> None:
    async with h.db.session() as s:
        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        tenant.exported_type_keys = keys
        await s.commit()


async def private_event(h: Harness) -> str:
    start = at(3, 18)
    event = await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Doctor",
            "description": "bring the papers",
            "location": "Clinic",
            "visibility": "private",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        },
    )
    assert event.id is not None
    return event.id


async def test_unexported_type_never_reaches_google_until_the_type_is_exported(
    h: Harness,
) -> None:
    await set_exported(h, ["meeting", "call"])
    task = await h.activity("Write report", at(2, 9), type_key="task")
    never = await h.activity("Plan sprint", at(2, 11), type_key="project_task")
    meeting = await h.activity("Meet", at(2, 13))
    assert (await h.sync()).ok
    assert [e.id for e in await h.events()] == [google_event_id(meeting)]
    await h.edit(task, subject="Write the report")  # a change alone does not export it
    assert (await h.sync()).ok
    assert len(await h.events()) == 1
    await set_exported(h, ["meeting", "call", "task", "project_task"])
    assert (await h.sync()).ok
    ids = {e.id for e in await h.events()}
    assert ids == {google_event_id(meeting), google_event_id(task)}
    assert google_event_id(never) not in ids  # project tasks never sync


@pytest.mark.parametrize("policy", ["import", "busy", "skip"])
async def test_private_google_event_under_each_policy(h: Harness, policy: str) -> None:
    await set_policy(h, policy)
    eid = await private_event(h)
    assert (await h.sync()).ok
    rows = await h.live_activities()
    if policy == "skip":
        assert rows == []
        return
    (row,) = rows
    assert row.type_key == "personal" and row.visibility == "private"
    if policy == "import":
        assert (row.subject, row.description, row.location) == (
            "Doctor",
            "bring the papers",
            "Clinic",
        )
        await h.edit(row.id, subject="Dentist")  # the owner's own entry: two-way
        assert (await h.sync()).ok
        assert (await h.person.get_event(h.calendar_id, eid)).summary == "Dentist"
    else:
        assert (row.subject, row.description, row.location) == ("Busy", None, None)
        await h.edit(row.id, subject="Nosy")  # a busy block is read-only: undone, not written
        mark = h.mark()
        assert (await h.sync()).ok
        assert writes(h, mark) == []
        assert (await h.get(row.id)).subject == "Busy"
        assert (await h.person.get_event(h.calendar_id, eid)).summary == "Doctor"


async def test_a_change_of_private_policy_is_reapplied_to_existing_entries(h: Harness) -> None:
    eid = await private_event(h)
    await h.ginsert("Public", at(3, 9))
    assert (await h.sync()).ok
    (row,) = [r for r in await h.live_activities() if r.type_key == "personal"]
    await set_policy(h, "busy")
    assert (await h.sync()).ok
    assert (await h.get(row.id)).subject == "Busy"
    await set_policy(h, "skip")
    assert (await h.sync()).ok
    assert [r.subject for r in await h.live_activities()] == ["Public"]
    assert (await h.person.get_event(h.calendar_id, eid)).status == "confirmed"  # untouched
    await set_policy(h, "import")
    result = await h.sync()
    assert result.ok, result
    assert sorted(r.subject for r in await h.live_activities()) == ["Doctor", "Public"]
    assert len(await h.events()) == 2


async def test_event_kinds_birthdays_and_working_locations_skipped_focus_time_read_only(
    h: Harness,
) -> None:
    day = at(4, 0).date()
    bodies: list[dict[str, Any]] = [
        {
            "summary": "Ann's birthday",
            "eventType": "birthday",
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=1)).isoformat()},
            "recurrence": ["RRULE:FREQ=YEARLY"],
            "birthdayProperties": {"type": "birthday"},
            "transparency": "transparent",
            "visibility": "private",
        },
        {
            "summary": "Office",
            "eventType": "workingLocation",
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=1)).isoformat()},
            "workingLocationProperties": {"type": "officeLocation"},
            "transparency": "transparent",
            "visibility": "public",
        },
        {
            "summary": "Focus",
            "eventType": "focusTime",
            "start": {"dateTime": at(4, 8).isoformat(), "timeZone": ZONE},
            "end": {"dateTime": at(4, 10).isoformat(), "timeZone": ZONE},
        },
        {
            "summary": "Away",
            "eventType": "outOfOffice",
            "start": {"dateTime": at(5, 8).isoformat(), "timeZone": ZONE},
            "end": {"dateTime": at(5, 17).isoformat(), "timeZone": ZONE},
        },
    ]
    for body in bodies:
        try:
            await h.person.insert_event(h.calendar_id, body)
        except Exception as exc:  # pragma: no cover - the emulator refuses a kind
            pytest.fail(f"emulator refused {body['eventType']}: {exc}")
    result = await h.sync()
    assert result.ok, result
    rows = {r.subject: r for r in await h.live_activities()}
    assert set(rows) == {"Focus", "Away"}
    await h.edit(rows["Focus"].id, subject="Not focus")
    mark = h.mark()
    assert (await h.sync()).ok
    assert writes(h, mark) == []
    assert (await h.get(rows["Focus"].id)).subject == "Focus"


async def test_guests_and_conference_data_survive_crm_edits(h: Harness) -> None:
    start = at(6, 10)
    event = await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Call with client",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
            "attendees": [
                {"email": "alice@example.com", "organizer": True, "responseStatus": "accepted"},
                {"email": "client@outside.example", "responseStatus": "tentative"},
            ],
            "conferenceData": {
                "entryPoints": [{"entryPointType": "video", "uri": "https://meet.example/abc"}],
                "conferenceSolution": {"key": {"type": "hangoutsMeet"}},
                "conferenceId": "abc",
            },
        },
    )
    assert event.id is not None
    assert (await h.sync()).ok
    (row,) = await h.live_activities()
    assert {a.email: a.response_status for a in row.attendees} == {
        "alice@example.com": "accepted",
        "client@outside.example": "tentative",
    }
    await h.edit(row.id, subject="Call with client (agenda)")
    assert (await h.sync()).ok
    after = await h.person.get_event(h.calendar_id, event.id)
    assert after.summary == "Call with client (agenda)"
    assert {a.email for a in after.attendees or []} == {
        "alice@example.com",
        "client@outside.example",
    }
    assert after.conference_data == event.conference_data
