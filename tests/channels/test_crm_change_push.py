"""A CRM change's run does not list Google first while the calendar's channel is trusted and
has announced nothing (sync/engine.py `_reads_google`): the change reaches Google in one
request, and what Google changed meanwhile is still merged, never overwritten — by If-Match
and the 412's re-read, or by the run its notification owes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from calsync import clock
from calsync.jobs.port import Reason
from calsync.store import bindings, connections
from calsync.store.models import CalendarBinding, SyncIssue
from calsync.store.statuses import BindingStage
from calsync.sync.channels.calendar_list import GONE_MESSAGE
from calsync.sync.channels.service import Channels
from calsync.sync.engine import RunResult, sync_binding
from calsync.sync.errors import Outcome

from .conftest import Served
from .test_echo import dies_after_google_write, last_seq
from .test_evidence import _connected

EMAIL = "pusher@example.com"


def requests_after(served: Served, seq: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = served.emu.control("GET", f"/requests?after={seq}").json()[
        "items"
    ]
    return [r for r in items if r["account"] == EMAIL]


def kinds(log: list[dict[str, Any]]) -> list[str]:
    """Each request in the order Google saw it: 'list', 'batch' (its parts come before it,
    as 'insert', 'patch', 'delete'), or 'get' (one event)."""
    out = []
    for r in log:
        path, method = str(r["path"]), r["method"]
        if path.startswith("/batch/"):
            out.append("batch")
        elif path.endswith("/events"):
            out.append("list" if method == "GET" else "insert")
        else:
            out.append({"GET": "get", "PATCH": "patch", "DELETE": "delete"}[method])
    return out


def writes(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The writes to events (a batch's parts; the batch itself carries no query)."""
    return [
        r
        for r in log
        if r["method"] in ("POST", "PATCH", "PUT", "DELETE") and not r["path"].startswith("/batch/")
    ]


async def sync(served: Served, binding_id: uuid.UUID, trigger: str) -> RunResult:
    result = await sync_binding(
        served.world.db, binding_id, served.services.access, trigger=trigger
    )
    assert result.ok, result
    return result


def silence(served: Served, channel_id: str) -> None:
    """Google keeps the channel's notifications to itself: a change it has not announced."""
    served.emu.control("POST", f"/channels/{channel_id}/silence", {"silent": True})


