"""The calendarList channel of a connection: made with the bindings, verified like a binding's
channel, and its notifications disable bindings whose calendar was deleted or unshared, or whose
export calendar lost write access — without a poll and without deleting anything in the CRM."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest

from calsync.jobs.port import Reason
from calsync.store import bindings, connections
from calsync.store.base import utcnow
from calsync.store.statuses import BindingRole, BindingStage
from calsync.sync.channels.calendar_list import GONE_MESSAGE, write_lost_message
from calsync.sync.channels.service import Channels, renew_due_channels
from calsync.sync.engine import sync_binding
from tests.channels.conftest import Served

DAY = 86_400


async def _connection(served: Served, user_id: uuid.UUID) -> Any:
    async with served.world.db.session() as s:
        return await connections.for_user(s, user_id)


async def _bindings(served: Served, user_id: uuid.UUID) -> dict[str, Any]:
    conn = await _connection(served, user_id)
    async with served.world.db.session() as s:
        return {b.google_calendar_id: b for b in await bindings.for_connection(s, conn.id)}


def _live_list_channels(served: Served) -> list[dict[str, Any]]:
    return [c for c in served.channels() if c["kind"] == "calendarList" and not c["stopped"]]


def _list_requests(served: Served) -> int:
    log = served.emu.control("GET", "/requests").json()["items"]
    return sum(1 for r in log if r["method"] == "GET" and r["path"].endswith("/calendarList"))


async def _choose(served: Served, user_id: uuid.UUID, **body: Any) -> dict[str, Any]:
    resp = await served.call("PATCH", f"/api/v1/users/{user_id}/google/settings", json=body)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def test_connect_watches_the_calendar_list(served: Served) -> None:
    user_id, _, _ = await served.connected("al@example.com")
    conn = await _connection(served, user_id)
    assert conn.list_channel_id.startswith("list-" + conn.id.hex)
    assert conn.list_channel_token and conn.list_channel_resource_id
    (live,) = _live_list_channels(served)
    assert live["id"] == conn.list_channel_id and live["token"] == conn.list_channel_token
    assert live["account"] == "al@example.com"
    status = await served.status(user_id)
    assert status["list_channel"]["state"] == "active"
    assert status["list_channel"]["expires_at"] is not None


async def test_deleted_calendar_disables_its_binding_without_a_poll(served: Served) -> None:
    served.emu.account("bea@example.com")
    team = served.emu.control("POST", "/accounts/bea@example.com/calendars", {"summary": "Team"})
    team_id = team.json()["id"]
    user_id, _, _ = await served.connected("bea@example.com")
    await _choose(served, user_id, import_calendar_ids=["bea@example.com", team_id])
    served.insert_event("bea@example.com", "Kick-off", calendar=team_id)
    resp = await served.sync(user_id)
    assert resp.status_code == 200, resp.text
    before = await served.activities(user_id)
    assert [a["subject"] for a in before] == ["Kick-off"]
    team_binding = (await _bindings(served, user_id))[team_id]
    events_channel = team_binding.channel_id
    assert events_channel
    served.jobs.requests.clear()

    served.emu.control("DELETE", f"/calendars/{team_id}")

    async def disabled() -> bool:
        return bool((await served.binding(team_binding.id)).stage == BindingStage.DISABLED)

    await served.wait_for(disabled)
    await served.services.drain()
    after = await served.binding(team_binding.id)
    assert after.paused_reason == GONE_MESSAGE
    assert "Choose another calendar in Settings → Google Calendar" in after.paused_reason
    assert after.channel_id is None
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[events_channel]["stopped"] is True
    # the primary calendar syncs on, the CRM keeps the entry, no sync was asked for
    primary = (await _bindings(served, user_id))["bea@example.com"]
    assert primary.stage != BindingStage.DISABLED and primary.channel_id
    assert await served.activities(user_id) == before
    assert served.jobs.requests == []
    status = await served.status(user_id)
    # the status names the calendar and says what to do (not "switch sync on": it is on)
    assert status["last_error"] == {
        "code": "calsync.binding_disabled_stage",
        "message": f"Team: {GONE_MESSAGE}",
        "remedy": "Choose another calendar in Settings → Google Calendar.",
    }
    assert status["list_channel"]["state"] == "active"


async def test_engine_404_and_list_check_give_the_same_message(served: Served) -> None:
    served.emu.account("cai@example.com")
    team = served.emu.control("POST", "/accounts/cai@example.com/calendars", {"summary": "Team"})
    team_id = team.json()["id"]
    user_id, _, _ = await served.connected("cai@example.com")
    await _choose(served, user_id, import_calendar_ids=[team_id])
    team_binding = (await _bindings(served, user_id))[team_id]
    # without a calendarList channel only the next sync notices (Google answers 404)
    service = Channels(served.world.db, served.services.access, served.services.settings)
    assert await service.unwatch_list(team_binding.connection_id)
    served.emu.control("DELETE", f"/calendars/{team_id}")
    await sync_binding(served.world.db, team_binding.id, served.services.access)
    assert (await served.binding(team_binding.id)).paused_reason == GONE_MESSAGE


async def test_export_calendar_write_access_lost_and_regained(served: Served) -> None:
    owner = "own@example.com"
    served.emu.account(owner)
    served.emu.account("dag@example.com")
    with served.google(owner) as g:
        shared = g.post("/calendars", json={"summary": "Sales"}).json()["id"]
        rule = {"role": "writer", "scope": {"type": "user", "value": "dag@example.com"}}
        assert g.post(f"/calendars/{shared}/acl", json=rule).status_code == 200
    user_id, _, _ = await served.connected("dag@example.com")
    await _choose(served, user_id, export_calendar_id=shared)
    export = (await _bindings(served, user_id))[shared]
    assert export.role == BindingRole.EXPORT and export.access_role == "writer"
    activity_id = await served.activity(user_id, "Demo")
    served.jobs.requests.clear()

    with served.google(owner) as g:
        resp = g.patch(f"/calendars/{shared}/acl/user:dag@example.com", json={"role": "reader"})
        assert resp.status_code == 200, resp.text

    async def disabled() -> bool:
        return bool((await served.binding(export.id)).stage == BindingStage.DISABLED)

    await served.wait_for(disabled)
    after = await served.binding(export.id)
    assert after.paused_reason == write_lost_message("Sales")
    assert after.paused_reason == (
        "calsync can no longer write to Sales: ask its owner for 'Make changes to events'."
    )
    assert after.access_role == "reader"
    assert [a["id"] for a in await served.activities(user_id)] == [activity_id]
    assert served.jobs.requests == []

    # write access back: calsync lifts its own stop and catches up at once
    with served.google(owner) as g:
        resp = g.patch(f"/calendars/{shared}/acl/user:dag@example.com", json={"role": "writer"})
        assert resp.status_code == 200, resp.text

    async def resumed() -> bool:
        return bool((await served.binding(export.id)).stage != BindingStage.DISABLED)

    await served.wait_for(resumed)
    await served.wait_for(lambda: served.jobs.requests)
    assert (await served.binding(export.id)).paused_reason is None
    assert served.jobs.requests == [(export.id, Reason.WEBHOOK)]


async def test_forged_list_notifications_change_nothing(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    user_id, _, binding_id = await served.connected("eli@example.com")
    conn = await _connection(served, user_id)
    await served.wait_for(lambda: len(served.deliveries()) == 2)
    good = {
        "X-Goog-Channel-ID": conn.list_channel_id,
        "X-Goog-Channel-Token": conn.list_channel_token,
        "X-Goog-Resource-ID": conn.list_channel_resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "1000",
    }
    listed = _list_requests(served)
    client = served.world.client
    cases = {
        "wrong token": ({**good, "X-Goog-Channel-Token": "forged-list-token"}, 403),
        "no token": ({k: v for k, v in good.items() if k != "X-Goog-Channel-Token"}, 403),
        "wrong resource": ({**good, "X-Goog-Resource-ID": "other-resource"}, 403),
        "unknown list channel": ({**good, "X-Goog-Channel-ID": f"list-{uuid.uuid4().hex}-0"}, 200),
        "a sync message": ({**good, "X-Goog-Resource-State": "sync"}, 200),
    }
    with caplog.at_level(logging.WARNING):
        for name, (headers, status) in cases.items():
            resp = await client.post("/webhooks/google", headers=headers)
            assert resp.status_code == status, name
    await served.services.drain()
    assert _list_requests(served) == listed  # no check ran
    refused = [r for r in caplog.records if r.getMessage() == "push notification refused"]
    assert [getattr(r, "reason", None) for r in refused] == ["token", "token", "resource_id"]
    assert "forged-list-token" not in caplog.text and conn.list_channel_token not in caplog.text
    assert served.jobs.requests == []
    assert (await served.binding(binding_id)).stage != BindingStage.DISABLED
    assert (await _connection(served, user_id)).list_channel_id == conn.list_channel_id
    # the genuine notification is checked (one list request), and changes nothing here
    resp = await client.post("/webhooks/google", headers=good)
    assert resp.status_code == 200
    await served.services.drain()
    assert _list_requests(served) == listed + 1
    assert served.jobs.requests == []


async def test_list_channel_renewed_before_expiry(served: Served) -> None:
    user_id, _, _ = await served.connected("fay@example.com")
    old = await _connection(served, user_id)
    served.emu.control("POST", "/clock", {"advance_seconds": DAY})
    done = await renew_due_channels(
        served.world.db,
        served.services.access,
        served.services.settings,
        now=utcnow() + timedelta(days=1),
    )
    # the database is shared with other tests: judge this connection, not the totals
    assert (await _connection(served, user_id)).list_channel_id == old.list_channel_id
    served.emu.control("POST", "/clock", {"advance_seconds": 5 * DAY})
    done = await renew_due_channels(
        served.world.db,
        served.services.access,
        served.services.settings,
        now=utcnow() + timedelta(days=6),
    )
    assert done.lists_watched >= 1
    new = await _connection(served, user_id)
    assert new.list_channel_id != old.list_channel_id
    assert new.list_channel_token != old.list_channel_token
    assert new.list_channel_expires_at > old.list_channel_expires_at + timedelta(days=5)
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[old.list_channel_id]["stopped"] is True
    assert by_id[new.list_channel_id]["stopped"] is False
    # the new channel was made before the old one was stopped (this account's requests: the
    # renewal pass also renews what other tests left in the shared database)
    log = served.emu.control("GET", "/requests").json()["items"]
    order = [
        r["path"]
        for r in log
        if r["path"].endswith(("calendarList/watch", "channels/stop"))
        and r["account"] == "fay@example.com"
    ]
    assert order[-2:] == ["/calendar/v3/users/me/calendarList/watch", "/calendar/v3/channels/stop"]


async def test_missing_list_channel_is_made_by_the_tick_and_failure_breaks_nothing(
    served: Served,
) -> None:
    config = served.emu.world.config
    config.allow_http_webhooks = False  # like an http public URL against Google
    try:
        user_id, _, _ = await served.connected("gil@example.com")
        status = await served.status(user_id)
        assert status["status"] == "connected"
        assert status["list_channel"] == {"state": "none", "expires_at": None}
        done = await renew_due_channels(
            served.world.db, served.services.access, served.services.settings
        )
        assert done.lists_failed >= 1  # this one (the shared database may hold others)
        assert (await served.status(user_id))["list_channel"]["state"] == "none"
    finally:
        config.allow_http_webhooks = True
    # a failed watch waits for its retry time; once due, the tick makes the channel
    later = utcnow() + timedelta(hours=1)
    done = await renew_due_channels(
        served.world.db, served.services.access, served.services.settings, now=later
    )
    assert done.lists_watched >= 1
    assert (await served.status(user_id))["list_channel"]["state"] == "active"
    assert len(_live_list_channels(served)) == 1


async def test_disconnect_stops_the_list_channel(served: Served) -> None:
    user_id, _, _ = await served.connected("hal@example.com")
    conn = await _connection(served, user_id)
    resp = await served.call("DELETE", f"/api/v1/users/{user_id}/google")
    assert resp.status_code == 200, resp.text
    assert resp.json()["channels_stopped"] == 2
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[conn.list_channel_id]["stopped"] is True
    assert not [c for c in served.channels() if not c["stopped"]]
    after = await _connection(served, user_id)
    assert after.list_channel_id is None
    assert (await served.status(user_id))["list_channel"]["state"] == "none"


async def test_no_binding_left_or_needs_reauth_stops_the_list_channel(served: Served) -> None:
    user_id, _, _ = await served.connected("ida@example.com")
    first = (await _connection(served, user_id)).list_channel_id
    await _choose(served, user_id, enabled=False)
    assert (await _connection(served, user_id)).list_channel_id is None
    assert {c["id"]: c for c in served.channels()}[first]["stopped"] is True
    await _choose(served, user_id, enabled=True)
    second = (await _connection(served, user_id)).list_channel_id
    assert second and second != first
    # access revoked: the connection waits for the user, the tick forgets its list channel
    served.emu.control("POST", "/accounts/ida@example.com/revoke-grants")
    served.emu.control("POST", "/tokens/expire")
    assert (await served.status(user_id))["status"] == "needs_reauth"
    done = await renew_due_channels(
        served.world.db, served.services.access, served.services.settings
    )
    assert done.lists_stopped >= 1
    assert (await _connection(served, user_id)).list_channel_id is None
    assert (await served.status(user_id))["list_channel"]["state"] == "none"
