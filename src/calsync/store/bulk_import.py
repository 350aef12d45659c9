"""A first import's writes as SQLAlchemy Core bulk inserts, and the id-and-count reads the
streamed pull needs (store.links keeps the per-link ORM reads the reconcile path uses).

The plain import of thousands of Google events is where the ORM's bookkeeping cost most
(building an Activity, an EventLink and a Change object per event, then flushing them): one
statement per table for a chunk (SQLite: `SQLITE_ROWS`; PostgreSQL: an executemany) writes
the same rows. Everything else about a write stays
as activities.create_many does it: the tenant's change-feed numbers are reserved first in the
same transaction (changes.reserve: the feed's order-and-no-gaps guarantee), one `created`
change per activity, and the outbound-webhook outbox gets its message in the same commit.
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Integer,
    String,
    Table,
    TableClause,
    Uuid,
    column,
    func,
    insert,
    select,
)
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeDecorator

from calsync.domain.activity import ActivityValues

from . import changes, webhooks
from .activities import Source
from .base import Base, UTCDateTime, chunked, new_ids, table_of, unindexed, utcnow
from .models import Activity, Change, EventLink
from .statuses import ActivitySource, ChangeKind, LinkState
from .webhook_models import WebhookEndpoint

# the tables themselves: an insert of the mapped class would take the ORM's bulk path, which
# still builds per-row state; their rows go to the driver's executemany (insert_values)
_ACTIVITY = table_of(Activity)
_CHANGE = table_of(Change)
_LINK = table_of(EventLink)


class ImportedEvent(NamedTuple):
    """One Google event to store as a new activity with its link (already validated). A named
    tuple, not a frozen dataclass: as immutable, and built in a fifth of the time (one per
    event of a first import; a frozen dataclass sets each of its fields through
    object.__setattr__)."""

    values: ActivityValues
    google_event_id: str
    organizer_email: str | None
    #: the link's merge base as its JSON text (fields.canonical_json: the text its Google
    #: hash digests, so encoded once) and hashes (reconcile.agree's values)
    snapshot_json: str
    google_hash: str
    crm_hash: str
    google_etag: str | None
    google_updated: datetime | None
    ical_uid: str | None
    read_only: str | None = None


class EncodedJSON(JSON):
    """A JSON column whose values arrive as their JSON text, encoded already (a link's
    snapshot: the text its hash was taken of), so they are not encoded again; None is JSON's
    null, as SQLAlchemy's JSON type stores None. For bulk rows (`row_table`), not for the
    models: an ORM attribute holds the data, not its text."""

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        return _encoded_json


def _encoded_json(value: str | None) -> str:
    return "null" if value is None else value


def row_table(
    table: Table, names: Sequence[str], encoded_json: Collection[str] = ()
) -> TableClause:
    """The columns `names` of a model's table, in that order, with the model's types (those
    in `encoded_json` as EncodedJSON): what one tuple of `insert_values` holds."""
    columns = []
    for name in names:
        kind = EncodedJSON() if name in encoded_json else table.c[name].type
        columns.append(column(name, kind))
    return sql_table(table.name, *columns)


_ACTIVITY_ROW = row_table(
    _ACTIVITY,
    (
        "id",
        "subject",
        "description",
        "location",
        "all_day",
        "time_zone",
        "start_local",
        "end_local",
        "start_utc",
        "end_utc",
        "range_start_utc",
        "range_end_utc",
        "visibility",
        "transparency",
        "status",
        "recurrence",
        "original_start_local",
        "organizer_email",
    ),
)
_CHANGE_ROW = row_table(_CHANGE, ("seq", "activity_id"))
_LINK_ROW = row_table(
    _LINK,
    (
        "id",
        "activity_id",
        "google_event_id",
        "ical_uid",
        "read_only",
        "google_etag",
        "google_updated",
        "snapshot",
        "crm_hash",
        "google_hash",
    ),
    encoded_json=("snapshot",),
)


async def insert_imported(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    items: Sequence[ImportedEvent],
    *,
    type_key: str,
    owner_id: uuid.UUID,
    source: Source,
    origin: str,
) -> list[uuid.UUID]:
    """Store the activities, their `created` changes and their links; returns the new ids.
    The caller commits (one chunk per transaction keeps each one short)."""
    if not items:
        return []
    if any(item.values.attendees for item in items):
        raise ValueError("the bulk import stores no attendees (import_one does)")
    last = await changes.reserve(session, tenant_id, len(items))
    first = last - len(items) + 1
    now = utcnow()
    made = new_ids(2 * len(items))  # one os.urandom for the activities' and links' ids
    ids, link_ids = made[: len(items)], made[len(items) :]
    # the columns activities._apply sets, for new entries from Google without guests
    activity_shared = {
        "tenant_id": tenant_id,
        "type_key": type_key,
        "owner_id": owner_id,
        "recurring_parent_id": None,
        "source": ActivitySource.GOOGLE,
        "source_calendar_id": source.calendar_id,
        "source_account": source.account,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }
    activity_rows = [_activity_row(aid, item) for aid, item in zip(ids, items, strict=True)]
    change_shared = {
        "tenant_id": tenant_id,
        "owner_id": owner_id,
        "kind": ChangeKind.CREATED,
        "version": 1,
        "origin": origin,
        "created_at": now,
    }
    change_rows = list(zip(range(first, last + 1), ids, strict=True))
    link_shared = {
        "tenant_id": tenant_id,
        "binding_id": binding_id,
        "google_recurring_event_id": None,
        "state": LinkState.LINKED,
        "created_at": now,
        "updated_at": now,
    }
    link_rows = [
        (
            link_id,
            aid,
            item.google_event_id,
            item.ical_uid,
            item.read_only,
            item.google_etag,
            item.google_updated,
            item.snapshot_json,
            item.crm_hash,
            item.google_hash,
        )
        for link_id, aid, item in zip(link_ids, ids, items, strict=True)
    ]
    connection = await session.connection()
    await insert_values(connection, _ACTIVITY_ROW, activity_rows, activity_shared)
    await insert_values(connection, _CHANGE_ROW, change_rows, change_shared)
    await insert_values(connection, _LINK_ROW, link_rows, link_shared)
    if await _wants_created(session, tenant_id):
        names = [c.name for c in _ACTIVITY_ROW.columns]
        rows = [activity_shared | dict(zip(names, row, strict=True)) for row in activity_rows]
        _emit_created(session, rows, origin)
    return ids


async def insert_values(
    connection: AsyncConnection,
    into: TableClause,
    rows: Sequence[tuple[Any, ...]],
    shared: Mapping[str, Any] | None = None,
) -> None:
    """Insert `rows`, tuples in the order of `into`'s columns (`row_table`), and `shared`:
    the columns every row has the same value in (rendered once). PostgreSQL: one
    executemany; SQLite: an INSERT of up to SQLITE_ROWS rows per statement (fewer than
    SQLITE_MANY_FROM rows: an executemany, as on PostgreSQL).

    The values go to the driver as SQLAlchemy's bind processors would have rendered them
    (`_Plan`), column by column, instead of through those processors one value at a time:
    at 10,000 events that was the largest part of an import's CPU. Column defaults are not
    applied: a table of the models must get every one of its columns (ValueError)."""
    if not rows:
        return
    plan = _Plan.of(connection.dialect, into, tuple(shared or ()))
    if plan.batch is None or len(rows) < SQLITE_MANY_FROM:
        # PostgreSQL: asyncpg pipelines an executemany's rows itself; SQLite: a few rows (a
        # small calendar's import) gain nothing from the statement of many, which each
        # connection would then prepare and keep
        await connection.exec_driver_sql(plan.single, plan.params(rows, shared or {}))
        return
    for i in range(0, len(rows), plan.batch):  # SQLite: a statement of many rows
        await connection.exec_driver_sql(
            plan.sql, plan.sqlite_params(rows[i : i + plan.batch], shared or {})
        )


def _sqlite_naive(value: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format: microseconds always written
    return value.isoformat(" ", "microseconds")


def _sqlite_utc(value: datetime) -> str:
    # naive UTC as UTCDateTime stores it on SQLite: the aware text without its "+00:00"
    # (isoformat always writes a 4-digit year, so the first 26 characters are the rest)
    return _pg_utc(value).isoformat(" ", "microseconds")[:26]


def _utc_text(value: datetime, texts: dict[datetime, str]) -> str:
    # aware datetimes are equal (and hash alike) when they are the same instant, whatever
    # their zones, and the same instant has the same UTC text; a naive one equals no aware
    # one, so it still gets to _sqlite_utc's ValueError
    text = texts.get(value)
    if text is None:
        text = texts[value] = _sqlite_utc(value)
    return text


def _pg_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        raise ValueError("UTCDateTime needs an aware datetime")
    return value.astimezone(UTC)


def _json_text(value: Any) -> str:
    # SQLAlchemy's JSON type (none_as_null=False, as the models use it) stores None as 'null'
    return "null" if value is None else json.dumps(value)


_uuid_hex = operator.attrgetter("hex")

#: how a value becomes what the driver takes, and whether None goes through it too
_Converter = tuple[Callable[[Any], Any], bool]


@dataclass(frozen=True)
class _Plan:
    """An INSERT of a row table's columns and then the shared ones, in the dialect's
    (positional) parameter style, and per column how a value becomes what SQLAlchemy's bind
    processor would have handed the driver: SQLite takes UUIDs as hex and datetimes as text,
    asyncpg both as they are (aware UTC for UTCDateTime); JSON is its text on both, None
    included ('null'); EncodedJSON is already text; str, int and bool pass as they are."""

    sql: str
    width: int
    #: SQLite: `sql` inserts the first n of `batch` rows bound (SQLITE_ROWS); None: `sql`
    #: is one row's, for an executemany (PostgreSQL)
    batch: int | None
    #: one row's INSERT, for an executemany (PostgreSQL; SQLite below SQLITE_MANY_FROM rows)
    single: str
    #: (index in the row, converter) for the row's columns that need one
    convert: tuple[tuple[int, _Converter], ...]
    shared: tuple[tuple[str, _Converter | None], ...]

    @classmethod
    def of(cls, dialect: Dialect, into: TableClause, shared: tuple[str, ...]) -> _Plan:
        key = (dialect.name, into, shared)
        found = _PLANS.get(key)
        if found is None:
            found = _PLANS[key] = cls._build(dialect, into, shared)
        return found

    @classmethod
    def _build(cls, dialect: Dialect, into: TableClause, shared: tuple[str, ...]) -> _Plan:
        if dialect.name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"no driver rows for {dialect.name}")
        model = Base.metadata.tables.get(into.name)
        own = [c.name for c in into.columns]
        names = own + list(shared)
        if model is not None and sorted(names) != sorted(c.name for c in model.columns):
            raise ValueError(f"{into.name}: every column once, in the rows or shared")
        types = {c.name: c.type for c in into.columns}
        if model is not None:
            types.update((name, model.c[name].type) for name in shared if name not in types)
        full = sql_table(into.name, *(column(name, types[name]) for name in names))
        compiled = insert(full).compile(dialect=dialect, column_keys=names)
        if list(compiled.positiontup or ()) != names:
            raise NotImplementedError(f"{dialect.name}: not a positional INSERT of every column")
        how = {name: _converter(dialect, into.name, name, types[name]) for name in names}
        convert = tuple(
            (i, found) for i, name in enumerate(own) if (found := how[name]) is not None
        )
        single = sql = compiled.string
        batch = None
        if dialect.name == "sqlite":
            limit = _sqlite_parameter_limit() - len(shared) - 1
            batch = max(1, min(SQLITE_ROWS, limit // len(own)))
            sql = _sqlite_rows_sql(sql, len(own), len(shared), batch)
        shared_how = tuple((n, how[n]) for n in shared)
        return cls(sql, len(own), batch, single, convert, shared_how)

    def params(
        self, rows: Sequence[tuple[Any, ...]], shared: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """The rows for the driver's executemany, converted column by column."""
        columns = self._columns(rows)
        n = len(rows)
        columns += [repeat(value, n) for value in self._shared(shared)]  # type: ignore[misc]
        return list(
            zip(*columns, strict=True)
        )  # exec_driver_sql takes a list of tuples as an executemany

    def sqlite_params(
        self, rows: Sequence[tuple[Any, ...]], shared: Mapping[str, Any]
    ) -> tuple[Any, ...]:
        """The parameters of `sql` on SQLite for up to `batch` rows: the shared values,
        the rows' values row after row (NULLs for the rows there are not), their count."""
        assert self.batch is not None and len(rows) <= self.batch
        columns = self._columns(rows)
        flat: list[Any] = [None] * (self.width * self.batch)
        for i, values in enumerate(columns):  # row after row: column i every width values
            flat[i : self.width * len(rows) : self.width] = values
        return (*self._shared(shared), *flat, len(rows))

    def _shared(self, shared: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, how in self.shared:
            value = shared[name]
            if how is not None and (value is not None or how[1]):
                value = how[0](value)
            out.append(value)
        return out

    def _columns(self, rows: Sequence[tuple[Any, ...]]) -> list[Sequence[Any]]:
        """The rows' values column by column, converted."""
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        if len(columns) != self.width:
            raise ValueError(f"rows of {len(columns)} values for {self.width} columns")
        #: SQLite's UTC texts by instant, shared by the row's UTCDateTime columns: an
        #: activity's range is its start and end (range_start_utc is start_utc) unless it
        #: recurs, and isoformat was the import's costliest call (5 an activity and link)
        utc_texts: dict[datetime, str] = {}
        for i, (fn, nulls) in self.convert:
            if fn is _sqlite_utc:
                columns[i] = [None if v is None else _utc_text(v, utc_texts) for v in columns[i]]
            elif nulls:
                columns[i] = list(map(fn, columns[i]))
            else:
                columns[i] = [None if v is None else fn(v) for v in columns[i]]
        return columns


def _converter(dialect: Dialect, table: str, name: str, kind: Any) -> _Converter | None:
    sqlite = dialect.name == "sqlite"
    if isinstance(kind, UTCDateTime):
        return (_sqlite_utc if sqlite else _pg_utc), False
    if isinstance(kind, TypeDecorator):
        raise NotImplementedError(f"{table}.{name}: {kind!r}")
    if isinstance(kind, EncodedJSON):
        return _encoded_json, True
    if isinstance(kind, DateTime):
        return (_sqlite_naive, False) if sqlite else None
    if isinstance(kind, Uuid):
        return (_uuid_hex, False) if sqlite else None
    if isinstance(kind, JSON):
        return _json_text, True
    if not isinstance(kind, (String, Integer, Boolean)):
        raise NotImplementedError(f"{table}.{name}: {kind!r}")
    return None


_PLANS: dict[tuple[str, TableClause, tuple[str, ...]], _Plan] = {}

#: rows one INSERT takes on SQLite: a chunk of the import (sync.fresh.IMPORT_CHUNK). An
#: executemany would take the GIL back after every row SQLite stepped, and while the event
#: loop maps the next chunk each row then waited for the loop's switch interval, so the
#: writes crawled until the loop went idle; one statement runs all its rows in SQLite with
#: the GIL released, in parallel with the mapping. Its text, and so the program sqlite3
#: prepares and caches per connection (~100 bytes a bound value: ~1.7 MB for the import's
#: three tables), is the same whatever the chunk's length: the rows a chunk does not have
#: are NULLs that LIMIT leaves out.
SQLITE_ROWS = 500
#: fewer rows than this go as an executemany of one row's INSERT on SQLite too
SQLITE_MANY_FROM = 50


def _sqlite_rows_sql(single: str, width: int, shared: int, batch: int) -> str:
    """`single`, INSERT INTO t (own..., shared...) VALUES (?, ...), as an INSERT of the
    first n of `batch` rows of the own columns with the shared values given once:
    ... SELECT *, ?... FROM (VALUES (?, ...), ...) LIMIT n. The values reach the table as
    a VALUES row's would (the columns' affinity applies alike)."""
    head, sep, tail = single.rpartition(" VALUES ")
    if not sep or tail != "(" + ", ".join(["?"] * (width + shared)) + ")":
        raise NotImplementedError(f"not a one-row INSERT ... VALUES: {single[:60]}")
    group = "(" + ", ".join(["?"] * width) + ")"
    columns = ", ".join(["*", *(["?"] * shared)])
    rows = ", ".join([group] * batch)
    # only SQLAlchemy's compiled INSERT and placeholders: no value is spliced into the text
    return f"{head} SELECT {columns} FROM (VALUES {rows}) LIMIT ?"  # noqa: S608


@functools.cache
def _sqlite_parameter_limit() -> int:
    """How many parameters one statement may bind: the limit of the SQLite library the
    sqlite3 module (aiosqlite's) is linked with (32,766 since SQLite 3.32, 999 before)."""
    probe = sqlite3.connect(":memory:")
    try:
        return probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        probe.close()


def _activity_row(aid: uuid.UUID, item: ImportedEvent) -> tuple[Any, ...]:
    """An activity's own columns, in `_ACTIVITY_ROW`'s order (insert_imported gives those all
    its rows share)."""
    v, t = item.values, item.values.timing
    return (
        aid,
        v.subject,
        v.description,
        v.location,
        t.all_day,
        t.time_zone,
        t.start_local,
        t.end_local,
        t.start_utc,
        t.end_utc,
        v.range_start_utc,
        v.range_end_utc,
        v.visibility,
        v.transparency,
        v.status,
        list(v.recurrence) if v.recurrence else None,
        v.original_start_local,
        item.organizer_email,
    )


async def _wants_created(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether an enabled outbound-webhook endpoint of the tenant takes activity.created (one
    indexed read per chunk, as the outbox itself pays; none when the chunk's reservation read
    under the write lock that the tenant has no enabled endpoint: SQLite's changes.reserve)."""
    if webhooks.noted_without_endpoints(session, tenant_id):
        return False
    rows = await session.scalars(
        select(WebhookEndpoint.events).where(
            WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.enabled.is_(True)
        )
    )
    return any(events is None or webhooks.ACTIVITY_CREATED in events for events in rows)


def _emit_created(session: AsyncSession, rows: Sequence[dict[str, Any]], origin: str) -> None:
    """The outbox messages `changes.record` would have queued, rendered from the rows: a
    transient Activity (never added to the session) is what `activity_payload` reads."""
    for row in rows:
        activity = Activity(**row)
        activity.attendees = []
        webhooks.activity_changed(session, activity, ChangeKind.CREATED, origin)


# reads by ids and counts -------------------------------------------------------------------


async def owned_activity_ids(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    owner_id: uuid.UUID,
    activity_ids: Collection[uuid.UUID],
) -> set[uuid.UUID]:
    """Which of these activities exist and belong to `owner_id`."""
    out: set[uuid.UUID] = set()
    for chunk in chunked(activity_ids):
        rows = await session.scalars(
            select(Activity.id).where(
                unindexed(Activity.tenant_id) == tenant_id,  # found by id (base.unindexed)
                unindexed(Activity.owner_id) == owner_id,
                Activity.id.in_(chunk),
            )
        )
        out.update(rows)
    return out


async def count_live_linked(
    session: AsyncSession, binding_id: uuid.UUID, google_event_ids: Collection[str]
) -> int:
    """How many of these events are linked to a live activity (what a deletion of them would
    remove from the CRM: the mass-delete guard's count)."""
    total = 0
    for chunk in chunked(google_event_ids):
        total += int(
            await session.scalar(
                select(func.count())
                .select_from(EventLink)
                .join(Activity, Activity.id == EventLink.activity_id)
                .where(
                    EventLink.binding_id == binding_id,
                    EventLink.state == LinkState.LINKED,
                    EventLink.google_event_id.in_(chunk),
                    Activity.deleted_at.is_(None),
                )
            )
            or 0
        )
    return total


async def count_live_links(
    session: AsyncSession, binding_id: uuid.UUID, *, before: datetime
) -> int:
    """Linked live activities of the binding whose link existed before `before` (the guard's
    base: the calendar as it was when the pull began, not what the stream added since)."""
    value = await session.scalar(
        select(func.count())
        .select_from(EventLink)
        .join(Activity, Activity.id == EventLink.activity_id)
        .where(
            EventLink.binding_id == binding_id,
            EventLink.state == LinkState.LINKED,
            EventLink.created_at < before,
            Activity.deleted_at.is_(None),
        )
    )
    return int(value or 0)
