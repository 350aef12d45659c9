"""Twin push channels (issue 16): two `events.watch` channels on each import calendar, so one
channel that silently stops delivering hides no change — its twin announces the change within
seconds and, in the same write, makes the silent one owe an echo; past the grace the poll tick
finds it suspect and re-creates it. At no request cost while both work: one Google change is
one sync, and neither twin is suspected. Against the emulator over HTTP, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from calsync import clock
from calsync.jobs.inprocess import InProcessRunner
from calsync.jobs.port import Reason
from calsync.store.base import utcnow
from calsync.store.models import CalendarBinding
from calsync.sync.channels.kinds import EVENTS, EVENTS_TWIN
from calsync.sync.channels.service import Channels
from calsync.web.webhooks import TWIN_COALESCE_SECONDS
from tests.jobs.conftest import runs_of

from .conftest import GRACE, Served, tick
from .test_echo import calendar_calls, dies_after_google_write, last_seq
from .test_evidence import _connected

pytestmark = pytest.mark.channels(2)


async def serve_with(served: Served, runner: InProcessRunner) -> None:
    """The app's notifications go to the real runner, running (its dispatcher takes each
    request as it comes, as in production)."""
    served.app.state.jobs = runner
    await runner.start()


async def twins(served: Served, binding_id: uuid.UUID) -> tuple[str, str]:
    binding = await served.binding(binding_id)
    assert binding.channel_id and binding.twin_channel_id
    return binding.channel_id, binding.twin_channel_id


def live_channels(served: Served, calendar: str) -> list[dict[str, Any]]:
    return [
        c
        for c in served.channels()
        if not c["stopped"] and c["kind"] == "events" and c["calendar_id"] == calendar
    ]


def delivered(served: Served, channel_id: str) -> list[dict[str, Any]]:
    """The emulator's deliveries on one channel, besides its `sync` message."""
    return [
        d
        for d in served.deliveries()
        if d["channel_id"] == channel_id and d["resource_state"] != "sync"
    ]


def owes(binding: CalendarBinding) -> tuple[bool, bool]:
    """Whether each twin owes an echo: one stored and no verified notification since."""

    def owed(since: Any, heard: Any) -> bool:
        return since is not None and (heard is None or heard < since)

    return (
        owed(binding.channel_echo_since, binding.channel_heard_at),
        owed(binding.twin_channel_echo_since, binding.twin_channel_heard_at),
    )


async def webhook_runs(served: Served, binding_id: uuid.UUID) -> int:
    runs = await runs_of(served.world.db, [binding_id])
    return len([r for r in runs if r.trigger == "webhook"])


async def test_connect_watches_the_calendar_twice_and_shows_both(served: Served) -> None:
    user_id, _, binding_id = await served.connected("pair@example.com")
    first, twin = await twins(served, binding_id)
    assert first.startswith(binding_id.hex) and twin.startswith(f"twin-{binding_id.hex}")
    assert {c["id"] for c in live_channels(served, "pair@example.com")} == {first, twin}
    binding = await served.binding(binding_id)
    # staggered: they never come up for renewal together
    apart = abs(binding.channel_expires_at - binding.twin_channel_expires_at)
    assert apart > timedelta(days=2)
    (shown,) = (await served.status(user_id))["push_channels"]
    assert shown["state"] == "active" and shown["polled_every_seconds"] is None
    assert shown["twin"] == {
        "state": "active",
        "expires_at": shown["twin"]["expires_at"],
        "suspect_since": None,
    }


async def test_both_twins_deliver_one_google_change_as_one_sync_and_suspect_nothing(
    served: Served, runner: InProcessRunner
) -> None:
    user_id, binding_id = await _connected(served, "both@example.com")
    first, twin = await twins(served, binding_id)
    await serve_with(served, runner)
    before = await webhook_runs(served, binding_id)
    made = last_seq(served)
    served.insert_event("both@example.com", "Made in Google")
    await served.wait_for(lambda: delivered(served, first) and delivered(served, twin))
    await served.wait_for(lambda: runner.stats.coalesced >= 1)
    await runner.drain()
    assert await webhook_runs(served, binding_id) == before + 1  # not two
    # what the change cost calsync: one incremental list, as with one channel
    spent = [r for r in calendar_calls(served, made, "both@example.com") if r["method"] == "GET"]
    assert len(spent) == 1, spent
    assert [a["subject"] for a in await served.activities(user_id)] == ["Made in Google"]
    seq = last_seq(served)
    await tick(served, runner, GRACE.total_seconds() + 60)
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is None and binding.twin_channel_suspect_since is None
    assert owes(binding) == (False, False)
    assert (binding.channel_id, binding.twin_channel_id) == (first, twin)
    assert calendar_calls(served, seq, "both@example.com") == []  # the evidence cost nothing


