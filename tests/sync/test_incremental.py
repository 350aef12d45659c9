"""A sync costs O(changes) (sync/scans.py): it reads Google's changes after the sync token, the
owner's change feed after the push cursor and the links owing a write — never the whole calendar,
except on a first sync, a 410, a full sync asked for, or a changed setting. SQL statements are
counted with a SQLAlchemy event listener; scans with a spy on the store's scanning queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from calsync.domain.ids import google_event_id
from calsync.store import bindings, changes, links, sync_rows, tenants
from calsync.store.db import Database
from calsync.store.models import Activity, CalendarBinding, Change, EventLink, SyncRun, Tenant
from calsync.sync.context import Ctx, Hooks
from tests.sql_events import statements

from .conftest import Harness, at


class Crash(Exception):
    pass


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the whole-calendar queries each sync ran, in order."""
    ran: list[str] = []
    for name in ("unlinked_activities", "unexported", "unexported_unselected"):
        real = getattr(links, name)

        async def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            ran.append(_name)
            return await _real(*args, **kwargs)

        monkeypatch.setattr(links, name, spy)
    return ran


async def grow(h: Harness, n: int) -> None:
    """N more linked entries in the calendar, copies of a synced one with their change-feed
    rows, written straight to the database (a sync of thousands would only be slower)."""
    async with h.db.session() as s:
        link = (
            await s.scalars(select(EventLink).where(EventLink.binding_id == h.binding_id))
        ).first()
        assert link is not None and link.activity_id is not None
        model = await s.get(Activity, link.activity_id)
        assert model is not None
        seq = await changes.last_seq(s, h.tenant_id)
        a_cols = [c.key for c in Activity.__table__.columns]
        l_cols = [c.key for c in EventLink.__table__.columns]
        a_rows, l_rows, c_rows = [], [], []
        for i in range(n):
            aid = uuid.uuid4()
            shift = timedelta(hours=3 * (i + 1))
            row = {k: getattr(model, k) for k in a_cols}
            row.update(id=aid, subject=f"Copy {i}")
            for k in ("start_local", "end_local", "start_utc", "end_utc", "range_start_utc"):
                row[k] += shift
            row["range_end_utc"] = row["end_utc"]
            a_rows.append(row)
            lrow = {k: getattr(link, k) for k in l_cols}
            lrow.update(id=uuid.uuid4(), activity_id=aid, google_event_id=f"copy{i:06d}")
            l_rows.append(lrow)
            seq += 1
            c_rows.append(
                {
                    "tenant_id": h.tenant_id,
                    "seq": seq,
                    "activity_id": aid,
                    "owner_id": h.user_id,
                    "kind": "created",
                    "version": 1,
                    "origin": "sync",
                    "created_at": datetime.now(UTC),
                }
            )
        await s.execute(insert(Activity), a_rows)
        await s.execute(insert(EventLink), l_rows)
        await s.execute(insert(Change), c_rows)
        await s.execute(update(Tenant).where(Tenant.id == h.tenant_id).values(change_seq=seq))
        await s.commit()


async def one_change_costs(h: Harness, extra: int) -> dict[str, int]:
    """Statements of a no-op sync, a sync of one Google edit and of one CRM edit in a calendar
    of `extra` + 2 linked entries."""
    crm = await h.activity("Visit", at(1, 9))
    lunch = await h.ginsert("Lunch", at(2, 12))
    assert (await h.sync()).ok
    await grow(h, extra)
    assert (await h.sync()).ok  # the copies' change-feed rows are the sync's own: nothing to do
    out: dict[str, int] = {}
    with statements(h.db) as sent:
        assert (await h.sync()).ok
    out["no-op"] = len(sent)
    assert lunch.id is not None
    await h.gpatch(lunch.id, {"summary": "Lunch, moved"})
    with statements(h.db) as sent:
        result = await h.sync()
    assert result.ok and result.counts["updated"] == 1, result
    out["google"] = len(sent)
    await h.edit(crm, subject="Visit, moved")
    with statements(h.db) as sent:
        result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1, result
    out["crm"] = len(sent)
    return out


