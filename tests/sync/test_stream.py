"""The pull as a stream: each page of Google's listing is stored as it arrives (the next one
already on its way), a crash halfway leaves no duplicates and the next run finishes the
import, the bulk-written links agree with what the ORM path would have stored, and the
mass-delete guard still pauses when the deletions are spread over many pages."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Table, delete, func, insert, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.fields import content_hash
from calsync.google import calls
from calsync.google.models import Event
from calsync.google.oauth import GoogleOAuth
from calsync.settings import Settings
from calsync.store import activities, bindings, bulk_import, crypto, planner, tenants, webhooks
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import Activity, CalendarBinding, Change, EventLink
from calsync.store.statuses import ChangeKind, ChangeOrigin, LinkState
from calsync.store.webhook_models import WebhookMessage
from calsync.sync import fresh, mapping, pull
from calsync.sync.context import Ctx
from calsync.sync.errors import Outcome
from tests.calsync.conftest import fresh_url
from tests.conftest import Emulator
from tests.sql_events import statements

from .conftest import ZONE, Harness, at

PAGE = 5


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 5 and chunks of 2, so a few dozen events make many pages and chunks."""
    monkeypatch.setattr(pull, "MAX_RESULTS", PAGE)
    monkeypatch.setattr(fresh, "IMPORT_CHUNK", 2)


async def _google_events(h: Harness, n: int, prefix: str = "Imported") -> None:
    start = at(1, 8)
    inserts = [
        calls.events_insert(
            h.calendar_id,
            {
                "summary": f"{prefix} {i}",
                "start": {
                    "dateTime": (start + timedelta(hours=i)).isoformat(),
                    "timeZone": ZONE,
                },
                "end": {
                    "dateTime": (start + timedelta(hours=i, minutes=45)).isoformat(),
                    "timeZone": ZONE,
                },
            },
        )
        for i in range(n)
    ]
    results = await h.person.batch(inserts, chunk_size=1000)
    assert not [r for r in results if isinstance(r, Exception)]


def _list_requests(h: Harness, mark: int) -> int:
    return sum(
        1
        for item in h.requests_since(mark)
        if item["method"] == "GET" and str(item["path"]).endswith("/events")
    )


async def _feed_seqs(h: Harness) -> list[int]:
    async with h.db.session() as s:
        rows = await s.scalars(
            select(Change.seq).where(Change.tenant_id == h.tenant_id).order_by(Change.seq)
        )
        return list(rows)


async def linked_entries(h: Harness) -> list[tuple[EventLink, Activity]]:
    """Every link of the binding with its activity."""
    async with h.db.session() as s:
        rows = await s.execute(
            select(EventLink, Activity)
            .join(Activity, Activity.id == EventLink.activity_id)
            .where(EventLink.binding_id == h.binding_id)
        )
        return [(link, activity) for link, activity in rows]