async def test_the_twins_messages_a_moment_apart_still_make_one_sync(
    served: Served, runner: InProcessRunner
) -> None:
    """The second message of a change may come after the first's sync would have finished
    (here 300 ms later, sent by hand as Google would): the sync waits for it, one run."""
    user_id, binding_id = await _connected(served, "apart@example.com")
    first, twin = await twins(served, binding_id)
    for channel in (first, twin):  # the emulator's own deliveries off: the test delivers
        served.emu.control("POST", f"/channels/{channel}/silence", {})
    await serve_with(served, runner)
    binding = await served.binding(binding_id)
    messages = [
        {
            "X-Goog-Channel-ID": channel_id,
            "X-Goog-Channel-Token": token,
            "X-Goog-Resource-ID": resource_id,
            "X-Goog-Resource-State": "exists",
            "X-Goog-Message-Number": "2",
        }
        for channel_id, token, resource_id in (
            (first, binding.channel_token, binding.channel_resource_id),
            (twin, binding.twin_channel_token, binding.twin_channel_resource_id),
        )
    ]
    before = await webhook_runs(served, binding_id)
    served.insert_event("apart@example.com", "Made in Google")
    client = served.world.client
    assert (await client.post("/webhooks/google", headers=messages[0])).status_code == 200
    await asyncio.sleep(TWIN_COALESCE_SECONDS / 3)
    assert (await client.post("/webhooks/google", headers=messages[1])).status_code == 200
    await runner.drain()
    assert await webhook_runs(served, binding_id) == before + 1
    assert [a["subject"] for a in await served.activities(user_id)] == ["Made in Google"]
    binding = await served.binding(binding_id)
    assert binding.sync_owed_at is None  # nothing owed: no follow-up run later either
    assert owes(binding) == (False, False)


@pytest.mark.parametrize("silenced", ["first", "twin"])
async def test_a_silent_twin_hides_no_google_edit_and_is_replaced_after_the_grace(
    served: Served, runner: InProcessRunner, silenced: str
) -> None:
    """The edit arrives through the other twin within seconds (no poll), and the silent one is
    found by the poll tick after the grace: suspect, re-created, the old one stopped — one
    copy of the entry, nothing written to Google."""
    user_id, binding_id = await _connected(served, f"half-{silenced}@example.com")
    email = f"half-{silenced}@example.com"
    first, twin = await twins(served, binding_id)
    deaf, healthy = (first, twin) if silenced == "first" else (twin, first)
    served.emu.control("POST", f"/channels/{deaf}/silence", {"silent": True})
    await serve_with(served, runner)
    served.insert_event(email, "Edited in Google")
    await served.wait_for(lambda: delivered(served, healthy))
    await runner.drain()
    assert delivered(served, deaf) == []  # the emulator silenced that one only
    assert [a["subject"] for a in await served.activities(user_id)] == ["Edited in Google"]
    assert [r.trigger for r in await runs_of(served.world.db, [binding_id])].count("poll") == 0
    await tick(served, runner, 60)  # within the grace: nothing yet
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is None and binding.twin_channel_suspect_since is None
    seq = last_seq(served)
    await tick(served, runner, GRACE.total_seconds())
    binding = await served.binding(binding_id)
    suspect = (
        binding.channel_suspect_since if silenced == "first" else binding.twin_channel_suspect_since
    )
    trusted = (
        binding.twin_channel_suspect_since if silenced == "first" else binding.channel_suspect_since
    )
    assert suspect is not None and trusted is None
    now = (binding.channel_id, binding.twin_channel_id)
    assert healthy in now and deaf not in now  # only the silent one re-created
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[deaf]["stopped"] is True
    assert len(live_channels(served, email)) == 2
    # the other twin still delivers: the calendar is not polled at the tenant's interval
    (shown,) = (await served.status(user_id))["push_channels"]
    assert shown["polled_every_seconds"] is None
    assert (shown["suspect_since"] or shown["twin"]["suspect_since"]) is not None
    # one copy, and nothing written to Google besides the new channel's watch and the stop
    assert [a["subject"] for a in await served.activities(user_id)] == ["Edited in Google"]
    assert [e["summary"] for e in served.events(email)] == ["Edited in Google"]
    writes = [
        (r["method"], r["path"])
        for r in calendar_calls(served, seq, email)
        if r["method"] != "GET" and not r["path"].endswith(("/watch", "/channels/stop"))
    ]
    assert writes == []
    mails = [m for m in served.emu.control("GET", "/emails").json()["items"] if m["to"] == email]
    assert mails == []  # no guest e-mail either
    # the new channel announces the next change: trusted again
    (new,) = set(now) - {healthy}
    served.insert_event(email, "Announced")
    await served.wait_for(lambda: delivered(served, new))
    await runner.drain()
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is None and binding.twin_channel_suspect_since is None


