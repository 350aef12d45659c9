"""Entries Google manages (focus time, a private event shown as Busy, another organiser's
meeting, a series calsync cannot represent) are read-only through the API: PATCH, DELETE and new
exceptions answer 409 read_only with the reason, instead of 200 and the next sync undoing it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete

from calsync.store.db import Database
from calsync.store.models import EventLink
from calsync.web.schemas import ActivityOut

from .conftest import ZONE, Api

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@outside.example"
A = "/api/v1/activities"


def at(days: int, hour: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )


def event_body(summary: str, start: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        **extra,
    }


def insert(api: Api, email: str, body: dict[str, Any]) -> dict[str, Any]:
    with api.google(email) as g:
        resp = g.post(f"/calendars/{email}/events", json=body)
    assert resp.status_code == 200, resp.text
    event: dict[str, Any] = resp.json()
    return event


def google_event(api: Api, email: str, event_id: str) -> dict[str, Any]:
    with api.google(email) as g:
        resp = g.get(f"/calendars/{email}/events/{event_id}")
    assert resp.status_code == 200, resp.text
    event: dict[str, Any] = resp.json()
    return event


async def connected(api: Api, email: str) -> tuple[uuid.UUID, str]:
    api.emu.account(email)
    user_id, key = await api.user(email)
    await api.connect(user_id, email, key)
    return user_id, key


async def synced(api: Api, user_id: uuid.UUID, key: str) -> None:
    resp = await api.sync(user_id, key)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outcome"] == "ok", resp.json()


async def by_subject(api: Api, owner: uuid.UUID, key: str | None = None) -> dict[str, Any]:
    resp = await api.call("GET", A, key)
    assert resp.status_code == 200, resp.text
    return {a["subject"]: a for a in resp.json()["activities"] if a["owner_id"] == str(owner)}


def refused(resp: Any, reason_text: str) -> dict[str, Any]:
    assert resp.status_code == 409, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == "read_only"
    assert reason_text in error["message"] and error["remedy"]
    return error


async def test_focus_time_is_refused_and_stays_as_google_has_it(api: Api) -> None:
    alice, key = await connected(api, ALICE)
    focus = insert(api, ALICE, event_body("Focus", at(3, 8), eventType="focusTime"))
    await synced(api, alice, key)
    row = (await by_subject(api, alice, key))["Focus"]
    assert row["read_only"]["reason"] == "event_type"
    assert "Focus time" in row["read_only"]["message"] and row["read_only"]["remedy"]
    one = await api.call("GET", f"{A}/{row['id']}", key)
    assert one.json()["read_only"] == row["read_only"]
    ActivityOut.model_validate(one.json())  # the documented shape

    # the owner, and an admin key too: the next sync would undo either write
    for caller in (key, None):
        resp = await api.call("PATCH", f"{A}/{row['id']}", caller, json={"subject": "Not focus"})
        error = refused(resp, "Focus time and out-of-office entries are managed in Google")
        assert "Google Calendar" in error["remedy"]
        refused(await api.call("DELETE", f"{A}/{row['id']}", caller), "Focus time")
    await synced(api, alice, key)
    after = (await api.call("GET", f"{A}/{row['id']}", key)).json()
    assert after["subject"] == "Focus" and after["version"] == row["version"]
    assert after["deleted_at"] is None
    assert google_event(api, ALICE, focus["id"])["summary"] == "Focus"
    assert google_event(api, ALICE, focus["id"])["status"] == "confirmed"


async def test_busy_block_is_refused_until_private_events_are_imported(api: Api) -> None:
    alice, key = await connected(api, ALICE)
    resp = await api.call(
        "PATCH", f"/api/v1/users/{alice}/google/settings", key, json={"private_events": "busy"}
    )
    assert resp.status_code == 200, resp.text
    insert(api, ALICE, event_body("Doctor", at(3, 15), visibility="private"))
    await synced(api, alice, key)
    row = (await by_subject(api, alice, key))["Busy"]
    assert row["read_only"]["reason"] == "busy"
    error = refused(
        await api.call("PATCH", f"{A}/{row['id']}", key, json={"location": "Clinic"}),
        "private Google event is shown as Busy",
    )
    assert "private events" in error["remedy"]

    # the remedy works: imported with its details, the entry is the owner's to change
    resp = await api.call(
        "PATCH", f"/api/v1/users/{alice}/google/settings", key, json={"private_events": "import"}
    )
    assert resp.status_code == 200, resp.text
    await synced(api, alice, key)
    row = (await by_subject(api, alice, key))["Doctor"]
    assert row["read_only"] is None
    resp = await api.call("PATCH", f"{A}/{row['id']}", key, json={"location": "Clinic"})
    assert resp.status_code == 200, resp.text


async def test_another_organisers_series_and_its_exceptions_are_refused(
    api: Api, db: Database
) -> None:
    alice, key = await connected(api, ALICE)
    api.emu.account(CAROL, "Carol")
    series = insert(
        api,
        CAROL,
        event_body(
            "Vendor sync",
            at(2, 10),
            attendees=[{"email": ALICE}],
            recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
        ),
    )
    # Carol moves the second occurrence: Alice's copy gets an exception
    with api.google(CAROL) as g:
        items = g.get(f"/calendars/{CAROL}/events/{series['id']}/instances").json()["items"]
        second = items[1]
        moved = datetime.fromisoformat(second["start"]["dateTime"]) + timedelta(hours=2)
        resp = g.patch(
            f"/calendars/{CAROL}/events/{second['id']}",
            json={
                "start": {"dateTime": moved.isoformat(), "timeZone": ZONE},
                "end": {"dateTime": (moved + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
            },
        )
        assert resp.status_code == 200, resp.text
    await synced(api, alice, key)
    rows = (await api.call("GET", A, key)).json()["activities"]
    (master,) = [r for r in rows if r["recurrence"]]
    (exception,) = [r for r in rows if r["recurring_parent_id"] == master["id"]]
    for row in (master, exception):
        assert row["read_only"]["reason"] == "not_organizer"
        refused(
            await api.call("PATCH", f"{A}/{row['id']}", key, json={"subject": "Mine"}),
            "another organiser's meeting",
        )
        refused(await api.call("DELETE", f"{A}/{row['id']}", key), "another organiser's meeting")
    # nor may the CRM move or cancel another occurrence of it
    third = datetime.fromisoformat(items[2]["start"]["dateTime"]).astimezone(UTC)
    resp = await api.call(
        "POST",
        A,
        key,
        json={
            "recurring_parent_id": master["id"],
            "original_start": third.isoformat(),
            "status": "cancelled",
        },
    )
    refused(resp, "another organiser's meeting")

    # an exception without a link of its own follows its series
    async with db.session() as s:
        await s.execute(
            delete(EventLink).where(EventLink.activity_id == uuid.UUID(exception["id"]))
        )
        await s.commit()
    again = (await api.call("GET", f"{A}/{exception['id']}", key)).json()
    assert again["read_only"]["reason"] == "not_organizer"
    refused(
        await api.call("PATCH", f"{A}/{exception['id']}", key, json={"subject": "Mine"}),
        "another organiser's meeting",
    )
    # an expanded listing marks the occurrences too
    lo, hi = at(0, 0), at(40, 0)
    expanded = await api.call(
        "GET",
        A,
        key,
        params={"from": lo.isoformat(), "to": hi.isoformat(), "expand": "true"},
    )
    assert expanded.status_code == 200, expanded.text
    occurrences = expanded.json()["activities"]
    assert len(occurrences) == 4
    assert {o["read_only"]["reason"] for o in occurrences} == {"not_organizer"}


async def test_a_series_calsync_cannot_represent_is_refused(api: Api) -> None:
    alice, key = await connected(api, ALICE)
    insert(api, ALICE, event_body("Stand-up", at(2, 9), recurrence=["RRULE:FREQ=HOURLY;COUNT=5"]))
    resp = await api.sync(alice, key)
    assert resp.status_code == 200, resp.text  # partial: the series is reported as an issue
    row = (await by_subject(api, alice, key))["Stand-up"]
    assert row["read_only"]["reason"] == "recurrence"
    refused(
        await api.call("PATCH", f"{A}/{row['id']}", key, json={"subject": "Daily"}),
        "Google describes this series in a way calsync cannot edit",
    )


async def test_a_meeting_its_organiser_syncs_stays_the_organisers_to_change(api: Api) -> None:
    """Bob's copy of Alice's meeting is read-only in Bob's calendar; the activity is Alice's
    and her own calendar writes it, so Alice may change it and Bob still may not (403)."""
    alice, alice_key = await connected(api, ALICE)
    bob, bob_key = await connected(api, BOB)
    insert(api, ALICE, event_body("Pipeline review", at(2, 13), attendees=[{"email": BOB}]))
    await synced(api, alice, alice_key)
    await synced(api, bob, bob_key)
    row = (await by_subject(api, alice, bob_key))["Pipeline review"]
    assert row["read_only"] is None
    resp = await api.call("PATCH", f"{A}/{row['id']}", bob_key, json={"subject": "Bob's"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "read_only"
    resp = await api.call("PATCH", f"{A}/{row['id']}", alice_key, json={"subject": "Q3 review"})
    assert resp.status_code == 200, resp.text
    await synced(api, alice, alice_key)
    assert "Q3 review" in [e["summary"] for e in api.events(ALICE)]
