"""CalendarClient against the emulator over HTTP: the calls the sync engine needs."""

from __future__ import annotations

import datetime as dt
import uuid
from base64 import b32hexencode
from typing import Any

import pytest

from calsync.google import calls, errors
from calsync.google.auth import StaticToken
from calsync.google.calendar import CalendarClient
from calsync.google.models import Event, EventDateTime, ExtendedProperties
from calsync.google.retry import RetryPolicy
from calsync.settings import Settings
from tests.conftest import Emulator

from .conftest import ControlTokens, log_mark, log_since

UTC = dt.UTC


def google_id() -> str:
    """The engine's id style: base32hex of a UUID, lower case, no padding."""
    return b32hexencode(uuid.uuid4().bytes).decode().rstrip("=").lower()


def meeting(summary: str = "Meeting", day: int = 1, hour: int = 10, **extra: Any) -> Event:
    start = dt.datetime(2031, 3, day, hour, tzinfo=UTC)
    return Event(
        summary=summary,
        start=EventDateTime(date_time=start, time_zone="Europe/Oslo"),
        end=EventDateTime(date_time=start + dt.timedelta(hours=1), time_zone="Europe/Oslo"),
        **extra,
    )


async def test_calendar_list_and_get(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    emulator.control("POST", "/accounts/alice@example.com/calendars", {"summary": "CRM"})
    entries = await client.calendars()
    by_summary = {e.summary: e for e in entries}
    assert by_summary["alice@example.com"].primary
    assert by_summary["CRM"].writable
    crm = await client.get_calendar(by_summary["CRM"].id)
    assert crm.summary == "CRM"
    pages = client.calendar_list(max_results=1)
    seen = [page async for page in pages]
    assert len(seen) == 2 and pages.next_sync_token


async def test_event_lifecycle_with_client_id_etag_and_send_updates(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    event_id = google_id()
    ev = meeting(
        "Kickoff",
        id=event_id,
        description="agenda",
        extended_properties=ExtendedProperties(private={"calsyncActivityId": "a-1"}),
        attendees=[{"email": "guest@example.net"}],
    )
    mark = log_mark(emulator)
    created = await client.insert_event(alice, ev)
    assert created.id == event_id and created.etag
    assert created.extended_properties and created.extended_properties.private == {
        "calsyncActivityId": "a-1"
    }
    assert created.start and created.start.time_zone == "Europe/Oslo"
    got = await client.get_event(alice, event_id)
    assert got.summary == "Kickoff" and got.etag == created.etag

    # patch sends only the given fields, with If-Match
    patched = await client.patch_event(
        alice, event_id, Event(summary="Kickoff v2"), if_match=created.etag
    )
    assert patched.summary == "Kickoff v2" and patched.description == "agenda"
    assert patched.etag != created.etag
    with pytest.raises(errors.PreconditionFailed) as stale:
        await client.patch_event(alice, event_id, {"location": "Oslo"}, if_match=created.etag)
    assert stale.value.code == "google.precondition_failed"
    assert stale.value.status == 412 and stale.value.remedy

    # sendUpdates rides on every write
    await client.delete_event(alice, event_id, send_updates="none")
    queries = [r["query"] for r in log_since(emulator, mark) if r["method"] != "GET"]
    assert queries and all("sendUpdates=none" in q for q in queries)
    assert not emulator.control("GET", "/emails").json()["items"]

    with pytest.raises(errors.Duplicate) as dup:
        await client.insert_event(alice, meeting(id=event_id))
    assert dup.value.code == "google.duplicate"
    with pytest.raises(errors.Deleted) as gone:
        await client.delete_event(alice, event_id)
    assert gone.value.code == "google.deleted"
    with pytest.raises(errors.NotFound) as missing:
        await client.get_event(alice, "nosuchevent0000")
    assert missing.value.code == "google.not_found"
    assert "Choose another calendar" in missing.value.remedy


async def test_full_then_incremental_listing(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    for day in range(1, 8):
        await client.insert_event(alice, meeting(f"m{day}", day=day))
    pages = client.list_events(
        alice,
        time_min=dt.datetime(2031, 1, 1, tzinfo=UTC),
        show_deleted=True,
        max_results=3,
    )
    items: list[Event] = []
    async for page in pages:
        # the sync token only shows up with the last page
        assert (pages.next_sync_token is None) == bool(page.next_page_token)
        items.extend(page.items)
    assert pages.pages == 3
    assert sorted(e.summary or "" for e in items) == [f"m{d}" for d in range(1, 8)]
    token = pages.next_sync_token
    assert token

    victim = items[0]
    assert victim.id
    await client.patch_event(alice, victim.id, {"summary": "changed"})
    inc = client.list_events(alice, sync_token=token)
    changed = [e async for page in inc for e in page.items]
    assert [e.summary for e in changed] == ["changed"]
    assert inc.next_sync_token and inc.next_sync_token != token

    emulator.control("POST", f"/calendars/{alice}/expire-sync-tokens")
    with pytest.raises(errors.SyncTokenExpired) as exc:
        async for _ in client.list_events(alice, sync_token=inc.next_sync_token):
            pass
    assert exc.value.code == "google.sync_token_expired"
    assert exc.value.status == 410 and exc.value.reason == "fullSyncRequired"
    assert "full sync" in exc.value.remedy

    with pytest.raises(ValueError):
        client.list_events(alice, sync_token="x", time_min=dt.datetime(2031, 1, 1, tzinfo=UTC))


async def test_recurring_instances_and_move(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    other = emulator.control(
        "POST", "/accounts/alice@example.com/calendars", {"summary": "Other"}
    ).json()["id"]
    series = await client.insert_event(
        alice, meeting("Weekly", recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"])
    )
    assert series.id
    inst = [e async for page in client.instances(alice, series.id) for e in page.items]
    assert len(inst) == 4
    assert all(e.recurring_event_id == series.id for e in inst)
    moved = await client.move_event(alice, series.id, other)
    assert moved.id == series.id
    assert (await client.get_event(other, series.id)).summary == "Weekly"


async def test_watch_and_stop_channel(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    channel = await client.watch_events(
        alice,
        channel_id=str(uuid.uuid4()),
        address="https://crm.example.com/webhooks/google",
        token="secret-channel-token",
        ttl_seconds=3600,
    )
    assert channel.resource_id and channel.expiration
    assert channel.expiration > dt.datetime.now(UTC).timestamp() * 1000
    assert channel.id
    await client.stop_channel(channel.id, channel.resource_id)
    listed = emulator.control("GET", "/channels").json()["items"]
    assert [c["stopped"] for c in listed if c["id"] == channel.id] == [True]


async def test_401_triggers_exactly_one_refresh(
    emulator: Emulator, settings: Settings, retry: RetryPolicy, alice: str
) -> None:
    tokens = ControlTokens(emulator, "alice@example.com")
    async with CalendarClient(tokens, settings=settings, retry=retry) as client:
        await client.calendars()
        assert tokens.refresh_count == 1  # the first token
        emulator.control("POST", "/tokens/expire", {"email": "alice@example.com"})
        mark = log_mark(emulator)
        await client.calendars()
        assert tokens.refresh_count == 2
        statuses = [r["status"] for r in log_since(emulator, mark)]
        assert statuses == [401, 200]
        # a 401 that survives the refresh is raised, after exactly one more refresh
        emulator.control(
            "POST", "/faults", {"path_regex": "calendarList", "status": 401, "count": 5}
        )
        with pytest.raises(errors.TokenExpired) as exc:
            await client.calendars()
        assert tokens.refresh_count == 3
        assert exc.value.code == "google.token_expired" and exc.value.remedy


async def test_missing_scope(
    emulator: Emulator, settings: Settings, retry: RetryPolicy, alice: str
) -> None:
    readonly = ControlTokens(
        emulator, "alice@example.com", ["https://www.googleapis.com/auth/calendar.readonly"]
    )
    async with CalendarClient(readonly, settings=settings, retry=retry) as client:
        assert await client.calendars()
        with pytest.raises(errors.InsufficientScope) as exc:
            await client.insert_event(alice, meeting())
    err = exc.value
    assert err.code == "google.insufficient_scope" and err.needs_reauth
    assert "Reconnect Google Calendar" in err.remedy
    assert err.status == 403 and err.reason == "insufficientPermissions"


async def test_forbidden_on_a_read_only_calendar(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    emulator.account("bob@example.com")
    bobs = emulator.control(
        "POST", "/accounts/bob@example.com/calendars", {"summary": "Bob's"}
    ).json()["id"]
    emulator.control(
        "POST", f"/calendars/{bobs}/acl", {"email": "alice@example.com", "role": "reader"}
    )
    with pytest.raises(errors.Forbidden) as exc:
        await client.insert_event(bobs, meeting())
    assert exc.value.code == "google.forbidden" and exc.value.status == 403


async def test_bad_request_names_googles_complaint(client: CalendarClient, alice: str) -> None:
    start = dt.datetime(2031, 3, 1, 10, tzinfo=UTC)
    bad = Event(
        summary="backwards",
        start=EventDateTime(date_time=start),
        end=EventDateTime(date_time=start - dt.timedelta(hours=1)),
    )
    with pytest.raises(errors.BadRequest) as exc:
        await client.insert_event(alice, bad)
    assert exc.value.code == "google.bad_request" and exc.value.status == 400
    assert exc.value.detail and exc.value.detail in exc.value.message


async def test_unknown_fields_round_trip(client: CalendarClient, alice: str) -> None:
    created = await client.insert_event(alice, meeting(colorId="5"))
    assert created.color_id == "5"
    assert created.model_extra is not None and "kind" not in created.model_extra
    raw = created.model_dump(by_alias=True, exclude_unset=True)
    assert raw["kind"] == "calendar#event" and raw["iCalUID"]


def test_a_requests_query_is_encoded_as_httpx_encodes_params() -> None:
    """build_request writes the query into the URL itself (httpx would parse the URL again to
    merge `params=`): the URL sent is the one `params=` gives, lists, '+', ':', '@', '#',
    spaces and non-ASCII included."""
    client = CalendarClient(StaticToken("token"), rate_limiter=None)
    at = dt.datetime(2031, 3, 1, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    for call in (
        calls.events_list(
            "team#room@group.calendar.google.com",
            time_min=at,
            show_deleted=True,
            q="møte + lunsj & co",
            private_extended_property={"calsyncActivityId": "a b", "x": "1=2"},
            event_types=["default", "focusTime"],
            max_results=250,
        ),
        calls.events_list("alice@example.com", sync_token="CPDAlvWDx70CEPDAlvWDx70CGAU=/+"),
        calls.events_get("alice@example.com", "abc123"),
    ):
        built = client.build_request(call, "token")
        expected = client.http.build_request(
            call.method, client.api_root + call.path, params=call.params or None
        )
        assert built.url == expected.url, (built.url, expected.url)
        assert str(built.url) == str(expected.url)
        assert built.headers["authorization"] == "Bearer token"
