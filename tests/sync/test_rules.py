"""A scenario per sync rule (DESIGN.md "Sync rules" 1-6, 9, 10), over HTTP against the emulator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from calsync.domain.ids import google_event_id
from calsync.store import bindings, connections, runs
from calsync.store.models import CalendarBinding, Conflict, EventLink
from calsync.sync.context import Ctx, Hooks
from calsync.sync.errors import Outcome

from .conftest import Harness, at


class Crash(BaseException):
    """The process dies: nothing after this point runs or commits."""


async def _crash(ctx: Ctx, ops: Any, results: Any) -> None:
    raise Crash


# -- rule 4: crash-safe, idempotent writes -------------------------------------------------------


@pytest.mark.parametrize("direction", ["two_way", "crm_to_google"])
async def test_crash_between_insert_and_link_leaves_exactly_one_event(
    h: Harness, direction: str
) -> None:
    async with h.db.session() as s:
        b = await bindings.get(s, h.binding_id)
        assert b is not None
        b.direction = direction
        await s.commit()
    aid = await h.activity("Kick-off", at(5, 13))
    with pytest.raises(Crash):
        await h.sync(hooks=Hooks(after_google_write=_crash))
    link = await h.link(aid)
    assert link is not None and link.state == "pending"  # stored before the insert
    assert len(await h.events()) == 1
    result = await h.sync()
    assert result.ok, result
    events = await h.events()
    assert [e.id for e in events] == [google_event_id(aid)]
    link = await h.link(aid)
    assert link is not None and link.state == "linked" and link.google_etag == events[0].etag
    if direction == "crm_to_google":
        assert result.counts["adopted"] == 1  # 409 on the retried insert → adopted
    assert len(await h.live_activities()) == 1


async def test_insert_409_adopts_the_existing_event(h: Harness) -> None:
    aid = await h.activity("Board", at(4, 15))
    # the event exists under the activity's id already (a previous run, a lost database)
    await h.person.insert_event(
        h.calendar_id,
        {
            "id": google_event_id(aid),
            "summary": "Board",
            "start": {"dateTime": at(4, 15).isoformat(), "timeZone": "Europe/Oslo"},
            "end": {"dateTime": at(4, 16).isoformat(), "timeZone": "Europe/Oslo"},
        },
    )
    async with h.db.session() as s:
        b = await bindings.get(s, h.binding_id)
        assert b is not None
        b.direction = "crm_to_google"  # no pull: the insert itself meets the event
        await s.commit()
    result = await h.sync()
    assert result.ok and result.counts["adopted"] == 1
    assert len(await h.events()) == 1
    link = await h.link(aid)
    assert link is not None and link.state == "linked"


async def test_412_rereads_and_merges(h: Harness) -> None:
    aid = await h.activity("Review", at(6, 9))
    await h.sync()
    (event,) = await h.events()
    await h.edit(aid, subject="Review (final)")

    async def concurrent_edit(ctx: Ctx) -> None:
        await h.gpatch(event.id or "", {"location": "Oslo office"})

    result = await h.sync(hooks=Hooks(after_pull=concurrent_edit))
    assert result.ok, result
    assert result.counts["refetched"] == 1
    (after,) = await h.events()
    assert after.summary == "Review (final)" and after.location == "Oslo office"
    row = await h.get(aid)
    assert row.subject == "Review (final)" and row.location == "Oslo office"


# -- rule 3: three-way merge ----------------------------------------------------------------------


async def test_title_in_crm_and_time_in_google_both_survive(h: Harness) -> None:
    aid = await h.activity("Planning", at(3, 9))
    await h.sync()
    (event,) = await h.events()
    await h.edit(aid, subject="Planning Q3")
    moved = {
        "start": {"dateTime": at(3, 14).isoformat(), "timeZone": "Europe/Oslo"},
        "end": {"dateTime": at(3, 15).isoformat(), "timeZone": "Europe/Oslo"},
    }
    await h.gpatch(event.id or "", moved)
    result = await h.sync()
    assert result.ok and result.counts.get("conflicts", 0) == 0
    row = await h.get(aid)
    assert row.subject == "Planning Q3" and row.start_local == at(3, 14)
    (after,) = await h.events()
    assert after.summary == "Planning Q3"
    assert after.start is not None and after.start.date_time is not None
    assert after.start.date_time.hour == at(3, 14).hour or after.start.time_zone == "Europe/Oslo"
    mark = h.mark()
    await h.sync()
    assert len(h.requests_since(mark)) == 1  # settled: nothing more to say


@pytest.mark.parametrize(
    ("policy", "winner"), [("latest_wins", "crm"), ("crm_wins", "crm"), ("google_wins", "google")]
)
async def test_both_sides_change_one_field_policy_decides_and_records(
    h: Harness, policy: str, winner: str
) -> None:
    async with h.db.session() as s:
        from calsync.store import tenants

        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        tenant.conflict_policy = policy
        await s.commit()
    aid = await h.activity("Call", at(2, 11))
    await h.sync()
    (event,) = await h.events()
    await h.gpatch(event.id or "", {"summary": "Call (Google)"})
    await h.edit(aid, subject="Call (CRM)")  # later than Google's edit
    result = await h.sync()
    assert result.counts["conflicts"] == 1
    expected = "Call (CRM)" if winner == "crm" else "Call (Google)"
    assert (await h.get(aid)).subject == expected
    (after,) = await h.events()
    assert after.summary == expected
    async with h.db.session() as s:
        (conflict,) = (await s.scalars(select(Conflict).where(Conflict.activity_id == aid))).all()
    assert conflict.field == "summary" and conflict.decision == winner
    assert conflict.crm_value == ["Call (CRM)"] and conflict.google_value == ["Call (Google)"]
    assert conflict.base_value == ["Call"] and conflict.policy == policy


# -- rule 1: sync tokens and 410 ------------------------------------------------------------------


async def test_410_mid_life_relinks_without_duplicates(h: Harness) -> None:
    ids = [await h.activity(f"Meeting {i}", at(i + 1, 10)) for i in range(3)]
    await h.ginsert("From Google", at(2, 16))
    await h.sync()
    assert len(await h.events()) == 4 and len(await h.live_activities()) == 4
    await h.edit(ids[0], subject="Meeting 0 (edited)")
    h.emu.control("POST", f"/calendars/{h.calendar_id}/expire-sync-tokens")
    result = await h.sync()
    assert result.ok and result.counts["full_resyncs"] == 1
    events = await h.events()
    assert len(events) == 4 and len({e.id for e in events}) == 4
    assert len(await h.live_activities()) == 4
    assert "Meeting 0 (edited)" in {e.summary for e in events}
    mark = h.mark()
    await h.sync()
    assert len(h.requests_since(mark)) == 1


async def test_lookback_window_limits_the_first_import(h: Harness) -> None:
    await h.ginsert("Long ago", at(-40, 10))
    await h.ginsert("Last week", at(-7, 10))
    await h.ginsert("Next week", at(7, 10))
    await h.sync()
    assert sorted(a.subject for a in await h.live_activities()) == ["Last week", "Next week"]


# -- rule 5: initial matching ------------------------------------------------------------------------


async def test_initial_matching_links_equal_entries_and_reports_ambiguity(h: Harness) -> None:
    # one unique pair, one ambiguous group (two CRM lunches, one Google lunch)
    await h.activity("Weekly sync", at(3, 9))
    await h.ginsert("weekly  SYNC", at(3, 9))
    await h.activity("Lunch", at(4, 12))
    await h.activity("Lunch", at(4, 12))
    await h.ginsert("Lunch", at(4, 12))
    result = await h.sync()
    assert result.outcome is Outcome.PARTIAL
    assert result.counts["linked"] == 1
    events = await h.events()
    assert sorted(e.summary or "" for e in events) == ["Lunch", "weekly  SYNC"]
    assert len(await h.live_activities()) == 4 - 1  # nothing imported, nothing duplicated
    async with h.db.session() as s:
        issues = await runs.open_issues(s, h.binding_id)
    assert [i.code for i in issues] == ["calsync.ambiguous_match"]
    assert "did not guess" in issues[0].message and issues[0].remedy
    # a second sync does not guess either
    await h.sync()
    assert len(await h.events()) == 2 and len(await h.live_activities()) == 3


# -- rule 6: deletions and the mass-delete guard ----------------------------------------------------


async def test_deletions_both_ways_keep_tombstones(h: Harness) -> None:
    a = await h.activity("Deleted in Google", at(2, 9))
    b = await h.activity("Deleted in CRM", at(2, 11))
    await h.sync()
    by_summary = {e.summary: e for e in await h.events()}
    await h.gdelete(by_summary["Deleted in Google"].id or "")
    await h.delete(b)
    result = await h.sync()
    assert result.ok and result.counts["deleted"] == 1
    gone = await h.get(a)
    assert gone.deleted_at is not None  # tombstoned, the row is still there
    assert await h.events() == []
    assert await h.link(a) is None and await h.link(b) is None
    cancelled = await h.events(deleted=True)
    assert {e.status for e in cancelled} == {"cancelled"}


async def test_delete_answering_404_or_410_counts_as_done(h: Harness) -> None:
    a = await h.activity("Gone already", at(2, 9))
    await h.sync()
    await h.delete(a)
    h.emu.control("POST", "/faults", {"method": "DELETE", "status": 410, "count": 1})
    result = await h.sync()
    assert result.ok and result.outcome is Outcome.OK
    assert await h.link(a) is None


async def test_mass_delete_guard_pauses_and_deletes_nothing(h: Harness) -> None:
    for i in range(24):
        await h.activity(f"Customer visit {i}", at(1 + i % 5, 8 + i % 8))
    await h.sync()
    for event in await h.events():
        await h.gdelete(event.id or "")
    result = await h.sync()
    assert result.outcome is Outcome.PAUSED and result.error is not None
    assert "Nothing was deleted" in result.error.message
    assert len(await h.live_activities()) == 24
    async with h.db.session() as s:
        b = await s.get(CalendarBinding, h.binding_id)
        assert b is not None and b.stage == "paused" and "24 of the 24" in (b.paused_reason or "")
    assert (await h.sync()).outcome is Outcome.SKIPPED  # stays paused
    # the admin confirms: resume with deletions allowed
    async with h.db.session() as s:
        await bindings.resume(s, h.binding_id)
        await s.commit()
    result = await h.sync(allow_mass_delete=True)
    assert result.ok and result.counts["deleted"] == 24
    assert await h.live_activities() == []


# -- directions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["google_to_crm", "crm_to_google"])
async def test_one_way_directions(h: Harness, direction: str) -> None:
    async with h.db.session() as s:
        b = await bindings.get(s, h.binding_id)
        assert b is not None
        b.direction = direction
        await s.commit()
    await h.activity("From CRM", at(2, 9))
    await h.ginsert("From Google", at(2, 11))
    await h.sync()
    events = sorted(e.summary or "" for e in await h.events())
    acts = sorted(a.subject for a in await h.live_activities())
    if direction == "google_to_crm":
        assert events == ["From Google"] and acts == ["From CRM", "From Google"]
    else:
        assert events == ["From CRM", "From Google"] and acts == ["From CRM"]


async def test_project_tasks_and_unexported_types_stay_in_the_crm(h: Harness) -> None:
    await h.activity("Build", at(2, 9), type_key="project_task")
    await h.activity("Call Bob", at(2, 10), type_key="call")
    await h.sync()
    assert [e.summary for e in await h.events()] == ["Call Bob"]


# -- rule 9: errors --------------------------------------------------------------------------------


async def test_revoked_grant_needs_reauth_and_crm_edits_wait(h: Harness) -> None:
    aid = await h.activity("Sales call", at(2, 14))
    await h.sync()
    h.emu.control("POST", f"/accounts/{h.email}/revoke-grants")
    await h.edit(aid, subject="Sales call (moved)")
    result = await h.sync()
    assert result.outcome is Outcome.NEEDS_REAUTH and result.error is not None
    assert result.error.code == "google.grant_revoked"
    assert "Reconnect" in result.error.remedy
    async with h.db.session() as s:
        conn = await connections.get(s, h.connection_id)
        assert conn is not None and conn.status == "needs_reauth"
        assert conn.last_error_code == "google.grant_revoked"
    assert (await h.sync()).outcome is Outcome.SKIPPED  # waits for the user
    # the user reconnects the same Google account
    from tests.calsync.google.conftest import connect

    auth = await connect(h.oauth, h.email)
    async with h.db.session() as s:
        conn = await connections.get(s, h.connection_id)
        assert conn is not None
        changed = await connections.reconnect(
            s,
            conn,
            google_email=auth.email,
            refresh_token=auth.refresh_token,
            access_token=auth.token.access_token,
            access_token_expires_at=None,
        )
        await s.commit()
    assert changed is False
    result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1
    (event,) = await h.events()
    assert event.summary == "Sales call (moved)"


async def test_one_refused_event_is_parked_and_the_rest_sync(h: Harness) -> None:
    ids = [await h.activity(f"Visit {i}", at(2, 8 + i)) for i in range(4)]
    h.emu.control(
        "POST",
        "/faults",
        {
            "method": "POST",
            "path_regex": "/events$",
            "status": 403,
            "reason": "quotaExceeded",
            "count": 1,
        },
    )
    result = await h.sync()
    assert result.outcome is Outcome.PARTIAL and result.counts["pushed"] == 3
    assert len(await h.events()) == 3
    async with h.db.session() as s:
        issues = await runs.open_issues(s, h.binding_id)
    assert [i.code for i in issues] == ["google.quota_exceeded"]
    parked = issues[0].activity_id
    assert parked in ids
    # unchanged, it waits; once edited, it is tried again and the issue closes
    await h.sync()
    assert len(await h.events()) == 3
    assert parked is not None
    await h.edit(parked, description="try again")
    result = await h.sync()
    assert result.outcome is Outcome.OK and len(await h.events()) == 4
    async with h.db.session() as s:
        assert await runs.open_issues(s, h.binding_id) == []


async def test_a_patch_refused_once_is_parked_and_its_issue_closes_when_it_goes_through(
    h: Harness,
) -> None:
    """The answer to a patch is stored on the link without reading it again (sync.push
    `_store_written`): the entry's open issue still closes, and the link takes Google's
    etag and the new snapshot."""
    aid = await h.activity("Visit", at(2, 9))
    assert (await h.sync()).ok
    h.emu.control(
        "POST",
        "/faults",
        {"method": "PATCH", "path_regex": "/events/", "status": 400, "count": 1},
    )
    await h.edit(aid, subject="Visit, moved")
    result = await h.sync()
    assert result.outcome is Outcome.PARTIAL, result
    async with h.db.session() as s:
        assert [i.activity_id for i in await runs.open_issues(s, h.binding_id)] == [aid]
    await h.edit(aid, subject="Visit, moved again")
    result = await h.sync()
    assert result.outcome is Outcome.OK and result.counts["pushed"] == 1, result
    async with h.db.session() as s:
        assert await runs.open_issues(s, h.binding_id) == []
    [event] = await h.events()
    link = await h.link(aid)
    assert link is not None and link.state == "linked"
    assert event.summary == "Visit, moved again" and link.google_etag == event.etag
    assert link.snapshot is not None and link.snapshot["summary"] == "Visit, moved again"
    # the next sync reads its own write back as no change
    result = await h.sync()
    assert result.ok and not result.counts.get("pushed") and not result.counts.get("updated")


async def test_a_link_gone_before_googles_answer_is_not_written_again(h: Harness) -> None:
    """The answer is stored only on the link the write was planned from, if that is still
    the activity's in the calendar: a link removed meanwhile stays removed."""
    aid = await h.activity("Visit", at(2, 9))
    assert (await h.sync()).ok
    await h.edit(aid, subject="Visit, moved")

    async def unlink(ctx: Ctx, ops: Any, results: Any) -> None:
        async with h.db.session() as s:
            link = await s.scalar(select(EventLink).where(EventLink.activity_id == aid))
            assert link is not None
            await s.delete(link)
            await s.commit()

    result = await h.sync(hooks=Hooks(after_google_write=unlink))
    assert result.ok, result
    assert await h.link(aid) is None