def one(events: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    (found,) = [e for e in events if e.get("summary") == summary]
    return found


async def pushed_and_echoed(served: Served, user_id: uuid.UUID, binding_id: uuid.UUID) -> str:
    """A CRM entry pushed and its echo read: synced on both sides, nothing owed."""
    activity_id = await served.activity(user_id, "Quarterly review")
    await sync(served, binding_id, "change")
    await served.wait_for(lambda: (binding_id, Reason.ECHO) in served.jobs.requests)
    await sync(served, binding_id, "echo")
    assert (await served.binding(binding_id)).sync_owed_at is None
    return activity_id


async def edited_unannounced(served: Served) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A synced entry whose place the person changed in Google, with nothing announced yet
    (the channel, still trusted, silenced): (user, binding, activity)."""
    user_id, binding_id = await _connected(served, EMAIL)
    activity_id = await pushed_and_echoed(served, user_id, binding_id)
    silence(served, (await served.binding(binding_id)).channel_id)
    event = one(served.events(EMAIL), "Quarterly review")
    with served.google(EMAIL) as g:
        resp = g.patch(f"/calendars/{EMAIL}/events/{event['id']}", json={"location": "Oslo"})
    assert resp.status_code == 200, resp.text
    return user_id, binding_id, activity_id


async def rename(served: Served, activity_id: str, subject: str) -> None:
    """The salesperson's edit through the CRM API."""
    resp = await served.call("GET", f"/api/v1/activities/{activity_id}")
    assert resp.status_code == 200, resp.text
    resp = await served.call(
        "PATCH",
        f"/api/v1/activities/{activity_id}",
        json={"subject": subject},
        headers={"If-Match": resp.headers["ETag"]},
    )
    assert resp.status_code == 200, resp.text


async def test_a_crm_change_reaches_google_in_one_request_when_google_announced_nothing(
    served: Served,
) -> None:
    user_id, binding_id = await _connected(served, EMAIL)
    await served.activity(user_id, "Made in the CRM")
    seq = last_seq(served)
    result = await sync(served, binding_id, "change")
    log = requests_after(served, seq)
    # the insert alone, in its batch: no listing before it
    assert kinds(log) == ["insert", "batch"], kinds(log)
    assert all("sendUpdates=none" in str(r["query"]) for r in writes(log))
    assert result.counts["pushed"] == 1
    # the echo's run reads the event back and writes nothing: one copy on each side, and the
    # whole CRM change cost two requests (the batch and the echo's listing), not three
    await served.wait_for(lambda: (binding_id, Reason.ECHO) in served.jobs.requests)
    echo = await sync(served, binding_id, "echo")
    log = requests_after(served, seq)
    assert kinds(log) == ["insert", "batch", "list"], kinds(log)
    assert not any(echo.counts.get(k) for k in ("created", "updated", "deleted", "pushed"))
    assert [e["summary"] for e in served.events(EMAIL)] == ["Made in the CRM"]
    assert [a["subject"] for a in await served.activities(user_id)] == ["Made in the CRM"]
    assert (await served.binding(binding_id)).sync_owed_at is None


async def test_a_notification_owed_makes_the_crm_change_read_google_first(
    served: Served,
) -> None:
    """Google announced a change the CRM's run has not read: it lists first, and the change
    is in the CRM after that run, whatever the notification's own job does later."""
    user_id, binding_id = await _connected(served, EMAIL)
    served.insert_event(EMAIL, "Made in Google")
    await served.wait_for(lambda: (binding_id, Reason.WEBHOOK) in served.jobs.requests)
    owed = (await served.binding(binding_id)).sync_owed_at
    assert owed is not None
    await served.activity(user_id, "Made in the CRM")
    seq = last_seq(served)
    await sync(served, binding_id, "change")
    assert kinds(requests_after(served, seq)) == ["list", "insert", "batch"]
    subjects = sorted(a["subject"] for a in await served.activities(user_id))
    assert subjects == ["Made in Google", "Made in the CRM"]
    # the run covered the notification: nothing owed from before it (its own write's echo
    # may be owed by now)
    after = (await served.binding(binding_id)).sync_owed_at
    assert after is None or after > owed


@pytest.mark.parametrize(
    ("channel", "reads_first"),
    [
        ("trusted", False),
        ("suspect", True),
        ("expired", True),
        ("none", True),
        pytest.param("suspect", False, marks=pytest.mark.channels(2), id="twin-trusted"),
        pytest.param("both suspect", True, marks=pytest.mark.channels(2), id="twins-suspect"),
    ],
)
async def test_without_a_trusted_channel_a_crm_change_reads_google_first(
    served: Served, channel: str, reads_first: bool
) -> None:
    """A channel caught missing a change, expired, or never made announces nothing: the
    CRM's run then lists what Google changed, as every run did before (with twins, when
    neither is trusted). A trusted one that kept a change quiet loses nothing either: the
    next run that lists reads it."""
    user_id, binding_id = await _connected(served, EMAIL)
    binding = await served.binding(binding_id)
    for channel_id in (binding.channel_id, binding.twin_channel_id):
        if channel_id:
            silence(served, channel_id)
    served.insert_event(EMAIL, "Not announced")
    now = clock.utcnow()
    changed: dict[str, Any] = {
        "trusted": {},
        "suspect": {"channel_suspect_since": now},
        "both suspect": {"channel_suspect_since": now, "twin_channel_suspect_since": now},
        "expired": {"channel_expires_at": now - timedelta(minutes=1)},
        "none": {"channel_id": None, "channel_expires_at": None},
    }[channel]
    if changed:
        async with served.world.db.session() as s:
            await s.execute(
                update(CalendarBinding).where(CalendarBinding.id == binding_id).values(**changed)
            )
            await s.commit()
    await served.activity(user_id, "Made in the CRM")
    seq = last_seq(served)
    await sync(served, binding_id, "change")
    assert ("list" in kinds(requests_after(served, seq))) is reads_first
    subjects = {a["subject"] for a in await served.activities(user_id)}
    assert ("Not announced" in subjects) is reads_first
    await sync(served, binding_id, "poll")
    subjects = {a["subject"] for a in await served.activities(user_id)}
    assert subjects == {"Not announced", "Made in the CRM"}
    assert sorted(e["summary"] for e in served.events(EMAIL)) == sorted(subjects)


async def test_a_google_edit_not_yet_announced_is_merged_by_the_crm_change(
    served: Served,
) -> None:
    """The person moves the meeting's place in Google; before Google announces it, a
    salesperson renames it in the CRM. The rename's patch carries the etag calsync last saw:
    Google answers 412, the run reads that one event, merges, and writes the rename — both
    edits on both sides, one copy, no e-mail to a guest."""
    user_id, binding_id, activity_id = await edited_unannounced(served)
    await rename(served, activity_id, "Quarterly review (moved up)")
    seq = last_seq(served)
    result = await sync(served, binding_id, "change")
    assert result.counts["refetched"] == 1
    log = requests_after(served, seq)
    assert "list" not in kinds(log)
    assert all("sendUpdates=none" in str(r["query"]) for r in writes(log))
    (after,) = served.events(EMAIL)
    assert (after["summary"], after["location"]) == ("Quarterly review (moved up)", "Oslo")
    (row,) = await served.activities(user_id)
    assert (row["subject"], row["location"]) == ("Quarterly review (moved up)", "Oslo")
    mails = served.emu.control("GET", "/emails").json()["items"]
    assert mails == []


async def test_a_crm_delete_of_an_event_edited_unannounced_in_google_keeps_the_edit(
    served: Served,
) -> None:
    """An edit beats a deletion (docs/sync.md, "The decision table"), also when the delete
    goes out before Google announced the edit: the delete's If-Match fails, the run reads the
    event, and the entry comes back in the CRM with the edit."""
    user_id, binding_id, activity_id = await edited_unannounced(served)
    resp = await served.call("DELETE", f"/api/v1/activities/{activity_id}")
    assert resp.status_code in (200, 204), resp.text
    seq = last_seq(served)
    result = await sync(served, binding_id, "change")
    assert result.counts["refetched"] == 1 and "list" not in kinds(requests_after(served, seq))
    (after,) = served.events(EMAIL)
    assert after["status"] == "confirmed" and after["location"] == "Oslo"
    (row,) = await served.activities(user_id)
    assert (row["subject"], row["location"]) == ("Quarterly review", "Oslo")


async def test_deletions_confirmed_after_the_guard_are_applied_by_a_crm_changes_run(
    served: Served,
) -> None:
    """The mass-delete guard paused the calendar and the user confirmed the deletions it held
    back: the confirmation holds until a run has listed Google and applied them. A CRM
    change's run that comes first lists too: one that skipped the listing would clear the
    confirmation without applying it, and the next listing would pause the calendar again."""
    user_id, binding_id = await _connected(served, EMAIL)
    for i in range(24):
        await served.activity(user_id, f"Customer visit {i}", days=1 + i % 5)
    await sync(served, binding_id, "change")
    await served.wait_for(lambda: (binding_id, Reason.ECHO) in served.jobs.requests)
    await sync(served, binding_id, "echo")
    silence(served, (await served.binding(binding_id)).channel_id)
    with served.google(EMAIL) as g:
        for event in served.events(EMAIL):
            assert g.delete(f"/calendars/{EMAIL}/events/{event['id']}").status_code == 204
    paused = await sync_binding(served.world.db, binding_id, served.services.access, trigger="poll")
    assert paused.outcome is Outcome.PAUSED
    assert (await served.binding(binding_id)).sync_owed_at is None  # Google announced nothing
    async with served.world.db.session() as s:
        await bindings.resume(s, binding_id, confirm_deletions=True)
        await s.commit()
    await served.activity(user_id, "Made after the resume")
    result = await sync(served, binding_id, "change")
    assert result.counts["deleted"] == 24
    assert [a["subject"] for a in await served.activities(user_id)] == ["Made after the resume"]
    assert [e["summary"] for e in served.events(EMAIL)] == ["Made after the resume"]
    after = await sync(served, binding_id, "poll")
    assert after.outcome is Outcome.OK
    binding = await served.binding(binding_id)
    assert binding.stage != "paused" and not binding.deletions_confirmed


async def test_a_crm_change_to_a_deleted_calendar_disables_it_instead_of_parking_entries(
    served: Served,
) -> None:
    """Google answers a write with 404 when the calendar is gone. A run that listed first
    learnt that from the listing and disabled the calendar with its message; one that did
    not list lists now, and ends the same way — never an issue parked on each entry."""
    served.emu.account(EMAIL)
    team = served.emu.control("POST", f"/accounts/{EMAIL}/calendars", {"summary": "Team"})
    team_id = team.json()["id"]
    user_id, _, _ = await served.connected(EMAIL)
    resp = await served.call(
        "PATCH",
        f"/api/v1/users/{user_id}/google/settings",
        json={"import_calendar_ids": [team_id], "export_calendar_id": team_id},
    )
    assert resp.status_code == 200, resp.text
    async with served.world.db.session() as s:
        connection = await connections.for_user(s, user_id)
        assert connection is not None
        (binding,) = [
            b
            for b in await bindings.for_connection(s, connection.id)
            if b.google_calendar_id == team_id
        ]
    binding_id = binding.id
    await sync(served, binding_id, "initial")
    activity_id = await pushed_and_echoed(served, user_id, binding_id)
    # Google's calendarList channel would tell first; without one only a request does
    service = Channels(served.world.db, served.services.access, served.services.settings)
    assert await service.unwatch_list(binding.connection_id)
    silence(served, (await served.binding(binding_id)).channel_id)
    served.emu.control("DELETE", f"/calendars/{team_id}")
    await rename(served, activity_id, "Quarterly review (moved up)")
    await served.activity(user_id, "Made after the deletion")
    result = await sync_binding(
        served.world.db, binding_id, served.services.access, trigger="change"
    )
    assert result.outcome is Outcome.DISABLED, result
    assert result.error is not None and result.error.code == "calsync.calendar_gone"
    after = await served.binding(binding_id)
    assert after.stage == BindingStage.DISABLED and after.paused_reason == GONE_MESSAGE
    async with served.world.db.session() as s:
        open_issues = (
            await s.execute(
                select(SyncIssue).where(
                    SyncIssue.binding_id == binding_id, SyncIssue.resolved_at.is_(None)
                )
            )
        ).all()
    assert open_issues == []
    subjects = sorted(a["subject"] for a in await served.activities(user_id))
    assert subjects == ["Made after the deletion", "Quarterly review (moved up)"]


async def test_a_crash_right_after_googles_answer_leaves_one_copy_each(served: Served) -> None:
    """The run that did not list Google dies right after Google took its writes, before it
    stored anything. The next CRM change's run (again without a listing) writes them again:
    the insert answers 409 and is adopted, the rename's patch finds the version moved (412)
    and reads it back — one event per entry in Google, one entry per event in the CRM, the
    rename on both sides, no e-mail to a guest."""
    user_id, binding_id = await _connected(served, EMAIL)
    activity_id = await pushed_and_echoed(served, user_id, binding_id)
    await rename(served, activity_id, "Quarterly review (moved up)")
    await served.activity(user_id, "Made before the crash")
    # the writes' echo not delivered yet when the process comes back: nothing owed, so the
    # next run does not list either (with the echo in, it lists and reads them back)
    silence(served, (await served.binding(binding_id)).channel_id)

    seq = last_seq(served)
    await dies_after_google_write(served, binding_id)
    assert "list" not in kinds(requests_after(served, seq))
    assert sorted(e["summary"] for e in served.events(EMAIL)) == [
        "Made before the crash",
        "Quarterly review (moved up)",
    ]
    restart = last_seq(served)
    result = await sync(served, binding_id, "change")
    assert result.counts["adopted"] == 1 and result.counts["refetched"] == 1
    assert "list" not in kinds(requests_after(served, restart))
    assert sorted(e["summary"] for e in served.events(EMAIL)) == [
        "Made before the crash",
        "Quarterly review (moved up)",
    ]
    subjects = sorted(a["subject"] for a in await served.activities(user_id))
    assert subjects == ["Made before the crash", "Quarterly review (moved up)"]
    # settled: the next run has nothing to write
    again = await sync(served, binding_id, "change")
    assert not again.counts.get("pushed") and not again.counts.get("refetched")
    assert all("sendUpdates=none" in str(r["query"]) for r in writes(requests_after(served, seq)))
    assert served.emu.control("GET", "/emails").json()["items"] == []