async def test_each_page_is_stored_as_it_arrives_with_the_next_one_prefetched(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _google_events(h, 17)
    seen: list[tuple[int, int, int]] = []  # (page, activities stored, list requests sent)
    real_page = pull._page
    mark = h.mark()

    async def page(ctx: Ctx, events: list[Event], held: pull.Held) -> None:
        seen.append((len(seen), len(await h.live_activities()), _list_requests(h, mark)))
        await real_page(ctx, events, held)

    monkeypatch.setattr(pull, "_page", page)
    result = await h.sync()
    assert result.ok and result.counts["created"] == 17
    assert len(seen) == 4  # 5 + 5 + 5 + 2
    for number, stored, requested in seen:
        # the earlier pages are in the database before this one is applied, but for the
        # last chunk (2 events), which may still be written meanwhile ...
        assert PAGE * number - 2 <= stored <= PAGE * number
        # ... and the listing reads at most one page ahead, never the whole calendar first
        assert requested <= number + 2
    assert await _feed_seqs(h) == list(range(1, 18))


async def test_a_crash_mid_import_leaves_no_duplicates_and_the_next_run_finishes(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _google_events(h, 13)
    real = bulk_import.insert_imported
    chunks = 0

    async def dies_at_the_fourth_chunk(*args: Any, **kwargs: Any) -> list[Any]:
        nonlocal chunks
        chunks += 1
        if chunks == 4:
            raise RuntimeError("killed mid-import")
        return await real(*args, **kwargs)

    monkeypatch.setattr(bulk_import, "insert_imported", dies_at_the_fourth_chunk)
    with pytest.raises(RuntimeError, match="killed mid-import"):
        await h.sync()
    # the first page's chunks (2 + 2 + 1) committed, the second page's first one not
    assert len(await h.live_activities()) == 5
    async with h.db.session() as s:
        binding = await s.get(CalendarBinding, h.binding_id)
        assert binding is not None and binding.sync_token is None  # the listing starts over
    monkeypatch.setattr(bulk_import, "insert_imported", real)

    result = await h.sync()
    assert result.ok, result
    live = await h.live_activities()
    assert len(live) == 13
    assert sorted(a.subject for a in live) == sorted(f"Imported {i}" for i in range(13))
    async with h.db.session() as s:
        event_ids = list(
            await s.scalars(
                select(EventLink.google_event_id).where(EventLink.binding_id == h.binding_id)
            )
        )
    assert len(event_ids) == len(set(event_ids)) == 13
    assert await _feed_seqs(h) == list(range(1, 14))  # in order, without gaps
    # and nothing is left to do
    again = await h.sync()
    assert again.ok and again.counts.get("created", 0) == 0
    assert again.counts.get("updated", 0) == 0 and again.counts.get("pushed", 0) == 0


async def test_the_next_chunk_is_mapped_while_a_chunk_is_written_one_write_at_a_time(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fresh.import_fresh pipelines the chunks: chunk k+1 is validated and mapped while
    chunk k's transaction runs, but the writes stay one at a time, in order (the change
    feed's numbers are reserved in that order), across pages too."""
    await _google_events(h, 13)
    trace: list[str] = []
    writing = 0
    real_checked, real_insert = fresh._checked, bulk_import.insert_imported

    async def checked(ctx: Ctx, chunk: list[Any]) -> Any:
        trace.append("map " + ",".join(e.summary or "" for e, _ in chunk))
        return await real_checked(ctx, chunk)

    async def insert(*args: Any, **kwargs: Any) -> list[Any]:
        nonlocal writing
        writing += 1
        assert writing == 1, "two chunks written at once"
        items = args[3]
        try:
            return await real_insert(*args, **kwargs)
        finally:
            writing -= 1
            trace.append("wrote " + ",".join(i.values.subject for i in items))

    real_page = pull._page

    async def page(ctx: Ctx, events: list[Event], held: pull.Held) -> None:
        trace.append("page")
        await real_page(ctx, events, held)

    monkeypatch.setattr(fresh, "_checked", checked)
    monkeypatch.setattr(bulk_import, "insert_imported", insert)
    monkeypatch.setattr(pull, "_page", page)
    result = await h.sync()
    assert result.ok and result.counts["created"] == 13
    assert trace[:6] == [
        "page",
        "map Imported 0,Imported 1",
        "map Imported 2,Imported 3",  # while the first chunk is written
        "wrote Imported 0,Imported 1",
        "map Imported 4",
        "wrote Imported 2,Imported 3",
    ]
    wrote = [t.removeprefix("wrote ") for t in trace if t.startswith("wrote ")]
    assert ",".join(wrote) == ",".join(f"Imported {i}" for i in range(13))
    assert await _feed_seqs(h) == list(range(1, 14))


async def test_an_error_mapping_a_chunk_lets_the_write_in_flight_end_first(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipelined import fails while a chunk's transaction is in flight: that chunk
    commits before the error leaves (nothing is left writing behind the run), the listing
    starts over next time and finishes without duplicates."""
    await _google_events(h, 7)
    real = fresh._checked
    calls = 0
    finished: list[bool] = []

    async def fails_at_the_second_chunk(ctx: Ctx, chunk: list[Any]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            await asyncio.sleep(0)  # the first chunk's write under way
            raise RuntimeError("mapping failed")
        return await real(ctx, chunk)

    real_store = fresh._store

    async def store(ctx: Ctx, checked: list[Any]) -> None:
        finished.append(False)
        await real_store(ctx, checked)
        finished[-1] = True

    monkeypatch.setattr(fresh, "_checked", fails_at_the_second_chunk)
    monkeypatch.setattr(fresh, "_store", store)
    with pytest.raises(RuntimeError, match="mapping failed"):
        await h.sync()
    assert finished == [True]
    assert len(await h.live_activities()) == 2
    monkeypatch.setattr(fresh, "_checked", real)
    result = await h.sync()
    assert result.ok and result.counts["created"] == 5
    assert sorted(a.subject for a in await h.live_activities()) == sorted(
        f"Imported {i}" for i in range(7)
    )
    assert await _feed_seqs(h) == list(range(1, 8))


async def test_a_pages_last_chunk_is_written_while_the_next_page_is_read(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last chunk of a page is still being written when the next page is applied (its
    transaction waits here until that page has begun); the listing ends with every chunk
    committed, in order, the change feed without gaps."""
    await _google_events(h, 7)  # pages of 5 and 2; chunks of 2: [0,1] [2,3] [4] | [5,6]
    second_page = asyncio.Event()
    real_insert, real_page = bulk_import.insert_imported, pull._page
    pages = 0

    async def insert(*args: Any, **kwargs: Any) -> list[Any]:
        if [i.values.subject for i in args[3]] == ["Imported 4"]:
            await asyncio.wait_for(second_page.wait(), 10)  # a timeout: the stream waited
        return await real_insert(*args, **kwargs)

    async def page(ctx: Ctx, events: list[Event], held: pull.Held) -> None:
        nonlocal pages
        pages += 1
        if pages == 2:
            second_page.set()
        await real_page(ctx, events, held)

    monkeypatch.setattr(bulk_import, "insert_imported", insert)
    monkeypatch.setattr(pull, "_page", page)
    result = await h.sync()
    assert result.ok and result.counts["created"] == 7
    assert sorted(a.subject for a in await h.live_activities()) == sorted(
        f"Imported {i}" for i in range(7)
    )
    assert await _feed_seqs(h) == list(range(1, 8))


async def test_an_event_listed_again_waits_for_its_chunk_in_flight(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing that names an event again on the next page while its chunk is still being
    written: the page waits for that chunk, so the event is found linked (reconciled, not
    imported twice)."""
    await _google_events(h, 7)
    second_page = asyncio.Event()
    real_insert, real_page = bulk_import.insert_imported, pull._page
    first: list[Event] = []

    async def insert(*args: Any, **kwargs: Any) -> list[Any]:
        if [i.values.subject for i in args[3]] == ["Imported 4"]:
            await asyncio.wait_for(second_page.wait(), 10)
        return await real_insert(*args, **kwargs)

    async def page(ctx: Ctx, events: list[Event], held: pull.Held) -> None:
        if not first:
            first.extend(events)
        else:
            second_page.set()
            events = [*events, *(e for e in first if e.summary == "Imported 4")]
        await real_page(ctx, events, held)

    monkeypatch.setattr(bulk_import, "insert_imported", insert)
    monkeypatch.setattr(pull, "_page", page)
    result = await h.sync()
    assert result.ok, result
    assert result.counts["created"] == 7
    async with h.db.session() as s:
        event_ids = list(
            await s.scalars(
                select(EventLink.google_event_id).where(EventLink.binding_id == h.binding_id)
            )
        )
    assert len(event_ids) == len(set(event_ids)) == 7
    assert await _feed_seqs(h) == list(range(1, 8))


async def test_a_chunk_reads_the_endpoints_only_when_the_reservation_did_not(
    h: Harness,
) -> None:
    """SQLite's changes.reserve learns under the chunk's write lock whether the tenant has an
    enabled outbound-webhook endpoint: without one the bulk import reads the endpoints no
    more (one statement a chunk fewer); with one, each chunk's activity.created messages are
    queued as before. PostgreSQL numbers changes at commit and reads them per chunk."""
    await _google_events(h, 5)  # chunks of 2: 3 transactions
    with statements(h.db) as sent:
        result = await h.sync()
    assert result.ok and result.counts["created"] == 5
    reads = [s for s in sent if s.startswith("SELECT webhook_endpoint.events")]
    assert len(reads) == (3 if h.db.dialect == "postgresql" else 0)

    async with h.db.session() as s:
        await webhooks.create_endpoint(
            s, h.tenant_id, url="https://crm.example.com/hook", events=None, description=None
        )
        await s.commit()
    await _google_events(h, 3, prefix="Later")
    result = await h.sync()
    assert result.ok and result.counts["created"] == 3
    async with h.db.session() as s:
        kinds = list(await s.scalars(select(WebhookMessage.type)))
    assert kinds.count(webhooks.ACTIVITY_CREATED) == 3


async def test_bulk_links_agree_with_the_stored_activities(h: Harness) -> None:
    """The bulk import computes each link's CRM hash from the values it writes; it must be the
    hash of the activity as stored, or the next sync would see a CRM change that is none."""
    await _google_events(h, 3)
    day = date.today() + timedelta(days=3)
    await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Holiday",
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=2)).isoformat()},
            "transparency": "transparent",
        },
    )
    start = at(2, 9)
    await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Weekly",
            "location": "Room 4",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(minutes=30)).isoformat(), "timeZone": ZONE},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5"],
        },
    )
    result = await h.sync()
    assert result.ok and result.counts["created"] == 5
    rows = await linked_entries(h)
    assert len(rows) == 5
    for link, activity in rows:
        assert link.crm_hash == content_hash(mapping.activity_fields(activity))
        assert link.state == "linked" and link.snapshot is not None
    again = await h.sync()
    assert again.ok and again.counts.get("updated", 0) == 0 and again.counts.get("pushed", 0) == 0


async def test_guard_pauses_a_streamed_sync_whose_deletions_span_pages(h: Harness) -> None:
    for i in range(24):
        await h.activity(f"Customer visit {i}", at(1 + i % 5, 8 + i % 8))
    await h.sync()
    # Google: 30 new events first, then every synced one deleted; the new ones are imported
    # page by page before the deletions are even listed, and must not dilute the guard's base
    await _google_events(h, 30, prefix="New")
    visits = [e for e in await h.events() if (e.summary or "").startswith("Customer visit")]
    for event in visits:
        await h.gdelete(event.id or "")
    result = await h.sync()
    assert result.outcome is Outcome.PAUSED and result.error is not None
    assert "Nothing was deleted" in result.error.message
    live = await h.live_activities()
    assert sum(a.subject.startswith("Customer visit") for a in live) == 24
    async with h.db.session() as s:
        b = await s.get(CalendarBinding, h.binding_id)
        assert b is not None and b.stage == "paused" and "24 of the 24" in (b.paused_reason or "")
        links_now = await s.scalar(
            select(func.count()).select_from(EventLink).where(EventLink.binding_id == h.binding_id)
        )
    assert links_now == 54  # the new events were stored once, the deletions held back
    async with h.db.session() as s:
        await bindings.resume(s, h.binding_id)
        await s.commit()
    result = await h.sync(allow_mass_delete=True)
    assert result.ok and result.counts["deleted"] == 24
    live = await h.live_activities()
    assert sorted(a.subject for a in live) == sorted(f"New {i}" for i in range(30))


async def test_driver_rows_are_what_a_core_insert_stores(h: Harness) -> None:
    """bulk_import.insert_values hands the driver pre-rendered rows instead of going through
    SQLAlchemy's bind processors: every column must come out as a Core insert stores it, a
    JSON column's None as JSON's null, and a snapshot given as its JSON text (EncodedJSON)
    as the text of the data."""
    now = datetime(2026, 3, 29, 0, 30, tzinfo=ZoneInfo("Europe/Oslo"))  # +01:00, then DST
    aid = uuid.uuid4()
    activity: dict[str, Any] = {c.name: None for c in cast(Table, Activity.__table__).columns} | {
        "id": aid,
        "tenant_id": h.tenant_id,
        "type_key": "meeting",
        "owner_id": h.user_id,
        "subject": "Æ ø “quoted”",
        "all_day": False,
        "time_zone": ZONE,
        "start_local": datetime(2026, 3, 29, 9, 0),  # no microseconds
        "end_local": datetime(2026, 3, 29, 9, 45, 0, 1500),
        "start_utc": datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        "end_utc": datetime(2026, 3, 29, 9, 45, 0, 1500, tzinfo=ZoneInfo(ZONE)),
        "range_start_utc": now,
        "visibility": "default",
        "transparency": "opaque",
        "status": "confirmed",
        "source": "google",
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    repeating = activity | {"id": uuid.uuid4(), "recurrence": ["RRULE:FREQ=DAILY"]}
    # the range starts at the start's instant, given in another zone (SQLite's UTC texts
    # are shared by instant within a statement's rows)
    same_range = activity | {
        "id": uuid.uuid4(),
        "range_start_utc": datetime(2026, 3, 29, 9, 0, tzinfo=ZoneInfo("Europe/Oslo")),
    }
    assert same_range["range_start_utc"] == activity["start_utc"]
    change = {
        "tenant_id": h.tenant_id,
        "seq": 10**9,
        "activity_id": aid,
        "owner_id": h.user_id,
        "kind": ChangeKind.CREATED,
        "version": 1,
        "origin": ChangeOrigin.SYNC,
        "created_at": now,
    }
    link = {c.name: None for c in cast(Table, EventLink.__table__).columns} | {
        "id": uuid.uuid4(),
        "tenant_id": h.tenant_id,
        "binding_id": h.binding_id,
        "activity_id": aid,
        "google_event_id": "abc123",
        "google_updated": now,
        "state": LinkState.LINKED,
        "snapshot": {"summary": "Æ", "n": [1, None]},
        "created_at": now,
        "updated_at": now,
    }
    no_snapshot = link | {"id": uuid.uuid4(), "google_event_id": "def456", "snapshot": None}
    tables = [
        (cast(Table, Activity.__table__), [activity, repeating, same_range]),
        (cast(Table, Change.__table__), [change]),
        (cast(Table, EventLink.__table__), [link, no_snapshot]),
    ]

    async def stored() -> list[list[tuple[Any, ...]]]:
        async with h.db.session() as s:
            conn = await s.connection()
            out = []
            for table, _ in tables:
                rows = await conn.execute(
                    select(text("*")).select_from(table).where(table.c.tenant_id == h.tenant_id)
                )
                out.append(sorted(tuple(map(repr, r)) for r in rows))
            return out

    async def wipe() -> None:
        async with h.db.session() as s:
            for table, _ in reversed(tables):
                await s.execute(delete(table).where(table.c.tenant_id == h.tenant_id))
            await s.commit()

    await wipe()  # the harness's own tenant holds nothing else these tables need
    async with h.db.session() as s:
        for table, rows in tables:
            await s.execute(insert(table), rows)
        await s.commit()
    by_core = await stored()
    await wipe()
    async with h.db.session() as s:
        conn = await s.connection()
        for table, rows in tables:
            # the values every row has in common given once (rendered once), as the import does
            same = {"tenant_id", "created_at", "owner_id", "range_end_utc", "state"}
            shared = {k: v for k, v in rows[0].items() if k in same}
            names = [k for k in rows[0] if k not in same]
            if table.name == "event_link":  # the import hands links' snapshots over encoded
                encoded = [r | {"snapshot": json.dumps(r["snapshot"])} for r in rows]
                rows = [
                    r | {"snapshot": None} if r["snapshot"] is None else e
                    for r, e in zip(rows, encoded, strict=True)
                ]
            into = bulk_import.row_table(table, names, encoded_json=("snapshot",))
            own = [tuple(row[k] for k in names) for row in rows]
            await bulk_import.insert_values(conn, into, own, shared)
        await s.commit()
    assert await stored() == by_core
    assert [len(rows) for rows in by_core] == [3, 1, 2]


async def test_a_large_import_refreshes_the_planner_statistics_on_postgresql(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a bulk load PostgreSQL's planner has no statistics of the tables it filled
    (autovacuum analyses them later), and the push's first queries took seconds: a pull that
    imported many events has them analysed before it ends. SQLite plans without them."""
    monkeypatch.setattr(pull, "ANALYZE_AFTER", 10)
    sent: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    async def sync_counting_analyze() -> list[str]:
        sent.clear()
        sa_event.listen(h.db.engine.sync_engine, "before_cursor_execute", record)
        try:
            assert (await h.sync()).ok
        finally:
            sa_event.remove(h.db.engine.sync_engine, "before_cursor_execute", record)
        return [s for s in sent if s.lstrip().upper().startswith("ANALYZE")]

    await _google_events(h, 12)
    analysed = await sync_counting_analyze()
    if h.db.dialect == "postgresql":
        assert analysed == ["ANALYZE activity, change, event_link"]
    else:
        assert analysed == []
    await _google_events(h, 3, prefix="Later")  # a few: autovacuum's business
    assert await sync_counting_analyze() == []
    assert len(await h.live_activities()) == 15


async def test_a_first_import_into_a_new_database_has_statistics_while_it_streams(
    emulator: Emulator,
    sync_settings: Settings,
    oauth_flow: GoogleOAuth,
    backend: str,
    keyring: crypto.Keyring,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL plans each page's link lookups from the statistics of the tables the import
    is filling. In a new database they said "empty" until the pull's end, and the lookups
    compared every link of the binding with the page's ids: a first import of 50,000 events
    took over a minute. They are refreshed as the import doubles the tables (once the writes
    in flight are committed, so they count every imported row), and not again at the end
    for the same rows; SQLite plans without them."""
    monkeypatch.setattr(pull, "ANALYZE_AFTER", 10)
    url = fresh_url(backend, tmp_path_factory, f"stats_{uuid.uuid4().hex[:8]}")
    crypto.install(keyring)
    db = Database(url, pooled=False)
    await upgrade(db)
    h = Harness(emulator, db, sync_settings, oauth_flow)
    await h.setup()
    try:
        real = planner.refresh
        committed: list[int] = []  # the binding's links committed when the tables were analysed

        async def refresh(session: AsyncSession) -> bool:
            async with db.session() as other:
                links = select(func.count()).where(EventLink.binding_id == h.binding_id)
                committed.append(int(await other.scalar(links) or 0))
            return await real(session)

        monkeypatch.setattr(planner, "refresh", refresh)
        await _google_events(h, 32)  # pages of 5: 10 imported by the 2nd, 20 by the 4th
        with statements(db) as sent:
            assert (await h.sync()).ok
        analysed = [i for i, s in enumerate(sent) if s.upper().startswith("ANALYZE")]
        page = "SELECT event_link.id, event_link.tenant_id"  # a page's link lookup (`_known`)
        lookups = [i for i, s in enumerate(sent) if s.startswith(page)]
        if backend == "postgres":
            # never analysed: after 10 imported; 10 rows in the statistics: after 20; 20: not
            # after 30 (nor 32). At the end for the 12 since (the push's window queries)
            assert committed == [10, 20, 32]
            assert len(analysed) == 3
            assert analysed[0] < lookups[2] and analysed[1] < lookups[4]  # pages 3 and 5
        else:
            assert committed == [32]  # the end's call, which sends nothing on SQLite
            assert analysed == []
        assert len(await h.live_activities()) == 32
    finally:
        await h.aclose()
        await db.dispose()


async def test_an_entry_deleted_while_the_listing_streams_is_not_matched_at_its_end(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unlinked CRM entries a new event may match are read with its page and kept for the
    end of the listing; one deleted in the CRM meanwhile is no longer a match there."""
    async with h.db.session() as s:
        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        tenant.exported_type_keys = [k for k in tenant.exported_type_keys if k != "call"]
        await s.commit()
    aid = await h.activity("Call Bob", at(3, 10), type_key="call")  # not exported: unlinked
    assert (await h.sync()).ok
    await h.ginsert("Call Bob", at(3, 10))
    await _google_events(h, 6)  # a second page
    real_page = pull._page
    pages = 0

    async def page(ctx: Ctx, events: list[Event], held: pull.Held) -> None:
        nonlocal pages
        await real_page(ctx, events, held)
        pages += 1
        if pages == 1:
            assert [g.summary for _, g in held.matchable] == ["Call Bob"]
            async with h.db.session() as s:
                activity = await activities.get(s, h.tenant_id, aid)
                assert activity is not None
                await activities.delete(s, activity)
                await s.commit()

    monkeypatch.setattr(pull, "_page", page)
    result = await h.sync()
    assert result.ok and pages == 2 and result.counts["created"] == 7, result
    assert not result.counts.get("linked")
    assert await h.link(aid) is None
    live = await h.live_activities()
    assert sorted(a.subject for a in live).count("Call Bob") == 1
    assert aid not in {a.id for a in live}


async def test_imported_links_hash_as_the_full_mapping_for_varied_events(h: Harness) -> None:
    """Whatever path a new event takes (bulk rows with mapping.imported_fields' shortcut, or
    importing.import_one, or an occurrence of a series), its link stores the hashes of the
    full mapping: Google's side from the listed event, the CRM's from the stored activity;
    and the next sync finds nothing to do."""
    day = date.today() + timedelta(days=4)
    ny = datetime(day.year, day.month, day.day, 9, tzinfo=ZoneInfo("America/New_York"))
    weekly = at(2, 7, 30)
    bodies: list[dict[str, Any]] = [
        {  # timed in another zone, texts to normalise, fields calsync does not map
            "summary": "  Board meeting \t",
            "description": "Agenda:\r\n 1. numbers   \r\n\r\n 2. plans\t\n",
            "location": "Room 4 ",
            "start": {"dateTime": ny.isoformat(), "timeZone": "America/New_York"},
            "end": {"dateTime": (ny + timedelta(minutes=50)).isoformat(), "timeZone": "UTC"},
            "colorId": "5",
            "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]},
            "source": {"title": "Ticket", "url": "https://example.com/t/1"},
        },
        {  # all-day over two days, free
            "summary": "Conference",
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=2)).isoformat()},
            "transparency": "transparent",
        },
        {  # private
            "summary": "Dentist",
            "visibility": "private",
            "start": {"dateTime": at(3, 15).isoformat(), "timeZone": ZONE},
            "end": {"dateTime": at(3, 16).isoformat(), "timeZone": ZONE},
        },
        {  # guests: import_one
            "summary": "Customer call",
            "start": {"dateTime": at(5, 10).isoformat(), "timeZone": ZONE},
            "end": {"dateTime": at(5, 11).isoformat(), "timeZone": ZONE},
            "attendees": [{"email": "bob@example.com", "responseStatus": "accepted"}],
        },
        {  # extended properties of another tool
            "summary": "Tagged elsewhere",
            "start": {"dateTime": at(6, 12).isoformat(), "timeZone": ZONE},
            "end": {"dateTime": at(6, 13).isoformat(), "timeZone": ZONE},
            "extendedProperties": {"private": {"tool": "x"}, "shared": {"ref": "42"}},
        },
        {  # a series; one occurrence moved, one cancelled (below)
            "summary": "Stand-up",
            "start": {"dateTime": weekly.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (weekly + timedelta(minutes=15)).isoformat(), "timeZone": ZONE},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
        },
    ]
    made = [await h.person.insert_event(h.calendar_id, body) for body in bodies]
    gone = await h.ginsert("Cancelled before the first sync", at(7, 9))
    await h.gdelete(gone.id or "")
    series = made[-1]
    occurrences = [
        e async for page in h.person.instances(h.calendar_id, series.id or "") for e in page.items
    ]
    moved = occurrences[1].start.date_time if occurrences[1].start else None
    assert moved is not None
    await h.gpatch(
        occurrences[1].id or "",
        {
            "summary": "Stand-up (moved)",
            "start": {"dateTime": (moved + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
            "end": {
                "dateTime": (moved + timedelta(hours=1, minutes=15)).isoformat(),
                "timeZone": ZONE,
            },
        },
    )
    await h.gdelete(occurrences[2].id or "")

    result = await h.sync()
    assert result.ok, result
    listed = {e.id: e for e in await h.events(deleted=True)}
    rows = await linked_entries(h)
    by_event = {link.google_event_id: (link, activity) for link, activity in rows}
    # six events and two exceptions of the series; the deleted event is not imported
    assert len(by_event) == 8 and gone.id not in by_event
    for event_id, (link, activity) in by_event.items():
        event = listed.get(event_id)
        if event is None:  # an occurrence: listed as an instance of the series
            event = next(e for e in await h.events(deleted=True) if e.id == event_id)
        assert link.crm_hash == content_hash(mapping.activity_fields(activity)), event_id
        assert link.google_hash == content_hash(mapping.event_fields(event, ZONE)), event_id
    again = await h.sync()
    assert again.ok and again.counts.get("created", 0) == 0
    assert again.counts.get("updated", 0) == 0 and again.counts.get("pushed", 0) == 0
