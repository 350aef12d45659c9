"""Google push: channels registered when import calendars are chosen, verified notifications,
forged ones refused, stale ones stopped, renewal before expiry with the emulator clock."""

from __future__ import annotations

from datetime import timedelta

from calsync.jobs.port import Reason
from calsync.store.base import utcnow
from calsync.sync.channels.service import renew_due_channels
from tests.channels.conftest import Served

DAY = 86_400


async def test_connect_watches_the_import_calendar(served: Served) -> None:
    user_id, _, binding_id = await served.connected("ada@example.com")
    binding = await served.binding(binding_id)
    assert binding.channel_id and binding.channel_id.startswith(binding_id.hex)
    assert binding.channel_token and binding.channel_resource_id
    live = [c for c in served.channels() if not c["stopped"] and c["kind"] == "events"]
    assert [c["id"] for c in live] == [binding.channel_id]
    assert live[0]["address"] == served.url + "/webhooks/google"
    assert live[0]["token"] == binding.channel_token
    status = await served.status(user_id)
    assert status["push_channels"] == [
        {
            "calendar_id": "ada@example.com",
            "state": "active",
            "expires_at": status["push_channels"][0]["expires_at"],
            "suspect_since": None,  # trusted: no poll found it silent
            "polled_every_seconds": None,
            "twin": None,  # CALSYNC_PUSH_CHANNELS_PER_CALENDAR=1 here (test_twins.py: 2)
        }
    ]
    # the `sync` messages (events and calendarList) arrived, answered 200 without a sync
    await served.wait_for(lambda: len(served.deliveries()) == 2)
    assert [(d["resource_state"], d["status"]) for d in served.deliveries()] == [("sync", 200)] * 2
    assert served.jobs.requests == []


async def test_notification_after_insert_enqueues_one_sync_and_imports(served: Served) -> None:
    served.jobs.run = True
    user_id, _, binding_id = await served.connected("bo@example.com")
    await served.wait_for(lambda: served.deliveries())
    served.insert_event("bo@example.com", "Quarterly review")
    await served.wait_for(lambda: served.jobs.requests)
    await served.wait_for(lambda: served.jobs.synced == 1)
    assert served.jobs.requests == [(binding_id, Reason.WEBHOOK)]
    exists = [d for d in served.deliveries() if d["resource_state"] == "exists"]
    assert [d["status"] for d in exists] == [200]
    subjects = [a["subject"] for a in await served.activities(user_id)]
    assert subjects == ["Quarterly review"]


async def test_forged_notifications_change_nothing(served: Served) -> None:
    _, _, binding_id = await served.connected("cy@example.com")
    binding = await served.binding(binding_id)
    good = {
        "X-Goog-Channel-ID": binding.channel_id,
        "X-Goog-Channel-Token": binding.channel_token,
        "X-Goog-Resource-ID": binding.channel_resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "7",
    }
    client = served.world.client
    cases = {
        "wrong token": ({**good, "X-Goog-Channel-Token": "guess"}, 403),
        "no token": ({k: v for k, v in good.items() if k != "X-Goog-Channel-Token"}, 403),
        "wrong resource": ({**good, "X-Goog-Resource-ID": "other-resource"}, 403),
        "unknown channel": ({**good, "X-Goog-Channel-ID": "not-ours"}, 200),
        "no headers": ({}, 400),
    }
    for name, (headers, status) in cases.items():
        resp = await client.post("/webhooks/google", headers=headers)
        assert resp.status_code == status, name
    assert served.jobs.requests == []
    after = await served.binding(binding_id)
    assert (after.channel_id, after.sync_token, after.last_sync_at) == (
        binding.channel_id,
        binding.sync_token,
        binding.last_sync_at,
    )
    # the genuine headers are accepted; a `sync` message is not a change
    resp = await client.post("/webhooks/google", headers={**good, "X-Goog-Resource-State": "sync"})
    assert resp.status_code == 200 and served.jobs.requests == []
    resp = await client.post("/webhooks/google", headers=good)
    assert resp.status_code == 200
    assert served.jobs.requests == [(binding_id, Reason.WEBHOOK)]


