"""A first import's writes as SQLAlchemy Core bulk inserts, and the id-and-count reads the
streamed pull needs (store.links keeps the per-link ORM reads the reconcile path uses).

The plain import of thousands of Google events is where the ORM's bookkeeping cost most
(building an Activity, an EventLink and a Change object per event, then flushing them): one
executemany per table for a chunk writes the same rows. Everything else about a write stays
as activities.create_many does it: the tenant's change-feed numbers are reserved first in the
same transaction (changes.reserve: the feed's order-and-no-gaps guarantee), one `created`
change per activity, and the outbound-webhook outbox gets its message in the same commit.
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Table, Uuid, func, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeDecorator

from calsync.domain.activity import ActivityValues

from . import changes, webhooks
from .activities import Source
from .base import UTCDateTime, chunked, new_id, utcnow
from .models import Activity, Change, EventLink
from .statuses import ActivitySource, ChangeKind, LinkState
from .webhook_models import WebhookEndpoint

# the tables themselves: an insert of the mapped class would take the ORM's bulk path, which
# still builds per-row state; their rows go to the driver's executemany (insert_rows)
_ACTIVITY = cast(Table, Activity.__table__)
_CHANGE = cast(Table, Change.__table__)
_LINK = cast(Table, EventLink.__table__)


@dataclass(frozen=True)
class ImportedEvent:
    """One Google event to store as a new activity with its link (already validated)."""

    values: ActivityValues
    google_event_id: str
    organizer_email: str | None
    #: the link's merge base and hashes (reconcile.agree's values)
    snapshot: dict[str, Any]
    google_hash: str
    crm_hash: str
    google_etag: str | None
    google_updated: datetime | None
    ical_uid: str | None
    read_only: str | None = None


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
    ids = [new_id() for _ in items]
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
    change_rows = [{"seq": seq, "activity_id": aid} for seq, aid in enumerate(ids, start=first)]
    link_shared = {
        "tenant_id": tenant_id,
        "binding_id": binding_id,
        "google_recurring_event_id": None,
        "state": LinkState.LINKED,
        "created_at": now,
        "updated_at": now,
    }
    link_rows = [
        {
            "id": new_id(),
            "activity_id": aid,
            "google_event_id": item.google_event_id,
            "ical_uid": item.ical_uid,
            "read_only": item.read_only,
            "google_etag": item.google_etag,
            "google_updated": item.google_updated,
            "snapshot": item.snapshot,
            "crm_hash": item.crm_hash,
            "google_hash": item.google_hash,
        }
        for aid, item in zip(ids, items, strict=True)
    ]
    connection = await session.connection()
    await insert_rows(connection, _ACTIVITY, activity_rows, activity_shared)
    await insert_rows(connection, _CHANGE, change_rows, change_shared)
    await insert_rows(connection, _LINK, link_rows, link_shared)
    if await _wants_created(session, tenant_id):
        _emit_created(session, [activity_shared | row for row in activity_rows], origin)
    return ids


async def insert_rows(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    shared: Mapping[str, Any] | None = None,
) -> None:
    """One executemany of `rows` handed to the driver as `_DriverRows` renders them: a value
    for every column, in the row or in `shared` (the columns all rows have the same value
    in: rendered once).

    Hand-written because SQLAlchemy's own executemany runs every value of every row through
    its bind processors (UTCDateTime's conversion, then SQLite's datetime formatting, the
    UUIDs' hex, JSON) one function call at a time: at 10,000 events that was the largest
    part of an import's CPU. `_DriverRows` renders what those processors render, on SQLite
    and on PostgreSQL (asyncpg); a column type it does not know is refused, not guessed, and
    tests/sync/test_stream.py compares its rows with a Core insert's on both databases.
    Column defaults are not applied: every column must be given (a KeyError otherwise)."""
    if rows:
        render = _DriverRows.of(connection.dialect, table)
        await connection.exec_driver_sql(render.sql, render.rows(rows, shared or {}))


def _sqlite_naive(value: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format: microseconds always written
    return value.isoformat(" ", "microseconds")


def _sqlite_utc(value: datetime) -> str:
    # naive UTC as UTCDateTime stores it on SQLite: the aware text without its "+00:00"
    # (isoformat always writes a 4-digit year, so the first 26 characters are the rest)
    return _pg_utc(value).isoformat(" ", "microseconds")[:26]


def _pg_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        raise ValueError("UTCDateTime needs an aware datetime")
    return value.astimezone(UTC)


_uuid_hex = operator.attrgetter("hex")


@dataclass(frozen=True)
class _DriverRows:
    """A table's INSERT of every column in the dialect's (positional) parameter style, and
    per column how a value becomes what SQLAlchemy's bind processor would have handed the
    driver: SQLite takes UUIDs as hex and datetimes as text, asyncpg both as they are (aware
    UTC for UTCDateTime); JSON is its text on both (SQLAlchemy's JSON type writes None as
    the JSON text 'null', so it converts None too); str, int and bool pass as they are."""

    sql: str
    names: tuple[str, ...]
    #: (column index, converter, converts None too)
    convert: tuple[tuple[int, Callable[[Any], Any], bool], ...]

    @classmethod
    def of(cls, dialect: Dialect, table: Table) -> _DriverRows:
        key = (dialect.name, table.name)
        found = _RENDERS.get(key)
        if found is None:
            found = _RENDERS[key] = cls._build(dialect, table)
        return found

    @classmethod
    def _build(cls, dialect: Dialect, table: Table) -> _DriverRows:
        if dialect.name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"no driver rows for {dialect.name}")
        sqlite = dialect.name == "sqlite"
        names = tuple(c.name for c in table.columns)
        compiled = insert(table).compile(dialect=dialect, column_keys=list(names))
        if tuple(compiled.positiontup or ()) != names:
            raise NotImplementedError(f"{dialect.name}: not a positional INSERT of every column")
        convert: list[tuple[int, Callable[[Any], Any], bool]] = []
        for i, column in enumerate(table.columns):
            kind = column.type
            if isinstance(kind, UTCDateTime):
                convert.append((i, _sqlite_utc if sqlite else _pg_utc, False))
            elif isinstance(kind, TypeDecorator):
                raise NotImplementedError(f"{table.name}.{column.name}: {kind!r}")
            elif isinstance(kind, DateTime):
                if sqlite:
                    convert.append((i, _sqlite_naive, False))
            elif isinstance(kind, Uuid):
                if sqlite:
                    convert.append((i, _uuid_hex, False))
            elif isinstance(kind, JSON):
                convert.append((i, json.dumps, True))
            elif not isinstance(kind, (String, Integer, Boolean)):
                raise NotImplementedError(f"{table.name}.{column.name}: {kind!r}")
        return cls(compiled.string, names, tuple(convert))

    def rows(
        self, rows: Sequence[Mapping[str, Any]], shared: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        convert: list[tuple[Callable[[Any], Any], bool] | None] = [None] * len(self.names)
        for i, fn, nulls in self.convert:
            convert[i] = (fn, nulls)
        template: list[Any] = [None] * len(self.names)
        own: list[tuple[int, str, tuple[Callable[[Any], Any], bool] | None]] = []
        for i, name in enumerate(self.names):
            if name in shared:
                template[i] = self._render(convert[i], shared[name])
            else:
                own.append((i, name, convert[i]))
        out = []
        for values in rows:
            row = template.copy()
            for i, name, how in own:
                row[i] = self._render(how, values[name]) if how else values[name]
            out.append(tuple(row))  # exec_driver_sql takes a list of tuples as an executemany
        return out

    @staticmethod
    def _render(how: tuple[Callable[[Any], Any], bool] | None, value: Any) -> Any:
        if how is None or (value is None and not how[1]):
            return value
        return how[0](value)


_RENDERS: dict[tuple[str, str], _DriverRows] = {}


def _activity_row(aid: uuid.UUID, item: ImportedEvent) -> dict[str, Any]:
    """An activity's own columns (insert_imported gives those all its rows share)."""
    v, t = item.values, item.values.timing
    return {
        "id": aid,
        "subject": v.subject,
        "description": v.description,
        "location": v.location,
        "all_day": t.all_day,
        "time_zone": t.time_zone,
        "start_local": t.start_local,
        "end_local": t.end_local,
        "start_utc": t.start_utc,
        "end_utc": t.end_utc,
        "range_start_utc": v.range_start_utc,
        "range_end_utc": v.range_end_utc,
        "visibility": v.visibility,
        "transparency": v.transparency,
        "status": v.status,
        "recurrence": list(v.recurrence) if v.recurrence else None,
        "original_start_local": v.original_start_local,
        "organizer_email": item.organizer_email,
    }


async def _wants_created(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether an enabled outbound-webhook endpoint of the tenant takes activity.created (one
    indexed read per chunk, as the outbox itself pays)."""
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


async def refresh_statistics(session: AsyncSession) -> bool:
    """After a large bulk import, PostgreSQL: ANALYZE the tables it filled, in the caller's
    transaction. Until autovacuum gets to them (a minute or more later) the planner knows
    nothing of the rows just loaded, and picked nested loops over them that made the push's
    first window query (`links.unexported`) take seconds per thousand events. A role that
    does not own the tables gets a warning from PostgreSQL, not an error. SQLite plans
    without statistics (its ANALYZE would pin plans to this moment's table sizes): nothing.
    Returns whether it ran."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return False
    quote = connection.dialect.identifier_preparer.format_table
    names = ", ".join(quote(t) for t in sorted((_ACTIVITY, _CHANGE, _LINK), key=lambda t: t.name))
    await connection.exec_driver_sql(f"ANALYZE {names}")
    return True


# reads by ids and counts -------------------------------------------------------------------


async def linked_event_ids(
    session: AsyncSession, binding_id: uuid.UUID, google_event_ids: Collection[str]
) -> set[str]:
    """Which of these events have a link in the binding (ids only, no rows loaded)."""
    out: set[str] = set()
    for chunk in chunked(google_event_ids):
        rows = await session.scalars(
            select(EventLink.google_event_id).where(
                EventLink.binding_id == binding_id,
                EventLink.google_event_id.in_(chunk),
            )
        )
        out.update(rows)
    return out


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
                Activity.tenant_id == tenant_id,
                Activity.owner_id == owner_id,
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
