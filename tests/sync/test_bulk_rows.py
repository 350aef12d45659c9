"""The bulk import's rows (store.bulk_import: tuples rendered for the driver, a link's
snapshot handed over as the JSON text its hash was taken of) are the rows the ORM path
stores for the same event: activities.create, then a link as reconcile.agree fills it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, func, select, text
from sqlalchemy import event as sa_event

from calsync.domain.activity import validate
from calsync.domain.fields import SyncFields, canonical_json, content_hash, digest, make
from calsync.store import activities, bulk_import, links
from calsync.store.activities import Source
from calsync.store.base import new_ids
from calsync.store.models import Activity, Change, EventLink
from calsync.store.statuses import ChangeOrigin, LinkState
from calsync.sync import mapping

from .conftest import ZONE, Harness, at

SOURCE = Source("alice@example.com", "alice@example.com")
UPDATED = datetime(2026, 5, 4, 10, 30, 15, 250000, tzinfo=UTC)
#: columns that differ between two stored copies of one entry by nature
OWN = {"id", "activity_id", "google_event_id", "seq", "created_at", "updated_at"}
JSON_COLUMNS = {"recurrence", "snapshot"}


def _fields() -> list[SyncFields]:
    day = date.today() + timedelta(days=5)
    start = at(2, 9).replace(tzinfo=UTC)
    return [
        make(  # timed, texts, a zone
            summary="Board meeting",
            description="Agenda:\n1. numbers",
            location="Room “4”",
            start=start,
            end=start + timedelta(minutes=50),
            time_zone=ZONE,
        ),
        make(  # all-day, free, no texts
            summary="Conference",
            description=None,
            location=None,
            start=day,
            end=day + timedelta(days=2),
            time_zone="",
            transparency="transparent",
        ),
        make(  # a series
            summary="Stand-up",
            description=None,
            location="Room 4",
            start=start,
            end=start + timedelta(minutes=15),
            time_zone=ZONE,
            visibility="private",
            recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
        ),
    ]


async def _raw(h: Harness, table: Table, where: Any) -> list[dict[str, Any]]:
    """Rows as the database holds them (no SQLAlchemy types: JSON as its text)."""
    async with h.db.session() as s:
        conn = await s.connection()
        result = await conn.execute(select(text("*")).select_from(table).where(where))
        return [dict(row._mapping) for row in result]


async def _sql_nulls(h: Harness, table: Table, key: str, name: str, ids: list[uuid.UUID]) -> int:
    async with h.db.session() as s:
        found = await s.scalar(
            select(func.count())
            .select_from(table)
            .where(table.c[key].in_(ids), table.c[name].is_(None))
        )
        return int(found or 0)


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if name in OWN:
            continue
        if name in JSON_COLUMNS and isinstance(value, str):
            # the JSON as data (the bulk path stores a snapshot's canonical text, the ORM
            # json.dumps'); SQL NULL stays None, so it never equals JSON's null
            value = ("json", json.loads(value))
        out[name] = value
    return out


async def test_a_bulk_imported_entry_is_stored_as_the_orm_path_stores_it(h: Harness) -> None:
    orm_ids, bulk_ids = [], []
    for n, g in enumerate(_fields()):
        values = validate(mapping.draft(g, None, ZONE))
        crm = mapping.imported_fields(g, values)
        async with h.db.session() as s:
            activity = await activities.create(
                s,
                h.tenant_id,
                type_key="meeting",
                owner_id=h.user_id,
                values=values,
                organizer_email="alice@example.com",
                origin=ChangeOrigin.SYNC,
                source=SOURCE,
            )
            link = links.new(
                h.tenant_id,
                h.binding_id,
                activity.id,
                f"orm{n}",
                state=LinkState.LINKED,
                snapshot=g.to_json(),
                crm_hash=content_hash(crm),
                google_hash=content_hash(g),
                google_etag=f'"{n}"',
                google_updated=UPDATED,
                ical_uid=f"{n}@google.com",
            )
            s.add(link)
            await s.commit()
            orm_ids.append(activity.id)
        snapshot = canonical_json(g.to_json())
        item = bulk_import.ImportedEvent(
            values=values,
            google_event_id=f"bulk{n}",
            organizer_email="alice@example.com",
            snapshot_json=snapshot,
            google_hash=digest(snapshot),
            crm_hash=content_hash(crm),
            google_etag=f'"{n}"',
            google_updated=UPDATED,
            ical_uid=f"{n}@google.com",
        )
        async with h.db.session() as s:
            bulk_ids += await bulk_import.insert_imported(
                s,
                h.tenant_id,
                h.binding_id,
                [item],
                type_key="meeting",
                owner_id=h.user_id,
                source=SOURCE,
                origin=ChangeOrigin.SYNC,
            )
            await s.commit()

    tables = [
        (cast(Table, Activity.__table__), "id"),
        (cast(Table, Change.__table__), "activity_id"),
        (cast(Table, EventLink.__table__), "activity_id"),
    ]
    for table, key in tables:
        for orm_id, bulk_id in zip(orm_ids, bulk_ids, strict=True):
            (orm,) = await _raw(h, table, table.c[key] == orm_id)
            (bulk,) = await _raw(h, table, table.c[key] == bulk_id)
            assert _comparable(bulk) == _comparable(orm), table.name
        for name in JSON_COLUMNS & set(table.c.keys()):
            # JSON's null where the ORM stores JSON's null, never SQL NULL (asyncpg hands
            # both over as None: asked in SQL)
            assert await _sql_nulls(h, table, key, name, bulk_ids) == 0, name
            assert await _sql_nulls(h, table, key, name, orm_ids) == 0, name

    # read back through the models, both are the same entry with the same link
    async with h.db.session() as s:
        for orm_id, bulk_id in zip(orm_ids, bulk_ids, strict=True):
            orm_a = await activities.get(s, h.tenant_id, orm_id)
            bulk_a = await activities.get(s, h.tenant_id, bulk_id)
            assert orm_a is not None and bulk_a is not None
            assert mapping.activity_fields(bulk_a) == mapping.activity_fields(orm_a)
            assert bulk_a.recurrence == orm_a.recurrence
            orm_l = await links.by_activity(s, h.binding_id, orm_id)
            bulk_l = await links.by_activity(s, h.binding_id, bulk_id)
            assert orm_l is not None and bulk_l is not None
            assert bulk_l.snapshot == orm_l.snapshot
            assert SyncFields.from_json(bulk_l.snapshot or {}) == SyncFields.from_json(
                orm_l.snapshot or {}
            )
            assert (bulk_l.google_hash, bulk_l.crm_hash) == (orm_l.google_hash, orm_l.crm_hash)
    # the change feed: consecutive numbers, one `created` per entry, bulk or not
    async with h.db.session() as s:
        seqs = list(
            await s.scalars(
                select(Change.seq).where(Change.tenant_id == h.tenant_id).order_by(Change.seq)
            )
        )
    assert seqs == list(range(seqs[0], seqs[0] + 2 * len(orm_ids)))


async def test_a_row_of_the_wrong_width_or_a_missing_column_is_refused(h: Harness) -> None:
    table = cast(Table, Change.__table__)
    into = bulk_import.row_table(table, ["seq", "activity_id"])
    now = datetime.now(UTC)
    shared = {"tenant_id": h.tenant_id, "owner_id": h.user_id, "kind": "created", "version": 1}
    async with h.db.session() as s:
        conn = await s.connection()
        try:
            await bulk_import.insert_values(conn, into, [(1, uuid.uuid4())], shared)
        except ValueError as exc:  # origin and created_at given nowhere
            assert "every column" in str(exc)
        else:
            raise AssertionError("a missing column was not refused")
        full = shared | {"origin": "sync", "created_at": now}
        try:
            await bulk_import.insert_values(conn, into, [(1, uuid.uuid4(), "x")], full)
        except ValueError:
            pass
        else:
            raise AssertionError("a row of three values for two columns was not refused")


def test_new_ids_are_what_uuid4_makes() -> None:
    """The bulk import's ids (store.base.new_ids: one os.urandom for all) are uuid4's kind:
    random version-4 UUIDs of RFC 4122's variant, all different."""
    ids = new_ids(1000)
    assert len(ids) == len(set(ids)) == 1000
    for made in ids:
        assert made.version == uuid.uuid4().version == 4
        assert made.variant == uuid.RFC_4122
    assert new_ids(0) == []
    assert len({made.int >> 96 for made in ids}) > 900  # random, not a counter