async def test_forbidden_for_non_organizer_and_bad_request_park_one_event(h: Harness) -> None:
    a = await h.activity("Theirs", at(2, 9))
    b = await h.activity("Ours", at(2, 11))
    await h.sync()
    await h.edit(a, subject="Theirs (edited)")
    await h.edit(b, subject="Ours (edited)")
    h.emu.control(
        "POST",
        "/faults",
        {
            "method": "PATCH",
            "path_regex": google_event_id(a),
            "status": 403,
            "reason": "forbiddenForNonOrganizer",
        },
    )
    result = await h.sync()
    assert result.outcome is Outcome.PARTIAL
    assert sorted(e.summary or "" for e in await h.events()) == ["Ours (edited)", "Theirs"]
    h.emu.control("DELETE", "/faults")
    h.emu.control("POST", "/faults", {"method": "PATCH", "status": 400, "count": 1})
    await h.edit(b, subject="Ours (again)")
    result = await h.sync()
    async with h.db.session() as s:
        codes = sorted(i.code for i in await runs.open_issues(s, h.binding_id))
    assert codes == ["google.bad_request", "google.forbidden_for_non_organizer"]


async def test_google_busy_backs_off_and_the_next_run_finishes(h: Harness) -> None:
    await h.activity("Later", at(2, 9))
    h.emu.control("POST", "/faults", {"method": "GET", "path_regex": "/events$", "status": 503})
    result = await h.sync()
    assert result.outcome is Outcome.BACKOFF
    async with h.db.session() as s:
        b = await bindings.get(s, h.binding_id)
        assert b is not None and b.failure_count == 1 and b.next_sync_at is not None
    h.emu.control("DELETE", "/faults")
    result = await h.sync()
    assert result.ok and len(await h.events()) == 1


