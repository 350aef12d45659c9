"""Push channels: watch, notifications over real HTTP to a receiver, expiry, stop and retries."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from gcal_emulator.state import SCOPE_CALENDAR_READONLY
from tests.conftest import Emulator

ADA = "ada@example.com"


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every notification and answers as told."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: deque[int] = deque()  # statuses to answer next; 200 when empty
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.cond:
                    status = receiver.answers.popleft() if receiver.answers else 200
                    receiver.received.append(
                        {"headers": dict(self.headers.items()), "body": body, "status": status}
                    )
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} notifications, got {len(self.received)}")
                self.cond.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


@pytest.fixture
def fast_retries(emulator: Emulator) -> Iterator[None]:
    config = emulator.world.config
    saved = (config.push_retry_base_seconds, config.push_max_attempts)
    config.push_retry_base_seconds = 0.05
    config.push_max_attempts = 4
    yield
    config.push_retry_base_seconds, config.push_max_attempts = saved


def _watch(
    emulator: Emulator, bearer: str, address: str, *, path: str | None = None, **extra: Any
) -> httpx.Response:
    body = {"id": extra.pop("id", "chan-1"), "type": "web_hook", "address": address, **extra}
    return emulator.http.post(
        path or "/calendar/v3/calendars/primary/events/watch",
        json=body,
        headers={"Authorization": f"Bearer {bearer}"},
        params={"alt": "json"},
    )


def _deliveries(emulator: Emulator, at_least: int = 0) -> list[dict[str, Any]]:
    """The delivery log, waiting until it has `at_least` entries (the receiver sees a
    notification a moment before the emulator records the answer)."""
    deadline = time.monotonic() + 5
    while True:
        items: list[dict[str, Any]] = emulator.control("GET", "/deliveries").json()["items"]
        if len(items) >= at_least or time.monotonic() > deadline:
            return items
        time.sleep(0.02)


def test_watch_sends_sync_then_exists_with_google_headers(
    emulator: Emulator, receiver: Receiver
) -> None:
    cal = emulator.account(ADA)
    token = emulator.token(ADA)
    resp = _watch(emulator, token, receiver.url, token="target=crm-7")
    assert resp.status_code == 200, resp.text
    channel = resp.json()
    assert channel["kind"] == "api#channel"
    assert channel["id"] == "chan-1"
    assert channel["token"] == "target=crm-7"
    assert channel["resourceUri"].endswith("/calendar/v3/calendars/primary/events?alt=json")
    assert isinstance(channel["expiration"], str)
    expiration_ms = int(channel["expiration"])
    now_ms = emulator.control("GET", "/clock").json()["now"] * 1000
    assert abs(expiration_ms - (now_ms + 604_800_000)) < 60_000  # default ttl: 7 days

    (sync,) = receiver.wait_for(1)
    h = sync["headers"]
    assert h["X-Goog-Resource-State"] == "sync"
    assert h["X-Goog-Message-Number"] == "1"
    assert h["X-Goog-Channel-ID"] == "chan-1"
    assert h["X-Goog-Channel-Token"] == "target=crm-7"
    assert h["X-Goog-Resource-ID"] == channel["resourceId"]
    assert h["X-Goog-Resource-URI"] == channel["resourceUri"]
    assert h["X-Goog-Channel-Expiration"].endswith(" GMT")
    expires = parsedate_to_datetime(h["X-Goog-Channel-Expiration"])
    assert int(expires.timestamp()) == expiration_ms // 1000
    assert sync["body"] == b""

    emulator.world.changed("events", cal)  # what events/copies.tell_listeners calls
    notes = receiver.wait_for(2)
    assert notes[1]["headers"]["X-Goog-Resource-State"] == "exists"
    assert notes[1]["headers"]["X-Goog-Message-Number"] == "2"
    # another calendar's change is not this channel's business
    emulator.account("bob@example.com")
    emulator.world.changed("events", "bob@example.com")
    time.sleep(0.2)
    assert len(receiver.received) == 2

    deliveries = _deliveries(emulator, 2)
    assert [(d["resource_state"], d["message_number"], d["status"]) for d in deliveries] == [
        ("sync", 1, 200),
        ("exists", 2, 200),
    ]


def test_same_calendar_shares_resource_id_and_no_token_header(
    emulator: Emulator, receiver: Receiver
) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    first = _watch(emulator, token, receiver.url, id="a").json()
    second = _watch(
        emulator, token, receiver.url, id="b", path=f"/calendar/v3/calendars/{ADA}/events/watch"
    ).json()
    assert first["resourceId"] == second["resourceId"]
    assert "token" not in first
    notes = receiver.wait_for(2)
    assert all("X-Goog-Channel-Token" not in n["headers"] for n in notes)


def test_message_numbers_increase_under_rapid_changes(
    emulator: Emulator, receiver: Receiver
) -> None:
    cal = emulator.account(ADA)
    _watch(emulator, emulator.token(ADA), receiver.url)
    receiver.wait_for(1)
    for _ in range(20):
        emulator.world.changed("events", cal)
    receiver.wait_for(2)
    time.sleep(0.3)  # let any coalesced follow-up arrive
    numbers = [int(n["headers"]["X-Goog-Message-Number"]) for n in receiver.received]
    assert numbers == sorted(set(numbers))
    assert numbers[0] == 1
    assert all(n["headers"]["X-Goog-Resource-State"] == "exists" for n in receiver.received[1:])


def test_calendar_list_watch_notifies_on_new_calendar(
    emulator: Emulator, receiver: Receiver
) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA, [SCOPE_CALENDAR_READONLY])
    resp = _watch(emulator, token, receiver.url, path="/calendar/v3/users/me/calendarList/watch")
    assert resp.status_code == 200, resp.text
    assert resp.json()["resourceUri"].endswith("/calendar/v3/users/me/calendarList?alt=json")
    receiver.wait_for(1)
    emulator.control("POST", f"/accounts/{ADA}/calendars", {"summary": "CRM"})
    notes = receiver.wait_for(2)
    assert notes[1]["headers"]["X-Goog-Resource-State"] == "exists"


def test_http_address_refused_without_flag(emulator: Emulator, receiver: Receiver) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    emulator.world.config.allow_http_webhooks = False
    try:
        resp = _watch(emulator, token, receiver.url)
    finally:
        emulator.world.config.allow_http_webhooks = True
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["errors"][0]["reason"] == "push.webhookUrlNotHttps"
    assert error["message"] == f"WebHook callback must be HTTPS: {receiver.url}"
    assert emulator.control("GET", "/channels").json()["items"] == []


def test_bad_requests(emulator: Emulator, receiver: Receiver) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    assert _watch(emulator, token, receiver.url).status_code == 200
    dup = _watch(emulator, token, receiver.url)
    assert dup.status_code == 400
    assert dup.json()["error"]["errors"][0]["reason"] == "channelIdNotUnique"
    assert _watch(emulator, token, receiver.url, id="x", type="email").status_code == 400
    assert _watch(emulator, token, receiver.url, id="has space").status_code == 400
    assert _watch(emulator, token, receiver.url, id="y", params={"ttl": "abc"}).status_code == 400
    other = _watch(
        emulator, token, receiver.url, id="z", path="/calendar/v3/calendars/c1/events/watch"
    )
    assert other.status_code == 404
    anonymous = emulator.http.post(
        "/calendar/v3/calendars/primary/events/watch",
        json={"id": "q", "type": "web_hook", "address": receiver.url},
    )
    assert anonymous.status_code == 401


def test_ttl_is_honoured_and_channel_expires_with_the_clock(
    emulator: Emulator, receiver: Receiver
) -> None:
    cal = emulator.account(ADA)
    resp = _watch(emulator, emulator.token(ADA), receiver.url, params={"ttl": "60"})
    channel = resp.json()
    now_ms = emulator.control("GET", "/clock").json()["now"] * 1000
    assert abs(int(channel["expiration"]) - (now_ms + 60_000)) < 5_000
    receiver.wait_for(1)
    emulator.control("POST", "/clock", {"advance_seconds": 61})
    emulator.world.changed("events", cal)
    time.sleep(0.3)
    assert len(receiver.received) == 1
    # an expired channel's id may be used again
    token = emulator.token(ADA)
    assert _watch(emulator, token, receiver.url).status_code == 200


def test_longest_ttl_is_capped(emulator: Emulator, receiver: Receiver) -> None:
    emulator.account(ADA)
    resp = _watch(emulator, emulator.token(ADA), receiver.url, params={"ttl": "99999999"})
    now_ms = emulator.control("GET", "/clock").json()["now"] * 1000
    cap = emulator.world.config.push_max_ttl_seconds * 1000
    assert int(resp.json()["expiration"]) <= now_ms + cap + 1000


def test_stop_ends_delivery(emulator: Emulator, receiver: Receiver) -> None:
    cal = emulator.account(ADA)
    token = emulator.token(ADA)
    channel = _watch(emulator, token, receiver.url).json()
    receiver.wait_for(1)
    auth = {"Authorization": f"Bearer {token}"}
    wrong = emulator.http.post(
        "/calendar/v3/channels/stop", json={"id": "chan-1", "resourceId": "nope"}, headers=auth
    )
    assert wrong.status_code == 404
    body = {"id": "chan-1", "resourceId": channel["resourceId"]}
    resp = emulator.http.post("/calendar/v3/channels/stop", json=body, headers=auth)
    assert resp.status_code == 204
    assert resp.content == b""
    emulator.world.changed("events", cal)
    time.sleep(0.3)
    assert len(receiver.received) == 1
    again = emulator.http.post("/calendar/v3/channels/stop", json=body, headers=auth)
    assert again.status_code == 404
    assert again.json()["error"]["errors"][0]["reason"] == "notFound"


def test_a_silenced_channel_delivers_nothing_but_stays_live(
    emulator: Emulator, receiver: Receiver
) -> None:
    """A channel that silently broke: Google still knows it (stop answers 204, it expires as
    before) but no notification arrives; a new channel on the same calendar delivers."""
    cal = emulator.account(ADA)
    token = emulator.token(ADA)
    channel = _watch(emulator, token, receiver.url).json()
    receiver.wait_for(1)
    silenced = emulator.control("POST", "/channels/chan-1/silence", {"silent": True}).json()
    assert silenced["silent"] is True
    missing = emulator.http.post("/emulator/v1/channels/nope/silence", json={})
    assert missing.status_code == 404
    emulator.world.changed("events", cal)
    time.sleep(0.3)
    assert len(receiver.received) == 1  # the sync message only
    _watch(emulator, token, receiver.url, id="chan-2")
    emulator.world.changed("events", cal)
    got = receiver.wait_for(3)
    assert {r["headers"]["X-Goog-Channel-ID"] for r in got[1:]} == {"chan-2"}
    body = {"id": "chan-1", "resourceId": channel["resourceId"]}
    auth = {"Authorization": f"Bearer {token}"}
    resp = emulator.http.post("/calendar/v3/channels/stop", json=body, headers=auth)
    assert resp.status_code == 204


@pytest.mark.usefixtures("fast_retries")
def test_5xx_receiver_is_retried_with_backoff(emulator: Emulator, receiver: Receiver) -> None:
    emulator.account(ADA)
    receiver.answers.extend([503, 500])
    _watch(emulator, emulator.token(ADA), receiver.url)
    notes = receiver.wait_for(3)
    assert [n["status"] for n in notes] == [503, 500, 200]
    # the same message is retried: same number every time
    assert {n["headers"]["X-Goog-Message-Number"] for n in notes} == {"1"}
    deliveries = _deliveries(emulator, 3)
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 503), (2, 500), (3, 200)]
    assert deliveries[0]["error"] and deliveries[2]["error"] is None
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(deliveries)]
    # exponential: at least 0.05 s, then at least 0.1 s (upper bounds depend on machine load)
    assert gaps[0] >= 0.05 * 0.95 and gaps[1] >= 0.1 * 0.95


@pytest.mark.usefixtures("fast_retries")
def test_4xx_is_final_and_unreachable_gives_up(emulator: Emulator, receiver: Receiver) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    receiver.answers.append(404)
    _watch(emulator, token, receiver.url, id="four")
    receiver.wait_for(1)
    dead = Receiver()
    dead_url = dead.url
    dead.close()
    _watch(emulator, token, dead_url, id="dead")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        attempts = [d for d in _deliveries(emulator) if d["channel_id"] == "dead"]
        if len(attempts) >= 4:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    attempts = [d for d in _deliveries(emulator) if d["channel_id"] == "dead"]
    assert [d["attempt"] for d in attempts] == [1, 2, 3, 4]  # bounded by push_max_attempts
    assert all(d["status"] is None and d["error"] for d in attempts)
    four = [d for d in _deliveries(emulator, 5) if d["channel_id"] == "four"]
    assert [(d["attempt"], d["status"]) for d in four] == [(1, 404)]


def test_google_client_watch_then_insert_notifies(emulator: Emulator, receiver: Receiver) -> None:
    """The whole path with Google's client: events.watch, events.insert, an `exists` arrives."""
    emulator.account(ADA)
    service = build(
        "calendar",
        "v3",
        credentials=Credentials(emulator.token(ADA)),
        static_discovery=True,
        client_options={"api_endpoint": f"{emulator.url}/calendar/v3/"},
    )
    body = {"id": "gapi", "type": "web_hook", "address": receiver.url, "token": "t0k"}
    channel = service.events().watch(calendarId="primary", body=body).execute()
    assert channel["id"] == "gapi" and channel["token"] == "t0k"
    receiver.wait_for(1)
    event = {
        "summary": "Pushed",
        "start": {"dateTime": "2030-01-01T10:00:00Z"},
        "end": {"dateTime": "2030-01-01T11:00:00Z"},
    }
    service.events().insert(calendarId="primary", body=event).execute()
    notes = receiver.wait_for(2)
    assert notes[1]["headers"]["X-Goog-Resource-State"] == "exists"
    assert notes[1]["headers"]["X-Goog-Resource-ID"] == channel["resourceId"]
    service.channels().stop(body={"id": "gapi", "resourceId": channel["resourceId"]}).execute()
    service.events().insert(calendarId="primary", body=event).execute()
    time.sleep(0.3)
    assert len(receiver.received) == 2


