"""calendarList, calendars and acl over real HTTP, with Google's paging and sync-token contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Emulator
from tests.emulator.schema import assert_matches_schema

ADA = "ada@example.com"
BOB = "bob@example.com"
LIST = "/calendar/v3/users/me/calendarList"
EVENTS_ONLY = "https://www.googleapis.com/auth/calendar.events"
READONLY = "https://www.googleapis.com/auth/calendar.readonly"


def check(obj: dict[str, Any], schema: str) -> None:
    assert_matches_schema(obj, schema)


class Api:
    """A bearer-token client for one person."""

    def __init__(self, emulator: Emulator, email: str, scopes: list[str] | None = None) -> None:
        self.http = emulator.http
        self.headers = {"Authorization": f"Bearer {emulator.token(email, scopes)}"}

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers=self.headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self(method, path, **kwargs)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def list_all(self, **params: Any) -> tuple[list[dict[str, Any]], str, int]:
        """Every page; returns items, nextSyncToken and the number of pages."""
        items: list[dict[str, Any]] = []
        pages = 0
        token: str | None = None
        while True:
            query = dict(params, **({"pageToken": token} if token else {}))
            body = self.ok("GET", LIST, params=query)
            check(body, "CalendarList")
            pages += 1
            items.extend(body["items"])
            if "nextPageToken" in body:
                assert "nextSyncToken" not in body
                token = body["nextPageToken"]
                continue
            return items, body["nextSyncToken"], pages


def reason(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["errors"][0]["reason"]


@pytest.fixture
def people(emulator: Emulator) -> Callable[[str], Api]:
    emulator.account(ADA, "Ada")
    emulator.account(BOB, "Bob")
    return lambda email: Api(emulator, email)


def test_primary_entry_looks_like_googles(emulator: Emulator, people: Callable[[str], Api]) -> None:
    body = people(ADA).ok("GET", LIST)
    check(body, "CalendarList")
    assert body["kind"] == "calendar#calendarList" and "nextSyncToken" in body
    [entry] = body["items"]
    check(entry, "CalendarListEntry")
    assert entry["kind"] == "calendar#calendarListEntry"
    assert entry["id"] == ADA and entry["primary"] is True
    assert entry["accessRole"] == "owner" and entry["selected"] is True
    assert entry["etag"].startswith('"') and entry["timeZone"] == "UTC"
    assert entry["backgroundColor"].startswith("#") and entry["colorId"]
    assert entry["defaultReminders"] == [{"method": "popup", "minutes": 10}]
    assert "hidden" not in entry and "deleted" not in entry
    same = people(ADA).ok("GET", f"{LIST}/primary")
    assert same["id"] == ADA


def test_paging_and_incremental_sync(emulator: Emulator, people: Callable[[str], Api]) -> None:
    ada = people(ADA)
    for i in range(7):
        emulator.control("POST", f"/accounts/{ADA}/calendars", {"summary": f"Cal {i}"})
    items, sync_token, pages = ada.list_all(maxResults=3)
    assert pages == 3 and len(items) == 8
    assert items[0]["id"] == ADA and len({i["id"] for i in items}) == 8

    nothing = ada.ok("GET", LIST, params={"syncToken": sync_token})
    assert nothing["items"] == [] and nothing["nextSyncToken"]

    # bob shares two calendars with ada: they appear with her access role
    bob_cal = emulator.control("POST", f"/accounts/{BOB}/calendars", {"summary": "Team"}).json()
    emulator.control("POST", f"/calendars/{bob_cal['id']}/acl", {"email": ADA, "role": "reader"})
    emulator.control("POST", f"/calendars/{BOB}/acl", {"email": ADA, "role": "writer"})
    changed, sync_token, _ = ada.list_all(syncToken=sync_token, maxResults=1)
    roles = {e["id"]: e["accessRole"] for e in changed}
    assert roles == {bob_cal["id"]: "reader", BOB: "writer"}
    assert all("primary" not in e for e in changed)

    # access removed: the entry comes back as deleted
    emulator.control("POST", f"/calendars/{bob_cal['id']}/acl", {"email": ADA, "role": "none"})
    gone = ada.ok("GET", LIST, params={"syncToken": sync_token})
    assert [(e["id"], e.get("deleted")) for e in gone["items"]] == [(bob_cal["id"], True)]
    check(gone["items"][0], "CalendarListEntry")
    full, _, _ = ada.list_all()
    assert bob_cal["id"] not in {e["id"] for e in full}
    with_deleted, _, _ = ada.list_all(showDeleted="true")
    assert bob_cal["id"] in {e["id"] for e in with_deleted}


def test_sync_token_errors(emulator: Emulator, people: Callable[[str], Api]) -> None:
    ada = people(ADA)
    token = ada.ok("GET", LIST)["nextSyncToken"]
    assert reason(ada("GET", LIST, params={"syncToken": "garbage"})) == (410, "fullSyncRequired")
    bobs = people(BOB).ok("GET", LIST)["nextSyncToken"]
    assert reason(ada("GET", LIST, params={"syncToken": bobs}))[0] == 410
    bad = ada("GET", LIST, params={"syncToken": token, "minAccessRole": "reader"})
    assert bad.status_code == 400
    bad = ada("GET", LIST, params={"syncToken": token, "showDeleted": "false"})
    assert bad.status_code == 400
    assert ada("GET", LIST, params={"pageToken": "nope"}).status_code == 400
    assert ada("GET", LIST, params={"minAccessRole": "boss"}).status_code == 400
    emulator.world.calendar_list_floor[ADA] = emulator.world.next_seq()
    assert reason(ada("GET", LIST, params={"syncToken": token})) == (410, "fullSyncRequired")


def test_hidden_and_min_access_role(emulator: Emulator, people: Callable[[str], Api]) -> None:
    ada = people(ADA)
    emulator.control("POST", f"/calendars/{BOB}/acl", {"email": ADA, "role": "reader"})
    token = ada.ok("GET", LIST)["nextSyncToken"]
    patched = ada.ok("PATCH", f"{LIST}/{BOB}", json={"hidden": True, "summaryOverride": "Bob!"})
    check(patched, "CalendarListEntry")
    assert patched["hidden"] is True and patched["summaryOverride"] == "Bob!"
    assert [e["id"] for e in ada.list_all()[0]] == [ADA]
    assert {e["id"] for e in ada.list_all(showHidden="true")[0]} == {ADA, BOB}
    # hiding is a change an incremental sync reports
    assert [e["id"] for e in ada.ok("GET", LIST, params={"syncToken": token})["items"]] == [BOB]
    writers, _, _ = ada.list_all(showHidden="true", minAccessRole="writer")
    assert [e["id"] for e in writers] == [ADA]


def test_entry_insert_patch_update_delete(emulator: Emulator, people: Callable[[str], Api]) -> None:
    ada = people(ADA)
    emulator.control("POST", f"/calendars/{BOB}/acl", {"email": ADA, "role": "writer"})
    assert ada("DELETE", f"{LIST}/{BOB}").status_code == 204
    assert reason(ada("GET", f"{LIST}/{BOB}")) == (404, "notFound")
    entry = ada.ok("POST", LIST, json={"id": BOB, "colorId": "7"})
    assert entry["accessRole"] == "writer" and entry["colorId"] == "7"
    assert entry["backgroundColor"] == "#42d692"
    rgb = ada.ok(
        "PATCH",
        f"{LIST}/{BOB}",
        params={"colorRgbFormat": "true"},
        json={"backgroundColor": "#123456", "foregroundColor": "#ffffff"},
    )
    assert (rgb["backgroundColor"], rgb["foregroundColor"]) == ("#123456", "#ffffff")
    assert ada("PATCH", f"{LIST}/{BOB}", json={"colorId": "99"}).status_code == 400
    updated = ada.ok(
        "PUT",
        f"{LIST}/{BOB}",
        json={"selected": True, "defaultReminders": [{"method": "email", "minutes": 30}]},
    )
    assert updated["selected"] is True and "summaryOverride" not in updated
    assert updated["defaultReminders"] == [{"method": "email", "minutes": 30}]
    assert updated["backgroundColor"] == "#42d692"  # custom colours reset by update
    bad = ada(
        "PATCH", f"{LIST}/{BOB}", json={"defaultReminders": [{"method": "sms", "minutes": 1}]}
    )
    assert bad.status_code == 400
    # a calendar without access cannot be subscribed; the primary cannot be removed
    carol = emulator.control("POST", f"/accounts/{BOB}/calendars", {"summary": "Private"}).json()
    assert reason(ada("POST", LIST, json={"id": carol["id"]})) == (404, "notFound")
    assert ada("DELETE", f"{LIST}/primary").status_code == 403
    assert ada("POST", LIST, content=b"{not json").status_code == 400


def test_calendars_get_insert_patch_delete(
    emulator: Emulator, people: Callable[[str], Api]
) -> None:
    ada, bob = people(ADA), people(BOB)
    primary = ada.ok("GET", "/calendar/v3/calendars/primary")
    check(primary, "Calendar")
    assert primary["kind"] == "calendar#calendar" and primary["id"] == ADA
    assert "dataOwner" not in primary

    token = ada.ok("GET", LIST)["nextSyncToken"]
    created = ada.ok(
        "POST",
        "/calendar/v3/calendars",
        json={"summary": "CRM", "timeZone": "Europe/Oslo", "description": "from the CRM"},
    )
    check(created, "Calendar")
    cal_id = created["id"]
    assert cal_id.endswith("@group.calendar.google.com")
    assert created["timeZone"] == "Europe/Oslo" and created["dataOwner"] == ADA
    entry = ada.ok("GET", LIST, params={"syncToken": token})["items"]
    assert [(e["id"], e["accessRole"]) for e in entry] == [(cal_id, "owner")]

    patched = ada.ok("PATCH", f"/calendar/v3/calendars/{cal_id}", json={"summary": "CRM 2"})
    assert patched["summary"] == "CRM 2" and patched["description"] == "from the CRM"
    assert patched["etag"] != created["etag"]
    assert ada.ok("GET", f"{LIST}/{cal_id}")["summary"] == "CRM 2"
    put = ada.ok("PUT", f"/calendar/v3/calendars/{cal_id}", json={"summary": "CRM 3"})
    assert "description" not in put
    assert ada("PUT", f"/calendar/v3/calendars/{cal_id}", json={}).status_code == 400
    bad_zone = ada("PATCH", f"/calendar/v3/calendars/{cal_id}", json={"timeZone": "Mars/Base"})
    assert bad_zone.status_code == 400
    assert ada("POST", "/calendar/v3/calendars", json={}).status_code == 400

    # others: no access is 404, read access cannot change it
    assert reason(bob("GET", f"/calendar/v3/calendars/{cal_id}")) == (404, "notFound")
    emulator.control("POST", f"/calendars/{cal_id}/acl", {"email": BOB, "role": "writer"})
    assert bob.ok("GET", f"/calendar/v3/calendars/{cal_id}")["summary"] == "CRM 3"
    assert reason(bob("PATCH", f"/calendar/v3/calendars/{cal_id}", json={"summary": "x"}))[0] == 403
    bob_token = bob.ok("GET", LIST)["nextSyncToken"]

    assert ada("DELETE", "/calendar/v3/calendars/primary").status_code == 400
    assert ada("DELETE", f"/calendar/v3/calendars/{cal_id}").status_code == 204
    assert reason(ada("GET", f"/calendar/v3/calendars/{cal_id}")) == (404, "notFound")
    gone = bob.ok("GET", LIST, params={"syncToken": bob_token})["items"]
    assert [(e["id"], e.get("deleted")) for e in gone] == [(cal_id, True)]


def test_scopes_are_enforced(emulator: Emulator, people: Callable[[str], Api]) -> None:
    events_only = Api(emulator, ADA, [EVENTS_ONLY])
    assert reason(events_only("GET", LIST)) == (403, "insufficientPermissions")
    readonly = Api(emulator, ADA, [READONLY])
    assert readonly("GET", LIST).status_code == 200
    assert reason(readonly("POST", "/calendar/v3/calendars", json={"summary": "x"}))[0] == 403
    assert reason(readonly("PATCH", f"{LIST}/primary", json={"hidden": True}))[0] == 403
    no_token = emulator.http.get(LIST)
    assert reason(no_token) == (401, "authError")


def test_acl_rules(emulator: Emulator, people: Callable[[str], Api]) -> None:
    ada, bob = people(ADA), people(BOB)
    acl = ada.ok("GET", "/calendar/v3/calendars/primary/acl")
    check(acl, "Acl")
    assert [(r["id"], r["role"]) for r in acl["items"]] == [(f"user:{ADA}", "owner")]
    rule = ada.ok(
        "POST",
        "/calendar/v3/calendars/primary/acl",
        json={"role": "reader", "scope": {"type": "user", "value": BOB}},
    )
    check(rule, "AclRule")
    assert rule["id"] == f"user:{BOB}"
    assert ADA in {e["id"] for e in bob.list_all()[0]}
    assert bob("GET", f"/calendar/v3/calendars/{ADA}/acl").status_code == 403
    assert ada("DELETE", f"/calendar/v3/calendars/primary/acl/user:{ADA}").status_code == 403
    assert ada("DELETE", f"/calendar/v3/calendars/primary/acl/user:{BOB}").status_code == 204
    assert ADA not in {e["id"] for e in bob.list_all()[0]}


def test_colors(emulator: Emulator, people: Callable[[str], Api]) -> None:
    colors = people(ADA).ok("GET", "/calendar/v3/colors")
    check(colors, "Colors")
    assert len(colors["calendar"]) == 24 and len(colors["event"]) == 11


def test_google_api_client_pages_the_list(emulator: Emulator, people: Callable[[str], Api]) -> None:
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    token = emulator.token(ADA)
    service = build(
        "calendar",
        "v3",
        credentials=Credentials(token),
        static_discovery=True,
        client_options={"api_endpoint": f"{emulator.url}/calendar/v3/"},
    )
    emulator.control("POST", f"/calendars/{BOB}/acl", {"email": ADA, "role": "reader"})
    listed = service.calendarList().list(maxResults=1).execute()
    assert "nextPageToken" in listed
    second = service.calendarList().list(maxResults=1, pageToken=listed["nextPageToken"]).execute()
    assert [e["id"] for e in listed["items"] + second["items"]] == [ADA, BOB]
    assert service.calendars().get(calendarId="primary").execute()["id"] == ADA


async def test_gcal_sync_lists_and_gets_calendars(emulator: Emulator) -> None:
    import aiohttp
    from gcal_sync.api import GoogleCalendarService
    from gcal_sync.auth import AbstractAuth

    emulator.account(ADA, "Ada")
    token = emulator.token(ADA)

    class Auth(AbstractAuth):
        async def async_get_access_token(self) -> str:
            return token

    async with aiohttp.ClientSession() as session:
        service = GoogleCalendarService(Auth(session, f"{emulator.url}/calendar/v3"))
        listed = await service.async_list_calendars()
        assert [(c.id, c.primary, c.access_role.value) for c in listed.items] == [
            (ADA, True, "owner")
        ]
        assert listed.sync_token
        assert (await service.async_get_calendar("primary")).id == ADA