async def test_every_channel_silent_is_left_to_the_polls(
    served: Served, runner: InProcessRunner
) -> None:
    """The honest limit: with both twins dead at once, nothing announces anything, nothing is
    owed — only a poll finds the edit (then both are suspect and re-created)."""
    user_id, binding_id = await _connected(served, "mute2@example.com")
    first, twin = await twins(served, binding_id)
    for channel in (first, twin):
        served.emu.control("POST", f"/channels/{channel}/silence", {"silent": True})
    await serve_with(served, runner)
    served.insert_event("mute2@example.com", "Unannounced")
    await tick(served, runner, GRACE.total_seconds() + 60)
    assert await served.activities(user_id) == []
    await runner.enqueue_sync(binding_id, Reason.POLL)
    await runner.drain()
    assert [a["subject"] for a in await served.activities(user_id)] == ["Unannounced"]
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is not None
    assert binding.twin_channel_suspect_since is not None
    assert {binding.channel_id, binding.twin_channel_id}.isdisjoint({first, twin})
    (shown,) = (await served.status(user_id))["push_channels"]
    assert shown["polled_every_seconds"] is not None


async def test_a_poll_catches_a_silent_twin_when_it_is_the_calendars_only_channel(
    served: Served, runner: InProcessRunner
) -> None:
    """The first channel is gone (its watch failed, or it was stopped) and only the twin
    watches: a poll that lists a change the twin never announced marks the twin suspect and
    makes the calendar's channels anew — as it does when the first channel is the silent one."""
    user_id, binding_id = await _connected(served, "lonetwin@example.com")
    first, twin = await twins(served, binding_id)
    channels = Channels(served.world.db, served.services.access, served.services.settings)
    assert await channels.unwatch(binding_id, EVENTS) is True
    served.emu.control("POST", f"/channels/{twin}/silence", {"silent": True})
    await serve_with(served, runner)
    served.insert_event("lonetwin@example.com", "Missed by the lone twin")
    await tick(served, runner, GRACE.total_seconds() + 60)
    assert await served.activities(user_id) == []  # nothing announced it
    await runner.enqueue_sync(binding_id, Reason.POLL)
    await runner.drain()
    assert [a["subject"] for a in await served.activities(user_id)] == ["Missed by the lone twin"]
    binding = await served.binding(binding_id)
    assert binding.twin_channel_suspect_since is not None
    assert binding.channel_suspect_since is None  # no evidence against a channel not there
    assert binding.channel_id and binding.twin_channel_id  # both made anew
    assert {binding.channel_id, binding.twin_channel_id}.isdisjoint({first, twin})
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[twin]["stopped"] is True
    assert len(live_channels(served, "lonetwin@example.com")) == 2
    (shown,) = (await served.status(user_id))["push_channels"]
    assert shown["twin"]["suspect_since"] is not None and shown["suspect_since"] is None
    # the next change is announced by the new channels: one copy, and the doubt lifted
    served.insert_event("lonetwin@example.com", "Announced")
    await served.wait_for(lambda: delivered(served, binding.twin_channel_id or ""))
    await runner.drain()
    subjects = sorted(a["subject"] for a in await served.activities(user_id))
    assert subjects == ["Announced", "Missed by the lone twin"]
    assert (await served.binding(binding_id)).twin_channel_suspect_since is None


