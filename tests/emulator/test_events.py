"""events: insert/get/update/patch/delete, validation, ETags, ACL roles, attendee copies, e-mails."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Emulator
from tests.emulator.schema import assert_matches_schema

READONLY = ["https://www.googleapis.com/auth/calendar.readonly"]


class Api:
    """The Calendar API over real HTTP as one person, every answer checked against the schema."""

    def __init__(self, emulator: Emulator, email: str, scopes: list[str] | None = None) -> None:
        self.emu = emulator
        self.email = email
        self.auth = {"Authorization": f"Bearer {emulator.token(email, scopes)}"}

    def req(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        resp = self.emu.http.request(
            method,
            "/calendar/v3" + path,
            params=params,
            json=json,
            headers={**self.auth, **(headers or {})},
        )
        if resp.status_code == 200 and not (params or {}).get("fields"):
            listing = method == "GET" and path.endswith(("/events", "/instances"))
            assert_matches_schema(resp.json(), "Events" if listing else "Event")
        if resp.status_code >= 400:
            err = resp.json()["error"]
            assert err["code"] == resp.status_code
            assert err["errors"][0]["reason"] and err["message"]
        return resp

    def ok(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = self.req(method, path, **kw)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def insert(self, cal: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        return self.ok("POST", f"/calendars/{cal}/events", json=body, params=params)

    def get(self, cal: str, event_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/calendars/{cal}/events/{event_id}")

    def patch(self, cal: str, event_id: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        return self.ok("PATCH", f"/calendars/{cal}/events/{event_id}", json=body, params=params)

    def delete(self, cal: str, event_id: str, **params: Any) -> httpx.Response:
        return self.req("DELETE", f"/calendars/{cal}/events/{event_id}", params=params)

    def list(self, cal: str, **params: Any) -> dict[str, Any]:
        return self.ok("GET", f"/calendars/{cal}/events", params=params)

    def list_all(self, cal: str, **params: Any) -> tuple[list[dict[str, Any]], str, int]:
        """Every page: (items, nextSyncToken, number of pages)."""
        items: list[dict[str, Any]] = []
        pages = 0
        token = params.pop("pageToken", None)
        while True:
            page = self.list(cal, **params, **({"pageToken": token} if token else {}))
            pages += 1
            items += page["items"]
            token = page.get("nextPageToken")
            if token is None:
                return items, page["nextSyncToken"], pages
            assert "nextSyncToken" not in page


def timed(summary: str = "Meeting", day: str = "2024-05-06", **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": f"{day}T09:00:00+02:00"},
        "end": {"dateTime": f"{day}T10:00:00+02:00"},
        **extra,
    }


def error_of(resp: httpx.Response) -> tuple[int, str, str]:
    err = resp.json()["error"]
    return resp.status_code, err["errors"][0]["reason"], err["message"]


@pytest.fixture
def ada(emulator: Emulator) -> Api:
    emulator.account("ada@example.com", "Ada Lovelace")
    return Api(emulator, "ada@example.com")


def test_insert_sets_server_fields_and_get_returns_them(ada: Api) -> None:
    resp = ada.req("POST", "/calendars/primary/events", json=timed(unknownField=1))
    assert resp.status_code == 200
    ev = resp.json()
    assert resp.headers["ETag"] == ev["etag"]
    assert ev["kind"] == "calendar#event"
    assert ev["status"] == "confirmed"
    assert ev["sequence"] == 0
    assert ev["iCalUID"] == f"{ev['id']}@google.com"
    assert ev["organizer"] == {
        "email": "ada@example.com",
        "displayName": "Ada Lovelace",
        "self": True,
    }
    assert ev["creator"]["email"] == "ada@example.com" and ev["creator"]["self"] is True
    assert ev["reminders"] == {"useDefault": True}
    assert ev["eventType"] == "default"
    assert ev["htmlLink"].startswith("https://www.google.com/calendar/event?eid=")
    assert ev["created"].endswith("Z") and ev["updated"] == ev["created"]
    assert "unknownField" not in ev
    assert ada.get("ada@example.com", ev["id"]) == ev


def test_client_ids_are_checked_and_never_reused(ada: Api) -> None:
    ev = ada.insert("primary", timed(id="abcdefv0123"))
    assert ev["id"] == "abcdefv0123"
    for bad in ("abc", "ABCDEFG", "abcdefw", "abc-def", "x" * 1025):
        resp = ada.req("POST", "/calendars/primary/events", json=timed(id=bad))
        assert error_of(resp) == (400, "invalid", "Invalid resource id value.")
    resp = ada.req("POST", "/calendars/primary/events", json=timed(id="abcdefv0123"))
    assert error_of(resp) == (409, "duplicate", "The requested identifier already exists.")
    assert ada.delete("primary", "abcdefv0123").status_code == 204
    resp = ada.req("POST", "/calendars/primary/events", json=timed(id="abcdefv0123"))
    assert resp.status_code == 409


def test_times_are_validated(ada: Api) -> None:
    def post(body: dict[str, Any]) -> httpx.Response:
        return ada.req("POST", "/calendars/primary/events", json=body)

    no_end = timed()
    del no_end["end"]
    assert error_of(post(no_end)) == (400, "required", "Missing end time.")
    backwards = timed()
    backwards["end"] = {"dateTime": "2024-05-06T08:00:00+02:00"}
    assert error_of(post(backwards))[:2] == (400, "timeRangeEmpty")
    mixed = timed()
    mixed["end"] = {"date": "2024-05-07"}
    assert post(mixed).status_code == 400
    naive = {
        "start": {"dateTime": "2024-05-06T09:00:00"},
        "end": {"dateTime": "2024-05-06T10:00:00"},
    }
    assert error_of(post(naive))[:2] == (400, "required")
    bad_zone = {
        "start": {"dateTime": "2024-05-06T09:00:00", "timeZone": "Mars/Olympus"},
        "end": {"dateTime": "2024-05-06T10:00:00", "timeZone": "Mars/Olympus"},
    }
    assert error_of(post(bad_zone))[:2] == (400, "invalid")
    same_day = {"start": {"date": "2024-05-06"}, "end": {"date": "2024-05-06"}}
    assert error_of(post(same_day))[:2] == (400, "timeRangeEmpty")
    # a series needs a zone to expand in, and a rule Google can parse
    assert error_of(post({**timed(), "recurrence": ["RRULE:FREQ=DAILY"]})) == (
        400,
        "required",
        "Missing time zone definition for start time.",
    )
    oslo = {
        "start": {"dateTime": "2024-05-06T09:00:00", "timeZone": "Europe/Oslo"},
        "end": {"dateTime": "2024-05-06T10:00:00", "timeZone": "Europe/Oslo"},
    }
    assert error_of(post({**oslo, "recurrence": ["RRULE:FREQ=SOMETIMES"]}))[:2] == (400, "invalid")
    # Google refuses a rule that never advances or counts below one (issue 13)
    for rule in ("RRULE:FREQ=DAILY;INTERVAL=0", "RRULE:FREQ=DAILY;COUNT=-1"):
        assert error_of(post({**oslo, "recurrence": [rule]})) == (
            400,
            "invalid",
            "Invalid recurrence rule.",
        )
    assert error_of(post({**oslo, "recurrence": ["DTSTART:20240506T090000"]}))[:2] == (
        400,
        "invalid",
    )

    zoned = post(
        {
            "start": {"dateTime": "2024-01-15T09:00:00", "timeZone": "Europe/Oslo"},
            "end": {"dateTime": "2024-01-15T10:00:00", "timeZone": "Europe/Oslo"},
        }
    ).json()
    assert zoned["start"] == {"dateTime": "2024-01-15T09:00:00+01:00", "timeZone": "Europe/Oslo"}
    all_day = post({"start": {"date": "2024-05-06"}, "end": {"date": "2024-05-07"}}).json()
    assert all_day["start"] == {"date": "2024-05-06"} and all_day["end"] == {"date": "2024-05-07"}


def test_patch_merges_objects_and_replaces_arrays(ada: Api) -> None:
    ev = ada.insert(
        "primary",
        timed(
            description="agenda",
            attendees=[{"email": "x@other.org"}, {"email": "y@other.org"}],
            extendedProperties={"private": {"a": "1", "b": "2"}, "shared": {"s": "1"}},
        ),
    )
    p = ada.patch(
        "primary",
        ev["id"],
        {
            "attendees": [{"email": "z@other.org"}],
            "extendedProperties": {"private": {"b": "3", "c": "4"}},
            "description": None,
            "start": {"dateTime": "2024-05-06T09:30:00+02:00"},
        },
    )
    assert [a["email"] for a in p["attendees"]] == ["z@other.org"]
    assert p["attendees"][0]["responseStatus"] == "needsAction"
    assert p["extendedProperties"] == {
        "private": {"a": "1", "b": "3", "c": "4"},
        "shared": {"s": "1"},
    }
    assert "description" not in p
    # written in the calendar's zone (UTC here), as Google answers
    assert p["start"] == {"dateTime": "2024-05-06T07:30:00Z"}
    assert p["sequence"] == 1 and p["etag"] != ev["etag"] and p["updated"] >= ev["updated"]
    # description is not a significant change: the sequence stays
    assert ada.patch("primary", ev["id"], {"description": "new"})["sequence"] == 1
    assert ada.patch("primary", ev["id"], {"summary": "renamed"})["sequence"] == 2
    resp = ada.req("PATCH", f"/calendars/primary/events/{ev['id']}", json={"sequence": 0})
    assert error_of(resp)[:2] == (400, "invalid")


def test_update_replaces_the_whole_event(ada: Api) -> None:
    ev = ada.insert("primary", timed(description="d", location="Oslo", colorId="5"))
    put = ada.ok("PUT", f"/calendars/primary/events/{ev['id']}", json=timed("Only title"))
    assert put["summary"] == "Only title"
    assert "description" not in put and "location" not in put and "colorId" not in put
    assert put["id"] == ev["id"] and put["created"] == ev["created"]
    assert put["iCalUID"] == ev["iCalUID"] and put["organizer"] == ev["organizer"]
    resp = ada.req("PUT", f"/calendars/primary/events/{ev['id']}", json={"summary": "no times"})
    assert error_of(resp)[:2] == (400, "required")


def test_if_match_and_if_none_match(ada: Api) -> None:
    ev = ada.insert("primary", timed())
    path = f"/calendars/primary/events/{ev['id']}"
    stale = {"If-Match": '"1"'}
    for method, body in (("PATCH", {"summary": "x"}), ("PUT", timed("x")), ("DELETE", None)):
        resp = ada.req(method, path, json=body, headers=stale)
        assert error_of(resp) == (412, "conditionNotMet", "Precondition Failed")
    fresh = ada.req("PATCH", path, json={"summary": "y"}, headers={"If-Match": ev["etag"]})
    assert fresh.status_code == 200 and fresh.headers["ETag"] == fresh.json()["etag"]
    etag = fresh.json()["etag"]
    assert ada.req("GET", path, headers={"If-None-Match": etag}).status_code == 304
    assert ada.req("GET", path, headers={"If-None-Match": ev["etag"]}).status_code == 200
    assert ada.req("DELETE", path, headers={"If-Match": etag}).status_code == 204


def test_delete_keeps_a_cancelled_event(ada: Api) -> None:
    ev = ada.insert("primary", timed())
    resp = ada.delete("primary", ev["id"])
    assert resp.status_code == 204 and resp.content == b""
    gone = ada.get("primary", ev["id"])
    assert gone["status"] == "cancelled"
    assert error_of(ada.delete("primary", ev["id"])) == (
        410,
        "deleted",
        "Resource has been deleted",
    )
    assert error_of(ada.delete("primary", "nosuchevent"))[:2] == (404, "notFound")
    resp = ada.req("PATCH", "/calendars/primary/events/nosuchevent", json={"summary": "x"})
    assert resp.status_code == 404
    assert ada.list("primary")["items"] == []


def test_access_follows_the_acl(emulator: Emulator, ada: Api) -> None:
    ev = ada.insert("primary", timed())
    for email, role in (
        ("rita@example.com", "reader"),
        ("fred@example.com", "freeBusyReader"),
        ("will@example.com", "writer"),
    ):
        emulator.account(email)
        emulator.control("POST", "/calendars/ada@example.com/acl", {"email": email, "role": role})
    emulator.account("nobody@example.com")
    rita = Api(emulator, "rita@example.com")
    assert [e["id"] for e in rita.list("ada@example.com")["items"]] == [ev["id"]]
    assert rita.list("ada@example.com")["accessRole"] == "reader"
    resp = rita.req("POST", "/calendars/ada@example.com/events", json=timed())
    assert error_of(resp) == (
        403,
        "requiredAccessLevel",
        "You need to have writer access to this calendar.",
    )
    assert rita.delete("ada@example.com", ev["id"]).status_code == 403
    for who in ("fred@example.com", "nobody@example.com"):
        resp = Api(emulator, who).req("GET", "/calendars/ada@example.com/events")
        assert error_of(resp)[:2] == (404, "notFound")
    will = Api(emulator, "will@example.com")
    made = will.insert("ada@example.com", timed("by will"))
    assert made["organizer"]["email"] == "ada@example.com"
    assert made["creator"]["email"] == "will@example.com" and "self" not in made["creator"]
    readonly = Api(emulator, "ada@example.com", READONLY)
    assert readonly.list("primary")["items"]
    resp = readonly.req("POST", "/calendars/primary/events", json=timed())
    assert error_of(resp)[:2] == (403, "insufficientPermissions")


def test_attendee_copies_replies_and_non_organizer_limits(emulator: Emulator, ada: Api) -> None:
    emulator.account("bob@example.com", "Bob")
    bob = Api(emulator, "bob@example.com")
    ev = ada.insert(
        "primary",
        timed(
            attendees=[{"email": "bob@example.com"}, {"email": "carl@elsewhere.net"}],
            extendedProperties={"private": {"crm": "1"}, "shared": {"s": "x"}},
        ),
    )
    copy = bob.get("primary", ev["id"])
    assert copy["iCalUID"] == ev["iCalUID"] and copy["summary"] == ev["summary"]
    assert copy["organizer"] == {"email": "ada@example.com", "displayName": "Ada Lovelace"}
    me = next(a for a in copy["attendees"] if a["email"] == "bob@example.com")
    assert me == {"email": "bob@example.com", "responseStatus": "needsAction", "self": True}
    assert copy["extendedProperties"] == {"shared": {"s": "x"}}  # private stays private

    resp = bob.req("PATCH", f"/calendars/primary/events/{ev['id']}", json={"summary": "mine"})
    assert error_of(resp)[:2] == (403, "forbiddenForNonOrganizer")
    attendees = [dict(a) for a in copy["attendees"]]
    for a in attendees:
        if a["email"] == "bob@example.com":
            a["responseStatus"] = "accepted"
    mine = bob.patch(
        "primary",
        ev["id"],
        {"attendees": attendees, "colorId": "3", "extendedProperties": {"private": {"b": "1"}}},
    )
    assert mine["colorId"] == "3"
    organizer_view = ada.get("primary", ev["id"])
    status = {a["email"]: a["responseStatus"] for a in organizer_view["attendees"]}
    assert status == {"bob@example.com": "accepted", "carl@elsewhere.net": "needsAction"}
    assert organizer_view["extendedProperties"]["private"] == {"crm": "1"}

    ada.patch("primary", ev["id"], {"summary": "Moved to Friday"})
    copy = bob.get("primary", ev["id"])
    assert copy["summary"] == "Moved to Friday"
    assert copy["colorId"] == "3" and copy["extendedProperties"]["private"] == {"b": "1"}
    assert next(a for a in copy["attendees"] if a.get("self"))["responseStatus"] == "accepted"

    # the attendee deletes their copy: only theirs goes, the organizer sees a decline
    assert bob.delete("primary", ev["id"]).status_code == 204
    assert ada.get("primary", ev["id"])["status"] == "confirmed"
    declined = {a["email"]: a["responseStatus"] for a in ada.get("primary", ev["id"])["attendees"]}
    assert declined["bob@example.com"] == "declined"
    assert bob.get("primary", ev["id"])["status"] == "cancelled"


def test_removed_attendee_loses_the_copy_and_organizer_delete_cancels_it(
    emulator: Emulator, ada: Api
) -> None:
    emulator.account("bob@example.com")
    emulator.account("cleo@example.com")
    bob, cleo = Api(emulator, "bob@example.com"), Api(emulator, "cleo@example.com")
    ev = ada.insert(
        "primary", timed(attendees=[{"email": "bob@example.com"}, {"email": "cleo@example.com"}])
    )
    _, bob_token, _ = bob.list_all("primary")
    ada.patch("primary", ev["id"], {"attendees": [{"email": "cleo@example.com"}]})
    assert bob.get("primary", ev["id"])["status"] == "cancelled"
    changed = bob.list("primary", syncToken=bob_token)["items"]
    assert changed == [
        {
            "kind": "calendar#event",
            "etag": changed[0]["etag"],
            "id": ev["id"],
            "status": "cancelled",
        }
    ]
    assert ada.delete("primary", ev["id"]).status_code == 204
    assert cleo.get("primary", ev["id"])["status"] == "cancelled"


def test_emails_follow_send_updates(emulator: Emulator, ada: Api) -> None:
    guests = [{"email": "bob@example.com"}, {"email": "carl@elsewhere.net"}]

    def emails() -> list[tuple[str, str]]:
        items = emulator.control("GET", "/emails").json()["items"]
        return sorted((e["to"], e["kind"]) for e in items)

    ev = ada.insert("primary", timed(attendees=guests))
    assert emails() == []
    ada.patch("primary", ev["id"], {"summary": "x"}, sendUpdates="externalOnly")
    assert emails() == [("carl@elsewhere.net", "update")]
    ev2 = ada.insert("primary", timed(attendees=guests), sendUpdates="all")
    assert emails() == [
        ("bob@example.com", "invitation"),
        ("carl@elsewhere.net", "invitation"),
        ("carl@elsewhere.net", "update"),
    ]
    ada.delete("primary", ev2["id"], sendUpdates="all")
    kinds = [k for _, k in emails()]
    assert kinds.count("cancellation") == 2
    resp = ada.req("DELETE", f"/calendars/primary/events/{ev['id']}", params={"sendUpdates": "x"})
    assert resp.status_code == 400


def test_fields_selects_a_partial_response(ada: Api) -> None:
    ada.insert("primary", timed())
    body = ada.list("primary", fields="items(id,status),nextSyncToken")
    assert set(body) == {"items", "nextSyncToken"}
    assert set(body["items"][0]) == {"id", "status"}
    ev = body["items"][0]
    one = ada.ok(
        "GET", f"/calendars/primary/events/{ev['id']}", params={"fields": "id,start/dateTime"}
    )
    assert one == {"id": ev["id"], "start": {"dateTime": "2024-05-06T07:00:00Z"}}
    assert ada.req("GET", "/calendars/primary/events", params={"alt": "json"}).status_code == 200


def test_event_types_insert_and_filter(ada: Api) -> None:
    ada.insert("primary", timed("work"))
    ada.insert("primary", timed("focus", eventType="focusTime"))
    ada.insert(
        "primary",
        {
            "start": {"date": "2024-05-06"},
            "end": {"date": "2024-05-07"},
            "eventType": "workingLocation",
        },
    )
    resp = ada.req("POST", "/calendars/primary/events", json=timed(eventType="party"))
    assert resp.status_code == 400
    only = ada.list("primary", eventTypes=["focusTime", "workingLocation"])["items"]
    assert sorted(e["eventType"] for e in only) == ["focusTime", "workingLocation"]
    assert len(ada.list("primary")["items"]) == 3


def test_move_import_and_quick_add(emulator: Emulator, ada: Api) -> None:
    team = emulator.control(
        "POST", "/accounts/ada@example.com/calendars", {"summary": "Team", "timeZone": "UTC"}
    ).json()["id"]
    ev = ada.insert("primary", timed())
    _, token, _ = ada.list_all("primary")
    moved = ada.ok(
        "POST", f"/calendars/primary/events/{ev['id']}/move", params={"destination": team}
    )
    assert moved["id"] == ev["id"] and moved["organizer"]["email"] == team
    assert ada.get(team, ev["id"])["summary"] == ev["summary"]
    assert [(e["id"], e["status"]) for e in ada.list("primary", syncToken=token)["items"]] == [
        (ev["id"], "cancelled")
    ]

    imported = ada.ok(
        "POST",
        "/calendars/primary/events/import",
        json=timed(
            "From elsewhere",
            iCalUID="abc-123@example.org",
            organizer={"email": "someone@example.org"},
        ),
    )
    assert imported["iCalUID"] == "abc-123@example.org"
    assert imported["organizer"] == {"email": "someone@example.org"}
    again = ada.ok(
        "POST",
        "/calendars/primary/events/import",
        json=timed("Renamed", iCalUID="abc-123@example.org"),
    )
    assert again["id"] == imported["id"] and again["summary"] == "Renamed"
    resp = ada.req("POST", "/calendars/primary/events/import", json=timed())
    assert resp.status_code == 400
    quick = ada.ok("POST", "/calendars/primary/events/quickAdd", params={"text": "Lunch"})
    assert quick["summary"] == "Lunch"


def test_instances_can_be_read_changed_and_cancelled(ada: Api) -> None:
    master = ada.insert(
        "primary",
        {
            "summary": "Standup",
            "start": {"dateTime": "2024-05-06T09:00:00", "timeZone": "Europe/Oslo"},
            "end": {"dateTime": "2024-05-06T09:15:00", "timeZone": "Europe/Oslo"},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"],
        },
    )
    second = f"{master['id']}_20240507T070000Z"
    virtual = ada.get("primary", second)
    assert virtual["recurringEventId"] == master["id"]
    assert virtual["originalStartTime"] == {
        "dateTime": "2024-05-07T09:00:00+02:00",
        "timeZone": "Europe/Oslo",
    }
    assert "recurrence" not in virtual
    assert (
        ada.req("GET", f"/calendars/primary/events/{master['id']}_20240507T080000Z").status_code
        == 404
    )
    assert (
        ada.req("GET", f"/calendars/primary/events/{master['id']}_20240520T070000Z").status_code
        == 404
    )
    changed = ada.patch("primary", second, {"summary": "Longer standup"})
    assert changed["id"] == second and changed["originalStartTime"] == virtual["originalStartTime"]
    third = f"{master['id']}_20240508T070000Z"
    assert ada.delete("primary", third).status_code == 204
    assert ada.delete("primary", third).status_code == 410
    instances = ada.ok("GET", f"/calendars/primary/events/{master['id']}/instances")["items"]
    assert [i["summary"] for i in instances] == ["Standup", "Longer standup", "Standup", "Standup"]
    with_deleted = ada.ok(
        "GET",
        f"/calendars/primary/events/{master['id']}/instances",
        params={"showDeleted": "true", "maxResults": 2},
    )
    assert len(with_deleted["items"]) == 2 and "nextPageToken" in with_deleted
    rest = ada.ok(
        "GET",
        f"/calendars/primary/events/{master['id']}/instances",
        params={"showDeleted": "true", "pageToken": with_deleted["nextPageToken"]},
    )["items"]
    assert [i["status"] for i in rest] == ["cancelled", "confirmed", "confirmed"]
    one = ada.ok(
        "GET",
        f"/calendars/primary/events/{master['id']}/instances",
        params={"originalStart": "2024-05-09T09:00:00+02:00"},
    )["items"]
    assert [i["id"] for i in one] == [f"{master['id']}_20240509T070000Z"]


def test_readers_see_only_when_private_events_happen(emulator: Emulator, ada: Api) -> None:
    emulator.account("rita@example.com")
    emulator.control(
        "POST", "/calendars/ada@example.com/acl", {"email": "rita@example.com", "role": "reader"}
    )
    secret = ada.insert("primary", timed("Doctor", visibility="private", location="Clinic"))
    public = ada.insert("primary", timed("Standup"))
    seen = {e["id"]: e for e in Api(emulator, "rita@example.com").list("ada@example.com")["items"]}
    assert "summary" not in seen[secret["id"]] and "location" not in seen[secret["id"]]
    assert seen[secret["id"]]["start"] == secret["start"]
    assert seen[public["id"]]["summary"] == "Standup"
    assert ada.get("primary", secret["id"])["summary"] == "Doctor"


def test_time_zone_parameter_rewrites_times(ada: Api) -> None:
    ev = ada.insert("primary", timed())
    got = ada.ok("GET", f"/calendars/primary/events/{ev['id']}", params={"timeZone": "Asia/Tokyo"})
    assert got["start"]["dateTime"] == "2024-05-06T16:00:00+09:00"
    listed = ada.list("primary", timeZone="America/New_York")["items"][0]
    assert listed["start"]["dateTime"] == "2024-05-06T03:00:00-04:00"
    resp = ada.req("GET", "/calendars/primary/events", params={"timeZone": "Nowhere/Land"})
    assert resp.status_code == 400


def test_a_new_event_is_created_and_updated_at_the_same_instant(
    ada: Api, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google gives a new event one timestamp for `created` and `updated`; a clock that ticks
    between two readings (a busy machine crossing a millisecond) must not split them."""
    clock = emulator.world.clock
    ticks = iter(range(1_000))
    start = clock.now()
    monkeypatch.setattr(clock, "now", lambda: start + next(ticks) * 0.01)
    ev = ada.insert("primary", timed())
    assert ev["created"] == ev["updated"]
    assert ada.get("ada@example.com", ev["id"])["created"] == ev["updated"]
