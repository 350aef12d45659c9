"""events.list: paging, sync tokens and their rules, time windows, filters, singleEvents expansion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Emulator
from tests.emulator.test_events import Api, error_of, timed

OSLO = "Europe/Oslo"


@pytest.fixture
def ada(emulator: Emulator) -> Api:
    emulator.account("ada@example.com", "Ada")
    return Api(emulator, "ada@example.com")


def oslo(day: str, hour: str = "09:00", until: str = "10:00", **extra: Any) -> dict[str, Any]:
    return {
        "summary": "Weekly",
        "start": {"dateTime": f"{day}T{hour}:00", "timeZone": OSLO},
        "end": {"dateTime": f"{day}T{until}:00", "timeZone": OSLO},
        **extra,
    }


def test_paging_puts_the_sync_token_on_the_last_page_only(ada: Api) -> None:
    made = [ada.insert("primary", timed(f"e{i}"))["id"] for i in range(7)]
    first = ada.list("primary", maxResults=3)
    assert len(first["items"]) == 3 and "nextPageToken" in first and "nextSyncToken" not in first
    items, token, pages = ada.list_all("primary", maxResults=3)
    assert pages == 3 and [e["id"] for e in items] == made
    assert ada.list("primary", syncToken=token)["items"] == []
    assert ada.list("primary", maxResults=100000)["items"]  # clamped to 2500, not refused
    assert ada.req("GET", "/calendars/primary/events", params={"maxResults": 0}).status_code == 400


def test_default_page_size_is_250(ada: Api, emulator: Emulator) -> None:
    ev = ada.insert("primary", timed())
    for i in range(260):
        ada.insert("primary", timed(f"e{i}"))
    page = ada.list("primary")
    assert len(page["items"]) == 250 and "nextPageToken" in page
    assert ev["id"] == page["items"][0]["id"]


def test_incremental_sync_reports_changes_and_deletions(ada: Api) -> None:
    keep = ada.insert("primary", timed("keep"))
    change = ada.insert("primary", timed("change"))
    drop = ada.insert("primary", timed("drop"))
    items, token, _ = ada.list_all("primary")
    assert len(items) == 3
    ada.patch("primary", change["id"], {"summary": "changed"})
    ada.delete("primary", drop["id"])
    new = ada.insert("primary", timed("new"))
    delta = ada.list("primary", syncToken=token)
    got = {e["id"]: e for e in delta["items"]}
    assert set(got) == {change["id"], drop["id"], new["id"]}
    assert got[change["id"]]["summary"] == "changed"
    # a deleted event comes back minimal when showDeleted is off
    assert got[drop["id"]] == {
        "kind": "calendar#event",
        "etag": got[drop["id"]]["etag"],
        "id": drop["id"],
        "status": "cancelled",
    }
    full_delta = ada.list("primary", syncToken=token, showDeleted="true")
    deleted = next(e for e in full_delta["items"] if e["id"] == drop["id"])
    assert deleted["summary"] == "drop" and deleted["status"] == "cancelled"
    assert keep["id"] not in got
    again = ada.list("primary", syncToken=delta["nextSyncToken"])
    assert again["items"] == []


@pytest.mark.parametrize(
    "param",
    [
        {"iCalUID": "x@google.com"},
        {"orderBy": "updated"},
        {"privateExtendedProperty": "a=b"},
        {"q": "hello"},
        {"sharedExtendedProperty": "a=b"},
        {"timeMin": "2024-01-01T00:00:00Z"},
        {"timeMax": "2024-01-01T00:00:00Z"},
        {"updatedMin": datetime.now(UTC).isoformat()},
    ],
)
def test_sync_token_refuses_forbidden_parameters(ada: Api, param: dict[str, str]) -> None:
    _, token, _ = ada.list_all("primary")
    resp = ada.req("GET", "/calendars/primary/events", params={"syncToken": token, **param})
    assert error_of(resp)[:2] == (400, "invalid")


def test_expired_or_malformed_sync_token_answers_410(ada: Api, emulator: Emulator) -> None:
    ada.insert("primary", timed())
    _, token, _ = ada.list_all("primary")
    assert ada.list("primary", syncToken=token)["items"] == []
    emulator.control("POST", "/calendars/ada@example.com/expire-sync-tokens")
    resp = ada.req("GET", "/calendars/primary/events", params={"syncToken": token})
    assert error_of(resp) == (
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
    )
    for bad in ("garbage", "eyJ4IjoxfQ"):
        resp = ada.req("GET", "/calendars/primary/events", params={"syncToken": bad})
        assert error_of(resp)[:2] == (410, "fullSyncRequired")
    items, fresh, _ = ada.list_all("primary")  # recovery: a full sync gives a working token
    assert len(items) == 1 and ada.list("primary", syncToken=fresh)["items"] == []


def test_paging_is_consistent_while_the_calendar_changes(ada: Api) -> None:
    ids = [ada.insert("primary", timed(f"e{i}"))["id"] for i in range(6)]
    page1 = ada.list("primary", maxResults=2)
    # changes between pages: an early item deleted, a late one changed, a new one added
    ada.delete("primary", ids[0])
    ada.patch("primary", ids[5], {"summary": "late change"})
    added = ada.insert("primary", timed("added"))
    rest, token, _ = ada.list_all("primary", maxResults=2, pageToken=page1["nextPageToken"])
    local = {e["id"]: e for e in page1["items"] + rest}
    assert [e["id"] for e in page1["items"] + rest] == ids[:2] + ids[2:] + [added["id"]]
    for e in ada.list("primary", syncToken=token)["items"]:
        if e["status"] == "cancelled":
            local.pop(e["id"], None)
        else:
            local[e["id"]] = e
    assert local == {e["id"]: e for e in ada.list_all("primary")[0]}


def test_time_window_filters_by_end_and_start(ada: Api) -> None:
    ev = ada.insert("primary", timed("9-10"))  # 07:00Z-08:00Z
    ada.insert("primary", {"start": {"date": "2024-05-07"}, "end": {"date": "2024-05-08"}})

    def ids(**params: str) -> list[str]:
        return [e["id"] for e in ada.list("primary", **params)["items"]]

    assert ids(timeMin="2024-05-06T08:00:00Z", timeMax="2024-05-07T00:00:00Z") == []
    assert ids(timeMin="2024-05-06T07:59:00Z", timeMax="2024-05-06T09:00:00Z") == [ev["id"]]
    assert ids(timeMin="2024-05-06T00:00:00Z", timeMax="2024-05-06T07:00:00Z") == []
    assert len(ids(timeMin="2024-05-07T23:00:00Z")) == 1  # the all-day event on the 7th
    resp = ada.req(
        "GET",
        "/calendars/primary/events",
        params={"timeMin": "2024-05-06T08:00:00Z", "timeMax": "2024-05-06T08:00:00Z"},
    )
    assert error_of(resp) == (400, "timeRangeEmpty", "The specified time range is empty.")
    resp = ada.req("GET", "/calendars/primary/events", params={"timeMin": "2024-05-06T08:00:00"})
    assert resp.status_code == 400  # an offset is mandatory


def test_recurring_master_is_listed_when_an_instance_overlaps(ada: Api) -> None:
    master = ada.insert("primary", oslo("2024-01-01", recurrence=["RRULE:FREQ=WEEKLY;COUNT=10"]))

    def ids(**params: str) -> list[str]:
        return [e["id"] for e in ada.list("primary", **params)["items"]]

    assert ids(timeMin="2024-02-01T00:00:00Z", timeMax="2024-02-02T00:00:00Z") == []
    assert ids(timeMin="2024-02-05T00:00:00Z", timeMax="2024-02-06T00:00:00Z") == [master["id"]]
    assert ids(timeMin="2024-06-01T00:00:00Z") == []
    singles = ids(
        timeMin="2024-02-05T00:00:00Z", timeMax="2024-02-20T00:00:00Z", singleEvents="true"
    )
    assert singles == [f"{master['id']}_202402{d}T080000Z" for d in ("05", "12", "19")]


def test_updated_min_filters_and_includes_deletions(ada: Api, emulator: Emulator) -> None:
    old = ada.insert("primary", timed("old"))
    gone = ada.insert("primary", timed("gone"))
    emulator.control("POST", "/clock", {"advance_seconds": 600})
    cutoff = emulator.world.clock.now_dt() - timedelta(seconds=1)
    ada.delete("primary", gone["id"])
    fresh = ada.insert("primary", timed("fresh"))
    got = ada.list("primary", updatedMin=cutoff.isoformat())["items"]
    assert {e["id"]: e["status"] for e in got} == {
        gone["id"]: "cancelled",
        fresh["id"]: "confirmed",
    }
    assert old["id"] not in {e["id"] for e in got}
    too_old = (emulator.world.clock.now_dt() - timedelta(days=29)).isoformat()
    resp = ada.req("GET", "/calendars/primary/events", params={"updatedMin": too_old})
    assert error_of(resp)[:2] == (410, "updatedMinTooLongAgo")


def test_show_deleted_and_cancelled_exceptions(ada: Api) -> None:
    single = ada.insert("primary", timed("single"))
    master = ada.insert("primary", oslo("2024-01-01", recurrence=["RRULE:FREQ=DAILY;COUNT=3"]))
    ada.delete("primary", single["id"])
    cancelled = f"{master['id']}_20240102T080000Z"
    ada.delete("primary", cancelled)

    plain = {e["id"]: e for e in ada.list("primary")["items"]}
    # the deleted event is gone, the cancelled exception of a live series is still listed
    assert set(plain) == {master["id"], cancelled}
    assert plain[cancelled]["status"] == "cancelled"
    assert plain[cancelled]["recurringEventId"] == master["id"]
    assert set(plain[cancelled]) == {
        "kind",
        "etag",
        "id",
        "status",
        "recurringEventId",
        "originalStartTime",
    }
    with_deleted = {e["id"] for e in ada.list("primary", showDeleted="true")["items"]}
    assert with_deleted == {master["id"], cancelled, single["id"]}
    singles = [e["id"] for e in ada.list("primary", singleEvents="true")["items"]]
    assert singles == [f"{master['id']}_20240101T080000Z", f"{master['id']}_20240103T080000Z"]
    shown = ada.list("primary", singleEvents="true", showDeleted="true")["items"]
    assert {e["id"]: e["status"] for e in shown} == {
        single["id"]: "cancelled",
        f"{master['id']}_20240101T080000Z": "confirmed",
        cancelled: "cancelled",
        f"{master['id']}_20240103T080000Z": "confirmed",
    }
    # a deleted series shows its instances (not itself) as cancelled with showDeleted
    ada.delete("primary", master["id"])
    shown = ada.list("primary", singleEvents="true", showDeleted="true")["items"]
    assert master["id"] not in {e["id"] for e in shown}
    assert {e["status"] for e in shown} == {"cancelled"} and len(shown) == 4


def test_single_events_keep_wall_clock_time_across_dst(ada: Api) -> None:
    master = ada.insert(
        "primary", oslo("2024-03-18", recurrence=["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4"])
    )
    items = ada.list("primary", singleEvents="true", orderBy="startTime")["items"]
    # Norway moves to summer time on 31 March 2024: 09:00 local stays 09:00, UTC shifts
    starts = {i["id"]: i["start"]["dateTime"] for i in items}
    assert starts == {
        f"{master['id']}_20240318T080000Z": "2024-03-18T09:00:00+01:00",
        f"{master['id']}_20240325T080000Z": "2024-03-25T09:00:00+01:00",
        f"{master['id']}_20240401T070000Z": "2024-04-01T09:00:00+02:00",
        f"{master['id']}_20240408T070000Z": "2024-04-08T09:00:00+02:00",
    }
    for i in items:
        assert i["end"]["dateTime"][11:16] == "10:00"
        assert i["recurringEventId"] == master["id"]
        assert i["originalStartTime"] == i["start"]
        assert i["iCalUID"] == master["iCalUID"]


def test_all_day_series_exdate_rdate_and_exceptions(ada: Api) -> None:
    master = ada.insert(
        "primary",
        {
            "summary": "Holiday",
            "start": {"date": "2024-12-30"},
            "end": {"date": "2024-12-31"},
            "recurrence": [
                "RRULE:FREQ=DAILY;UNTIL=20250102",
                "EXDATE;VALUE=DATE:20241231",
                "RDATE;VALUE=DATE:20250110",
            ],
        },
    )
    moved = f"{master['id']}_20250101"
    ada.patch("primary", moved, {"summary": "New year", "start": {"date": "2025-01-01"}})
    items = ada.list("primary", singleEvents="true", orderBy="startTime")["items"]
    assert [(i["id"][-8:], i["start"]["date"], i["end"]["date"], i["summary"]) for i in items] == [
        ("20241230", "2024-12-30", "2024-12-31", "Holiday"),
        ("20250101", "2025-01-01", "2025-01-02", "New year"),
        ("20250102", "2025-01-02", "2025-01-03", "Holiday"),
        ("20250110", "2025-01-10", "2025-01-11", "Holiday"),
    ]
    assert items[1]["originalStartTime"] == {"date": "2025-01-01"}


def test_unbounded_series_is_capped(ada: Api, emulator: Emulator) -> None:
    emulator.world.config.max_instances = 25
    try:
        ada.insert("primary", oslo("2024-01-01", recurrence=["RRULE:FREQ=DAILY"]))
        items, _, _ = ada.list_all("primary", singleEvents="true", maxResults=10)
        assert len(items) == 25
        window = ada.list(
            "primary",
            singleEvents="true",
            timeMin="2030-01-01T00:00:00Z",
            timeMax="2030-01-04T00:00:00Z",
        )["items"]
        assert [i["start"]["dateTime"][:10] for i in window] == [
            "2030-01-01",
            "2030-01-02",
            "2030-01-03",
        ]
    finally:
        emulator.world.config.max_instances = 730


def test_order_by_rules(ada: Api) -> None:
    later = ada.insert("primary", timed("later", day="2024-05-08"))
    earlier = ada.insert("primary", timed("earlier", day="2024-05-07"))
    resp = ada.req("GET", "/calendars/primary/events", params={"orderBy": "startTime"})
    assert resp.status_code == 400
    by_start = ada.list("primary", orderBy="startTime", singleEvents="true")["items"]
    assert [e["id"] for e in by_start] == [earlier["id"], later["id"]]
    ada.patch("primary", later["id"], {"summary": "touched"})
    by_updated = ada.list("primary", orderBy="updated")["items"]
    assert [e["id"] for e in by_updated] == [earlier["id"], later["id"]]
    assert ada.req("GET", "/calendars/primary/events", params={"orderBy": "x"}).status_code == 400


def test_filters_ical_uid_extended_properties_and_q(ada: Api) -> None:
    a = ada.insert(
        "primary",
        timed(
            "Quarterly review",
            location="Oslo",
            extendedProperties={"private": {"crm": "42", "kind": "call"}},
            attendees=[{"email": "pat@example.org", "displayName": "Pat Doe"}],
        ),
    )
    b = ada.insert("primary", timed("Lunch", extendedProperties={"private": {"crm": "43"}}))

    def ids(**params: Any) -> list[str]:
        return [e["id"] for e in ada.list("primary", **params)["items"]]

    assert ids(iCalUID=b["iCalUID"]) == [b["id"]]
    assert ids(privateExtendedProperty="crm=42") == [a["id"]]
    assert ids(privateExtendedProperty=["crm=42", "kind=call"]) == [a["id"]]
    assert ids(privateExtendedProperty=["crm=42", "kind=visit"]) == []
    assert ids(q="quarterly") == [a["id"]]
    assert ids(q="oslo review") == [a["id"]]
    assert ids(q="pat doe") == [a["id"]]
    assert ids(q="lunch") == [b["id"]]
    assert ids(q="dinner") == []


def test_single_events_incremental_sync_reports_instance_changes(ada: Api) -> None:
    master = ada.insert("primary", oslo("2024-01-01", recurrence=["RRULE:FREQ=DAILY;COUNT=4"]))
    items, token, _ = ada.list_all("primary", singleEvents="true")
    assert len(items) == 4
    second, third = (f"{master['id']}_2024010{d}T080000Z" for d in (2, 3))
    ada.delete("primary", second)
    ada.patch("primary", third, {"summary": "special"})
    delta = {e["id"]: e for e in ada.list("primary", singleEvents="true", syncToken=token)["items"]}
    assert set(delta) == {second, third}
    assert delta[second]["status"] == "cancelled"
    assert delta[second]["recurringEventId"] == master["id"]
    assert delta[third]["summary"] == "special"
    # moving the whole series: the old instance ids are reported cancelled
    _, token2, _ = ada.list_all("primary", singleEvents="true")
    ada.patch(
        "primary",
        master["id"],
        {
            "start": {"dateTime": "2024-01-01T10:00:00", "timeZone": OSLO},
            "end": {"dateTime": "2024-01-01T11:00:00", "timeZone": OSLO},
        },
    )
    delta = ada.list("primary", singleEvents="true", syncToken=token2)["items"]
    status = {e["id"][-16:]: e["status"] for e in delta}
    assert status["20240101T080000Z"] == "cancelled"
    assert status["20240101T090000Z"] == "confirmed"
    assert len([s for s in status.values() if s == "confirmed"]) == 4