async def test_a_crm_write_is_echoed_by_both_twins_and_suspects_nothing(
    served: Served, runner: InProcessRunner
) -> None:
    user_id, binding_id = await _connected(served, "crm2@example.com")
    first, twin = await twins(served, binding_id)
    await serve_with(served, runner)
    await served.activity(user_id, "Made in the CRM")
    await runner.enqueue_sync(binding_id, Reason.CHANGE)
    await runner.drain()
    await served.wait_for(lambda: delivered(served, first) and delivered(served, twin))
    await runner.drain()  # (the receiver's writes are committed before its 200s)
    binding = await served.binding(binding_id)
    assert binding.channel_heard_at is not None and binding.twin_channel_heard_at is not None
    await tick(served, runner, GRACE.total_seconds() + 60)
    binding = await served.binding(binding_id)
    assert binding.channel_suspect_since is None and binding.twin_channel_suspect_since is None
    assert (binding.channel_id, binding.twin_channel_id) == (first, twin)
    assert [e["summary"] for e in served.events("crm2@example.com")] == ["Made in the CRM"]


async def test_the_expectation_is_stored_on_both_twins_before_the_write(
    served: Served, runner: InProcessRunner
) -> None:
    """Stored and committed before the request leaves, on both twins, so a crash right after
    the write leaves both to be checked; a twin that stays silent is caught after restart."""
    user_id, binding_id = await _connected(served, "early2@example.com")
    first, twin = await twins(served, binding_id)
    served.emu.control("POST", f"/channels/{twin}/silence", {})
    await served.activity(user_id, "Written")
    seen: list[tuple[Any, Any]] = []

    async def before_write(*_: Any) -> None:
        # read from another session just before the request leaves: stored and committed. (Not
        # after Google's answer: the first channel's echo may have arrived by then and been
        # answered, which sets its expectation back to NULL — a race the test lost 1 run in 10.)
        async with served.world.db.session() as s:
            row = (
                await s.execute(
                    select(
                        CalendarBinding.channel_echo_since, CalendarBinding.twin_channel_echo_since
                    ).where(CalendarBinding.id == binding_id)
                )
            ).one()
            seen.append(tuple(row))
            await s.commit()

    await dies_after_google_write(served, binding_id, before_write=before_write)
    assert seen and None not in seen[0]
    await served.wait_for(lambda: delivered(served, first))
    await tick(served, runner, GRACE.total_seconds() + 1)  # after the restart: still checked
    binding = await served.binding(binding_id)
    assert binding.twin_channel_suspect_since is not None
    assert binding.channel_suspect_since is None and binding.channel_id == first


async def test_twins_renew_apart_and_each_replacement_stops_its_old_channel(
    served: Served,
) -> None:
    _, _, binding_id = await served.connected("renew2@example.com")
    first, twin = await twins(served, binding_id)
    binding = await served.binding(binding_id)
    earlier = min(binding.channel_expires_at, binding.twin_channel_expires_at)
    db, access, settings = served.world.db, served.services.access, served.services.settings
    service = Channels(db, access, settings)
    # just inside the renewal margin of the earlier one only
    done = await service.renew_due(now=earlier - timedelta(hours=12))
    assert done.watched + done.twins_watched == 1
    after = await served.binding(binding_id)
    renewed = {after.channel_id, after.twin_channel_id} - {first, twin}
    kept = {after.channel_id, after.twin_channel_id} & {first, twin}
    assert len(renewed) == 1 and len(kept) == 1
    by_id = {c["id"]: c for c in served.channels()}
    assert all(by_id[c]["stopped"] for c in {first, twin} - kept)
    assert len(live_channels(served, "renew2@example.com")) == 2