async def test_a_sync_of_one_change_costs_the_same_statements_in_a_large_calendar(
    h: Harness, scans: list[str]
) -> None:
    small = await one_change_costs(h, 100)
    bob = Harness(h.emu, h.db, h.settings, h.oauth, email="bob@example.com")
    await bob.setup()
    try:
        large = await one_change_costs(bob, 2000)
    finally:
        await bob.aclose()
    assert small == large, (small, large)
    # pinned (issue 16): lock + one read of binding, connection and tenant + the run's row at
    # the start; the push's read of the feed's end, the owed links and the owner's changes
    # after the cursor (one statement; two after a change until 2026-12-03); the run's end and
    # the binding's end of run (sync token, cursor, release) in two at the end; a CRM change's
    # write also stores the echo its channel owes (sync/channels/echo.py) before it leaves;
    # PostgreSQL numbers the feed at commit (no UPDATE of the tenant's counter in the pull;
    # SQLite's UPDATE is the locked version check).
    # A Google change's pull: the listed events' links, each with its activity and the
    # activity's attendees (one statement; an id naming an activity is looked up only for the
    # events without a link), the activity's version under the lock with whether the tenant
    # has outbound-webhook endpoints (the activity is read again only if someone wrote it
    # since, the endpoints only if there are some; on SQLite the RETURNING of the feed-number
    # UPDATE, which takes the write lock: one statement, as on PostgreSQL), the writes.
    # A CRM change's plan reads the activities, their attendees and their links in one
    # statement, and Google's answer is stored on the planned link in one UPDATE that also
    # tells whether the entry has open issues to close (six until 2026-12-04 evening)
    assert small == {"no-op": 6, "google": 11, "crm": 9}, small
    # and only the first syncs scanned (one per calendar), never the later ones
    assert scans.count("unexported") == 2, scans


async def test_a_no_op_sync_scans_nothing(h: Harness, scans: list[str]) -> None:
    await h.activity("Visit", at(1, 9))
    await h.ginsert("Lunch", at(2, 12))
    assert (await h.sync()).ok
    # the first sync: the pull matches the new event, the push scans the window
    assert scans == [
        "unlinked_activities",
        "unexported",
        "unexported_unselected",
        "unlinked_activities",
    ]
    scans.clear()
    for _ in range(2):
        assert (await h.sync()).ok
    assert scans == []
    async with h.db.session() as s:
        binding = await bindings.get(s, h.binding_id)
        assert binding is not None and binding.scanned_key is not None


async def test_a_new_crm_entry_and_a_new_google_event_arrive_without_a_scan(
    h: Harness, scans: list[str]
) -> None:
    assert (await h.sync()).ok
    scans.clear()
    aid = await h.activity("Made in the CRM", at(1, 9))
    result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1
    assert [e.id for e in await h.events()] == [google_event_id(aid)]
    await h.ginsert("Made in Google", at(2, 12))
    result = await h.sync()
    assert result.ok and result.counts["created"] == 1
    # a new Google event is matched against the owner's unlinked entries (sync.pull)
    assert scans == ["unlinked_activities"]


async def test_an_explicit_full_sync_scans(h: Harness, scans: list[str]) -> None:
    assert (await h.sync()).ok
    scans.clear()
    assert (await h.sync(full=True)).ok
    assert "unlinked_activities" in scans


async def test_a_410_scans(h: Harness, scans: list[str]) -> None:
    await h.activity("Visit", at(1, 9))
    assert (await h.sync()).ok
    scans.clear()
    h.emu.control("POST", f"/calendars/{h.calendar_id}/expire-sync-tokens")
    result = await h.sync()
    assert result.ok and result.counts["full_resyncs"] == 1
    assert "unlinked_activities" in scans
    scans.clear()
    assert (await h.sync()).ok
    assert scans == []


async def test_a_type_exported_since_is_pushed_by_the_scan_a_settings_change_starts(
    h: Harness, scans: list[str]
) -> None:
    """No change of the entry names it: the admin's setting does (a settings transition)."""
    aid = await h.activity("A call", at(1, 9), type_key="call")
    async with h.db.session() as s:
        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        before = list(tenant.exported_type_keys)
        tenant.exported_type_keys = [k for k in before if k != "call"]
        await s.commit()
    assert (await h.sync()).ok
    assert await h.events() == []
    assert (await h.sync()).ok
    scans.clear()
    async with h.db.session() as s:
        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        tenant.exported_type_keys = sorted({*before, "call"})
        await s.commit()
    result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1
    assert [e.id for e in await h.events()] == [google_event_id(aid)]
    assert "unlinked_activities" in scans
    scans.clear()
    assert (await h.sync()).ok
    assert scans == []


async def test_a_direction_change_scans(h: Harness, scans: list[str]) -> None:
    assert (await h.sync()).ok
    scans.clear()
    async with h.db.session() as s:
        binding = await bindings.get(s, h.binding_id)
        assert binding is not None
        binding.direction = "crm_to_google"
        await s.commit()
    assert (await h.sync()).ok
    assert "unlinked_activities" in scans
    scans.clear()
    assert (await h.sync()).ok  # a CRM → Google calendar has no sync token: still no scan
    assert scans == []