@pytest.mark.parametrize("change", ["delete calendar", "remove from acl", "downgrade role"])
def test_calendar_list_watch_notifies_when_access_changes(
    emulator: Emulator, receiver: Receiver, change: str
) -> None:
    """Google tells a calendarList channel when a calendar leaves the list or its accessRole
    changes, and the change shows in the list's incremental sync."""
    bo = "bo@example.com"
    emulator.account(ADA)
    emulator.account(bo)
    owner = {"Authorization": f"Bearer {emulator.token(bo)}"}
    created = emulator.http.post("/calendar/v3/calendars", json={"summary": "Team"}, headers=owner)
    cal = created.json()["id"]
    acl = f"/calendar/v3/calendars/{cal}/acl"
    rule = {"role": "writer", "scope": {"type": "user", "value": ADA}}
    assert emulator.http.post(acl, json=rule, headers=owner).status_code == 200
    ada = {"Authorization": f"Bearer {emulator.token(ADA)}"}
    listed = emulator.http.get("/calendar/v3/users/me/calendarList", headers=ada).json()
    assert {c["id"]: c["accessRole"] for c in listed["items"]}[cal] == "writer"
    path = "/calendar/v3/users/me/calendarList/watch"
    assert _watch(emulator, ada["Authorization"][7:], receiver.url, path=path).status_code == 200
    receiver.wait_for(1)
    if change == "delete calendar":
        resp = emulator.http.delete(f"/calendar/v3/calendars/{cal}", headers=owner)
    elif change == "remove from acl":
        resp = emulator.http.delete(f"{acl}/user:{ADA}", headers=owner)
    else:
        resp = emulator.http.patch(f"{acl}/user:{ADA}", json={"role": "reader"}, headers=owner)
    assert resp.status_code in (200, 204), resp.text
    notes = receiver.wait_for(2)
    assert notes[1]["headers"]["X-Goog-Resource-State"] == "exists"
    since = {"syncToken": listed["nextSyncToken"]}
    changed = emulator.http.get("/calendar/v3/users/me/calendarList", params=since, headers=ada)
    (entry,) = [c for c in changed.json()["items"] if c["id"] == cal]
    if change == "downgrade role":
        assert entry["accessRole"] == "reader"
    else:
        assert entry["deleted"] is True