async def test_forged_token_is_logged_without_the_token(served: Served, caplog: object) -> None:
    import logging

    _, _, binding_id = await served.connected("di@example.com")
    binding = await served.binding(binding_id)
    with caplog.at_level(logging.WARNING):  # type: ignore[attr-defined]
        resp = await served.world.client.post(
            "/webhooks/google",
            headers={
                "X-Goog-Channel-ID": binding.channel_id,
                "X-Goog-Channel-Token": "forged-token-value",
                "X-Goog-Resource-ID": binding.channel_resource_id,
                "X-Goog-Resource-State": "exists",
            },
        )
    assert resp.status_code == 403
    text = caplog.text  # type: ignore[attr-defined]
    records = [r for r in caplog.records if r.getMessage() == "push notification refused"]  # type: ignore[attr-defined]
    assert records and getattr(records[0], "reason", None) == "token"
    assert "forged-token-value" not in text and binding.channel_token not in text


async def test_renewal_before_expiry_with_the_emulator_clock(served: Served) -> None:
    user_id, _, binding_id = await served.connected("ed@example.com")
    old = await served.binding(binding_id)
    # a day in: nothing is due (7-day channel, renewed when under 1.4 days are left)
    served.emu.control("POST", "/clock", {"advance_seconds": DAY})
    done = await renew_due_channels(
        served.world.db,
        served.services.access,
        served.services.settings,
        now=utcnow() + timedelta(days=1),
    )
    assert done.watched == 0
    assert (await served.binding(binding_id)).channel_id == old.channel_id
    # 6 days in: renewal is due, before Google's expiry
    served.emu.control("POST", "/clock", {"advance_seconds": 5 * DAY})
    later = utcnow() + timedelta(days=6)
    state = await served.status(user_id)
    assert state["push_channels"][0]["state"] == "active"  # our clock has not moved
    done = await renew_due_channels(
        served.world.db, served.services.access, served.services.settings, now=later
    )
    assert done.watched == 1
    new = await served.binding(binding_id)
    assert new.channel_id != old.channel_id and new.channel_token != old.channel_token
    assert new.channel_expires_at > old.channel_expires_at + timedelta(days=5)
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[old.channel_id]["stopped"] is True
    assert by_id[new.channel_id]["stopped"] is False
    # a change now reaches the new channel; the old one delivers nothing
    served.insert_event("ed@example.com", "After renewal")
    await served.wait_for(lambda: served.jobs.requests)
    exists = [d for d in served.deliveries() if d["resource_state"] == "exists"]
    assert {d["channel_id"] for d in exists} == {new.channel_id}


async def test_stale_channel_notification_stops_it(served: Served, monkeypatch: object) -> None:
    from calsync.web import webhooks

    monkeypatch.setattr(webhooks, "STALE_GRACE_SECONDS", 0.05)  # type: ignore[attr-defined]
    _, _, binding_id = await served.connected("fa@example.com")
    old = await served.binding(binding_id)
    # replaced by a renewal whose stop of the old channel was lost
    from calsync.sync.channels.service import Channels

    service = Channels(served.world.db, served.services.access, served.services.settings)
    original = service.stop_at_google

    async def lose(*_: object) -> bool:
        return False

    service.stop_at_google = lose  # type: ignore[method-assign]
    assert await service.watch(binding_id)
    service.stop_at_google = original  # type: ignore[method-assign]
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[old.channel_id]["stopped"] is False
    resp = await served.world.client.post(
        "/webhooks/google",
        headers={
            "X-Goog-Channel-ID": old.channel_id,
            "X-Goog-Channel-Token": old.channel_token,
            "X-Goog-Resource-ID": old.channel_resource_id,
            "X-Goog-Resource-State": "exists",
        },
    )
    assert resp.status_code == 200
    await served.services.drain()
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[old.channel_id]["stopped"] is True
    assert served.jobs.requests == []


async def test_settings_stop_channels_of_calendars_no_longer_imported(served: Served) -> None:
    user_id, _, binding_id = await served.connected("gu@example.com")
    old = await served.binding(binding_id)
    resp = await served.call(
        "PATCH",
        f"/api/v1/users/{user_id}/google/settings",
        json={"import_calendar_ids": [], "export_calendar_id": "gu@example.com"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["push_channels"] == []
    assert (await served.binding(binding_id)).channel_id is None
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[old.channel_id]["stopped"] is True
    # importing again watches again
    resp = await served.call(
        "PATCH",
        f"/api/v1/users/{user_id}/google/settings",
        json={"import_calendar_ids": ["gu@example.com"]},
    )
    assert resp.status_code == 200, resp.text
    assert [c["state"] for c in resp.json()["push_channels"]] == ["active"]
    # switching sync off stops it too
    resp = await served.call(
        "PATCH", f"/api/v1/users/{user_id}/google/settings", json={"enabled": False}
    )
    assert resp.status_code == 200, resp.text
    assert [c["state"] for c in resp.json()["push_channels"]] == ["none"]
    assert not [c for c in served.channels() if not c["stopped"]]