async def test_calendar_gone_disables_the_binding(h: Harness) -> None:
    created = h.emu.control("POST", f"/accounts/{h.email}/calendars", {"summary": "CRM"}).json()
    async with h.db.session() as s:
        b = await bindings.create(s, h.tenant_id, h.connection_id, created["id"], role="import")
        await s.commit()
    h.binding_id = b.id
    await h.sync()
    h.emu.control("DELETE", f"/calendars/{created['id']}")
    result = await h.sync()
    assert result.outcome is Outcome.DISABLED and result.error is not None
    assert result.error.code == "calsync.calendar_gone"
    async with h.db.session() as s:
        b2 = await bindings.get(s, b.id)
        assert b2 is not None and b2.stage == "disabled" and b2.paused_reason


# -- rule 10: account change -------------------------------------------------------------------------


async def test_reconnecting_another_account_resets_bindings_and_links(h: Harness) -> None:
    await h.activity("Kept in the CRM", at(2, 9))
    await h.sync()
    async with h.db.session() as s:
        conn = await connections.get(s, h.connection_id)
        assert conn is not None
        changed = await connections.reconnect(
            s,
            conn,
            google_email="alice.other@example.com",
            refresh_token="x",
            access_token=None,
            access_token_expires_at=None,
        )
        await s.commit()
        assert changed is True
        assert await bindings.for_connection(s, h.connection_id) == []
        assert (
            await s.scalars(select(EventLink).where(EventLink.binding_id == h.binding_id))
        ).all() == []
    assert [a.subject for a in await h.live_activities()] == ["Kept in the CRM"]


# -- the lock -------------------------------------------------------------------------------------------


async def test_lock_is_exclusive_and_a_crashed_holder_expires(h: Harness) -> None:
    async with h.db.session() as s:
        assert await bindings.try_lock(s, h.binding_id, "worker-a", timedelta(minutes=5))
        await s.commit()
    result = await h.sync(owner="worker-b")
    assert result.outcome is Outcome.SKIPPED and result.error is not None
    assert result.error.code == "calsync.sync_in_progress"
    async with h.db.session() as s:
        assert not await bindings.try_lock(s, h.binding_id, "worker-b", timedelta(minutes=5))
        # worker-a crashed; its lock runs out
        b = await bindings.get(s, h.binding_id)
        assert b is not None
        b.locked_until = b.locked_until - timedelta(minutes=10)  # type: ignore[operator]
        await s.commit()
    result = await h.sync(owner="worker-b")
    assert result.ok