async def test_disconnect_and_sync_off_stop_both_twins(served: Served) -> None:
    user_id, _, binding_id = await served.connected("off2@example.com")
    await twins(served, binding_id)
    settings = f"/api/v1/users/{user_id}/google/settings"
    resp = await served.call("PATCH", settings, json={"enabled": False})
    assert resp.status_code == 200, resp.text
    assert live_channels(served, "off2@example.com") == []
    binding = await served.binding(binding_id)
    assert binding.channel_id is None and binding.twin_channel_id is None
    resp = await served.call("PATCH", settings, json={"enabled": True})
    assert resp.status_code == 200, resp.text
    assert len(live_channels(served, "off2@example.com")) == 2
    resp = await served.call("DELETE", f"/api/v1/users/{user_id}/google")
    assert resp.status_code in (200, 204), resp.text
    assert live_channels(served, "off2@example.com") == []


async def test_one_channel_a_calendar_stops_the_twins_and_two_makes_them_again(
    served: Served, runner: InProcessRunner
) -> None:
    """CALSYNC_PUSH_CHANNELS_PER_CALENDAR 2 -> 1: the renewal tick stops every twin at Google,
    the first keeps delivering (no change lost, one copy each); 1 -> 2 makes them again."""
    user_id, binding_id = await _connected(served, "one@example.com")
    first, twin = await twins(served, binding_id)
    db, access = served.world.db, served.services.access
    one = served.services.settings.model_copy(update={"push_channels_per_calendar": 1})
    done = await Channels(db, access, one).renew_due()
    # (every twin in the database: other tests' bindings may share it)
    assert done.twins_stopped >= 1 and (done.twins_watched, done.watched) == (0, 0)
    assert [c["id"] for c in live_channels(served, "one@example.com")] == [first]
    binding = await served.binding(binding_id)
    assert binding.channel_id == first and binding.twin_channel_id is None
    assert not EVENTS_TWIN.enabled(one)
    await serve_with(served, runner)
    served.insert_event("one@example.com", "After the switch")
    await served.wait_for(lambda: delivered(served, first))
    await runner.drain()
    assert [a["subject"] for a in await served.activities(user_id)] == ["After the switch"]
    two = served.services.settings
    done = await Channels(db, access, two).renew_due()
    assert done.twins_watched >= 1 and done.watched == 0
    after = await served.binding(binding_id)
    assert after.channel_id == first and after.twin_channel_id not in (None, twin)
    assert len(live_channels(served, "one@example.com")) == 2
    assert [e["summary"] for e in served.events("one@example.com")] == ["After the switch"]


async def test_a_twin_heard_lately_owes_no_echo_for_the_others_message(served: Served) -> None:
    """The cross-evidence's slack, in the receiver's one write: a twin heard from within a
    minute before the other's notification owes nothing; one silent longer owes the echo."""
    _, binding_id = await _connected(served, "slack@example.com")
    first, twin = await twins(served, binding_id)
    served.insert_event("slack@example.com", "Both tell")
    await served.wait_for(lambda: delivered(served, first) and delivered(served, twin))
    binding = await served.binding(binding_id)
    assert owes(binding) == (False, False)
    served.emu.control("POST", f"/channels/{first}/silence", {})
    served.emu.control("POST", "/clock", {"advance_seconds": 120})
    clock.advance(120)
    served.insert_event("slack@example.com", "Only the twin tells")
    await served.wait_for(lambda: len(delivered(served, twin)) == 2)
    binding = await served.binding(binding_id)
    assert owes(binding) == (True, False)
    assert binding.channel_echo_since >= utcnow() - timedelta(seconds=30)
    clock.reset()


async def test_a_calendar_no_longer_imported_has_both_twins_stopped(served: Served) -> None:
    user_id, _, binding_id = await served.connected("unbind2@example.com")
    first, twin = await twins(served, binding_id)
    resp = await served.call(
        "PATCH",
        f"/api/v1/users/{user_id}/google/settings",
        json={"import_calendar_ids": [], "export_calendar_id": "unbind2@example.com"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["push_channels"] == []
    binding = await served.binding(binding_id)
    assert binding.channel_id is None and binding.twin_channel_id is None
    by_id = {c["id"]: c for c in served.channels()}
    assert by_id[first]["stopped"] is True and by_id[twin]["stopped"] is True
    assert live_channels(served, "unbind2@example.com") == []
