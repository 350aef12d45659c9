"""Google's own Python client and gcal_sync, unchanged but for the base URL, against the emulator.

google-api-python-client joins method paths ("calendars/{calendarId}/events") onto the API
endpoint as is, so the endpoint must carry the service path: `<emulator>/calendar/v3/`.
gcal_sync's `AbstractAuth(session, host)` prefixes `host + "/"` the same way: `<emulator>/calendar/v3`.
"""

from __future__ import annotations

import datetime
from typing import Any

import aiohttp
import pytest
from gcal_sync.api import GoogleCalendarService, LocalListEventsRequest
from gcal_sync.auth import AbstractAuth
from gcal_sync.exceptions import ApiException
from gcal_sync.model import DateOrDatetime, Event
from gcal_sync.store import InMemoryCalendarStore
from gcal_sync.sync import CalendarEventSyncManager
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import HttpError

from tests.conftest import Emulator
from tests.emulator.schema import assert_matches_schema

ADA = "ada@example.com"


def service(emulator: Emulator, email: str = ADA) -> Resource:
    return build(
        "calendar",
        "v3",
        credentials=Credentials(emulator.token(email)),
        static_discovery=True,
        client_options={"api_endpoint": f"{emulator.url}/calendar/v3/"},
    )


def reason(err: HttpError) -> str:
    return str(err.error_details[0]["reason"])  # type: ignore[index]


def body(summary: str, day: int = 6, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": f"2024-05-{day:02d}T09:00:00+02:00"},
        "end": {"dateTime": f"2024-05-{day:02d}T10:00:00+02:00"},
        **extra,
    }


def full_sync(events: Any, **params: Any) -> tuple[dict[str, dict[str, Any]], str, int]:
    """The sync guide's loop: every page via list_next, the sync token from the last page."""
    local: dict[str, dict[str, Any]] = {}
    request = events.list(calendarId="primary", **params)
    pages = 0
    while True:
        page = request.execute()
        assert_matches_schema(page, "Events")
        pages += 1
        for item in page["items"]:
            if item["status"] == "cancelled":
                local.pop(item["id"], None)
            else:
                local[item["id"]] = item
        nxt = events.list_next(request, page)
        if nxt is None:
            return local, page["nextSyncToken"], pages
        assert "nextSyncToken" not in page
        request = nxt


def test_google_api_client_full_and_incremental_sync(emulator: Emulator) -> None:
    emulator.account(ADA, "Ada")
    events = service(emulator).events()
    ids = [
        events.insert(calendarId="primary", body=body(f"e{i}")).execute()["id"] for i in range(5)
    ]

    local, token, pages = full_sync(events, maxResults=2)
    assert pages == 3 and set(local) == set(ids)

    events.patch(calendarId="primary", eventId=ids[0], body={"summary": "renamed"}).execute()
    events.delete(calendarId="primary", eventId=ids[1]).execute()
    delta, token2, _ = full_sync(events, syncToken=token, maxResults=1)
    # the delta loop removed nothing it held; check what the delta itself said
    raw = events.list(calendarId="primary", syncToken=token).execute()["items"]
    assert {(e["id"], e["status"]) for e in raw} == {(ids[0], "confirmed"), (ids[1], "cancelled")}
    local.update(delta)
    local.pop(ids[1])
    assert local[ids[0]]["summary"] == "renamed"
    assert events.list(calendarId="primary", syncToken=token2).execute()["items"] == []

    # 410 then recovery with a fresh full sync
    emulator.control("POST", f"/calendars/{ADA}/expire-sync-tokens")
    with pytest.raises(HttpError) as gone:
        events.list(calendarId="primary", syncToken=token2).execute()
    assert gone.value.resp.status == 410 and reason(gone.value) == "fullSyncRequired"
    recovered, token3, _ = full_sync(events)
    assert set(recovered) == set(ids) - {ids[1]}
    assert events.list(calendarId="primary", syncToken=token3).execute()["items"] == []