async def test_sqlite_writes_a_chunk_as_statements_of_many_rows(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a chunk's rows go as INSERTs of up to SQLITE_ROWS rows each, not as an
    executemany (which takes the GIL back after every row: the writes then waited for the
    event loop's switch interval row by row): the rows beyond one statement go in the next,
    a shorter statement leaves its missing rows out, and each row is stored once, as a
    statement of one row a time stores it. Fewer rows than SQLITE_MANY_FROM, and every chunk
    on PostgreSQL, go as an executemany of one row's INSERT."""
    sent: list[tuple[str, bool]] = []

    def record(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO"):
            sent.append((statement.split()[2], many))

    fields = _fields()

    async def store(prefix: str) -> list[uuid.UUID]:
        items = []
        for n in range(7):
            g = fields[n % len(fields)]
            values = validate(mapping.draft(g, None, ZONE))
            snapshot = canonical_json(g.to_json())
            items.append(
                bulk_import.ImportedEvent(
                    values=values,
                    google_event_id=f"{prefix}{n}",
                    organizer_email=None,
                    snapshot_json=snapshot,
                    google_hash=digest(snapshot),
                    crm_hash=content_hash(mapping.imported_fields(g, values)),
                    google_etag=f'"{n}"',
                    google_updated=UPDATED,
                    ical_uid=None,
                )
            )
        async with h.db.session() as s:
            ids = await bulk_import.insert_imported(
                s,
                h.tenant_id,
                h.binding_id,
                items,
                type_key="meeting",
                owner_id=h.user_id,
                source=SOURCE,
                origin=ChangeOrigin.SYNC,
            )
            await s.commit()
        return ids

    tables = ["activity", "change", "event_link"]
    sa_event.listen(h.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        # 7 rows, fewer than SQLITE_MANY_FROM: one row's INSERT as an executemany, as on
        # PostgreSQL (a small calendar's import keeps no statement of many rows prepared)
        one_at_a_time = await store("whole")
        assert sent == [(t, True) for t in tables]
        sent.clear()
        monkeypatch.setattr(bulk_import, "SQLITE_ROWS", 3)
        monkeypatch.setattr(bulk_import, "SQLITE_MANY_FROM", 2)
        monkeypatch.setattr(bulk_import, "_PLANS", {})  # plans are built with the row count
        in_threes = await store("threes")
    finally:
        sa_event.remove(h.db.engine.sync_engine, "before_cursor_execute", record)
    if h.db.dialect == "sqlite":
        assert sent == [(t, False) for t in tables for _ in range(3)]  # 3 + 3 + 1 rows
    else:
        assert sent == [(t, True) for t in tables]
    for table, key in [
        (cast(Table, Activity.__table__), "id"),
        (cast(Table, Change.__table__), "activity_id"),
        (cast(Table, EventLink.__table__), "activity_id"),
    ]:
        for whole_id, three_id in zip(one_at_a_time, in_threes, strict=True):
            (whole,) = await _raw(h, table, table.c[key] == whole_id)
            (three,) = await _raw(h, table, table.c[key] == three_id)
            assert _comparable(three) == _comparable(whole), table.name
    async with h.db.session() as s:
        seqs = list(
            await s.scalars(
                select(Change.seq).where(Change.tenant_id == h.tenant_id).order_by(Change.seq)
            )
        )
    assert seqs == list(range(seqs[0], seqs[0] + 14))