async def test_a_crash_in_a_scanning_push_leaves_the_next_run_scanning(
    h: Harness, scans: list[str]
) -> None:
    """The scan's key is stored after its writes: a crash between them scans again."""
    aid = await h.activity("Kick-off", at(5, 13))

    async def crash(_ctx: Ctx, *_: Any) -> None:
        raise Crash()

    with pytest.raises(Crash):
        await h.sync(hooks=Hooks(after_google_write=crash))
    async with h.db.session() as s:
        binding = await bindings.get(s, h.binding_id)
        assert binding is not None and binding.scanned_key is None
    scans.clear()
    assert (await h.sync()).ok
    assert "unlinked_activities" in scans
    assert [e.id for e in await h.events()] == [google_event_id(aid)]
    async with h.db.session() as s:
        stored = await s.scalar(
            select(CalendarBinding.scanned_key).where(CalendarBinding.id == h.binding_id)
        )
    assert stored is not None


async def explain(db: Database, statement: str, params: Any) -> str:
    """The query plan of a statement the store sent, as text."""
    async with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            return " ".join(str(r[-1]) for r in rows.all())
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a tiny table: read whole
        rows = await conn.exec_driver_sql("EXPLAIN " + statement, params)
        return " ".join(str(r[0]) for r in rows.all())


async def test_owed_links_and_the_owners_feed_are_read_through_their_partial_indexes(
    h: Harness,
) -> None:
    sent: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(h.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with h.db.session() as s:
            await links.dirty(s, h.binding_id)
            # what the push runs: the feed's end, the owed links and the owner's feed at once
            await sync_rows.push_reads(s, h.tenant_id, h.binding_id, h.user_id, 0)
    finally:
        event.remove(h.db.engine.sync_engine, "before_cursor_execute", record)
    owed, push_reads = (s for s in sent if s[0].lstrip().upper().startswith("SELECT"))
    assert "ix_event_link_binding_id_owed" in await explain(h.db, *owed)
    plan = await explain(h.db, *push_reads)
    assert "ix_event_link_binding_id_owed" in plan, plan
    assert "ix_change_tenant_id_owner_id_seq_pushable" in plan, plan


async def test_a_new_google_event_is_matched_among_the_entries_around_its_start(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matching needs an equal start: an incremental sync reads the owner's unlinked entries
    a day either side of the new events' starts, not the whole window — and still matches."""
    async with h.db.session() as s:
        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        tenant.exported_type_keys = [k for k in tenant.exported_type_keys if k != "call"]
        await s.commit()
    near = await h.activity("Call Bob", at(3, 10), type_key="call")  # not exported: unlinked
    far = await h.activity("Call Bob", at(40, 10), type_key="call")
    assert (await h.sync()).ok
    assert await h.events() == []
    asked: list[Any] = []
    real = links.unlinked_activities

    async def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("starting"))
        found = await real(*args, **kwargs)
        asked.append({a.id for a in found})
        return found

    monkeypatch.setattr(links, "unlinked_activities", spy)
    await h.ginsert("Call Bob", at(3, 10))
    result = await h.sync()
    assert result.ok and result.counts["linked"] == 1 and not result.counts.get("created"), result
    link = await h.link(near)
    assert link is not None and link.state == "linked"
    assert await h.link(far) is None
    # read once, at the end of the listing, around the new events (not again to match them)
    reads = list(zip(asked[::2], asked[1::2], strict=True))
    assert len(reads) == 1 and all(
        starting is not None and found == {near} for starting, found in reads
    ), reads


async def test_a_crm_to_google_binding_gathers_and_scans_only_on_its_first_sync(
    h: Harness, scans: list[str]
) -> None:
    """A CRM → Google calendar never has a sync token: its first sync is the one before its
    first completed scan, not every sync (transitions.gather lists the account's calendars)."""
    await h.set_direction("crm_to_google")
    mark = h.mark()
    first = await h.sync()
    assert first.ok, first
    assert any(str(i["path"]).endswith("/calendarList") for i in h.requests_since(mark))
    scans.clear()
    for _ in range(2):
        mark = h.mark()
        result = await h.sync()
        assert result.ok, result
        assert h.requests_since(mark) == []  # no calendar list, no listing: nothing to write
    assert scans == []
    async with h.db.session() as s:
        ran = (
            await s.scalars(
                select(SyncRun.full_sync)
                .where(SyncRun.binding_id == h.binding_id)
                .order_by(SyncRun.started_at)
            )
        ).all()
    assert ran == [True, False, False]
    # and a CRM entry made since is written by the next sync, without a scan
    aid = await h.activity("Made in the CRM", at(1, 9))
    result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1, result
    assert [e.id for e in await h.events()] == [google_event_id(aid)]
    assert scans == []