def test_google_api_client_if_match_and_duplicates(emulator: Emulator) -> None:
    emulator.account(ADA)
    events = service(emulator).events()
    ev = events.insert(calendarId="primary", body=body("x", id="crm0000001")).execute()
    assert ev["id"] == "crm0000001"

    stale = events.patch(calendarId="primary", eventId=ev["id"], body={"summary": "y"})
    stale.headers["If-Match"] = '"1"'
    with pytest.raises(HttpError) as failed:
        stale.execute()
    assert failed.value.resp.status == 412 and reason(failed.value) == "conditionNotMet"
    fresh = events.patch(calendarId="primary", eventId=ev["id"], body={"summary": "y"})
    fresh.headers["If-Match"] = ev["etag"]
    assert fresh.execute()["summary"] == "y"

    with pytest.raises(HttpError) as dup:
        events.insert(calendarId="primary", body=body("again", id="crm0000001")).execute()
    assert dup.value.resp.status == 409 and reason(dup.value) == "duplicate"
    events.delete(calendarId="primary", eventId=ev["id"]).execute()
    with pytest.raises(HttpError) as dup_deleted:
        events.insert(calendarId="primary", body=body("again", id="crm0000001")).execute()
    assert dup_deleted.value.resp.status == 409
    with pytest.raises(HttpError) as deleted:
        events.delete(calendarId="primary", eventId=ev["id"]).execute()
    assert deleted.value.resp.status == 410 and reason(deleted.value) == "deleted"


def test_google_api_client_instances_and_cancelled_instances(emulator: Emulator) -> None:
    emulator.account(ADA)
    events = service(emulator).events()
    master = events.insert(
        calendarId="primary",
        body={
            "summary": "Standup",
            "start": {"dateTime": "2024-03-25T09:00:00", "timeZone": "Europe/Oslo"},
            "end": {"dateTime": "2024-03-25T09:15:00", "timeZone": "Europe/Oslo"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
        },
    ).execute()
    local, token, _ = full_sync(events, singleEvents=True)
    instances = events.instances(calendarId="primary", eventId=master["id"]).execute()["items"]
    assert [i["id"] for i in instances] == sorted(local)
    events.delete(calendarId="primary", eventId=instances[1]["id"]).execute()
    delta = events.list(calendarId="primary", singleEvents=True, syncToken=token).execute()
    assert [(e["id"], e["status"]) for e in delta["items"]] == [(instances[1]["id"], "cancelled")]


class EmulatorAuth(AbstractAuth):
    """gcal_sync's auth hook: a fixed emulator token."""

    def __init__(self, session: aiohttp.ClientSession, host: str, token: str) -> None:
        super().__init__(session, host)
        self.token = token

    async def async_get_access_token(self) -> str:
        return self.token


async def test_gcal_sync_full_then_incremental_sync(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    # enough events for two of gcal_sync's 1000-event pages
    for i in range(1001):
        resp = emulator.http.post(
            "/calendar/v3/calendars/primary/events",
            json=body(f"e{i}", day=1 + i % 28),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 200
    first_id = resp.json()["id"]
    async with aiohttp.ClientSession() as session:
        api = GoogleCalendarService(EmulatorAuth(session, f"{emulator.url}/calendar/v3", token))
        store = InMemoryCalendarStore()
        sync = CalendarEventSyncManager(api, calendar_id=ADA, store=store)
        await sync.run()
        data = await store.async_load()
        assert data is not None
        items = data["event_sync"][ADA]["items"]
        assert len(items) == 1001

        await api.async_create_event(
            ADA,
            Event(
                summary="series",
                start=DateOrDatetime(
                    date_time=datetime.datetime(2024, 5, 6, 9, 0), timezone="Europe/Oslo"
                ),
                end=DateOrDatetime(
                    date_time=datetime.datetime(2024, 5, 6, 10, 0), timezone="Europe/Oslo"
                ),
                recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
            ),
        )
        await api.async_patch_event(ADA, first_id, {"summary": "renamed"})
        await api.async_delete_event(ADA, first_id)
        await sync.run()
        data = await store.async_load()
        assert data is not None
        items = data["event_sync"][ADA]["items"]
        assert items[first_id]["status"] == "cancelled"
        timeline = await sync.store_service.async_list_events(
            LocalListEventsRequest(
                start_time=datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC),
                end_time=datetime.datetime(2024, 5, 9, tzinfo=datetime.UTC),
            )
        )
        series = [e for e in timeline.events if e.summary == "series"]
        assert [e.start.date_time.hour for e in series if e.start.date_time] == [9, 9, 9]
        assert first_id not in {e.id for e in timeline.events}

        emulator.control("POST", f"/calendars/{ADA}/expire-sync-tokens")
        await sync.run()  # 410: gcal_sync drops its token and syncs from scratch
        data = await store.async_load()
        assert data is not None
        assert first_id not in data["event_sync"][ADA]["items"]

        got = await api.async_get_event(ADA, first_id)
        assert got.status.value == "cancelled"
        with pytest.raises(ApiException):
            await api.async_get_event(ADA, "nosuchevent")
