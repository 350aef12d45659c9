"""The rows one sync reads at its start and writes at its end, in as few statements as the
engine can take (issue 16: a sync's CPU is mostly its fixed cost per statement and per
transaction, not its work).

- `start`: the lock (a compare-and-set UPDATE, as store.bindings.try_lock), then the binding,
  its connection, its tenant and every calendar's (id, role) of the connection in ONE SELECT,
  then the run's row — one transaction, three statements. The secrets are read as stored,
  decrypted only when a request to Google sends one (`Secrets`).
- `end_binding`: with store.runs.finish, the run's end: the binding's last sync and failure
  count, the sync token the pull reached, the push cursor and scan key the push reached, the
  webhook debt it paid, the Google-side change rate, the lock released — one transaction, two
  statements.
- `push_reads`: the feed's last seq, the links owing a write and the owner's changes after the
  push cursor, one statement.
- `activities_and_links`: the push plan's owed activities, their attendees and their links in
  the binding, one statement; `store_written`: Google's answer to a write stored on the link it
  was planned from, with whether the entry has open issues, one UPDATE.
"""

from __future__ import annotations

import functools
import typing
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    Column,
    CompoundSelect,
    Insert,
    Row,
    Select,
    String,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, joinedload, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict

from .base import Base, chunked, table_of, unindexed, utcnow
from .crypto import Sealed, sealed
from .models import (
    NOT_FROM_SYNC,
    OWED_WRITE,
    Activity,
    CalendarBinding,
    Change,
    EventLink,
    GoogleConnection,
    SyncIssue,
    SyncRun,
    Tenant,
)
from .sqlite_driver import ON_LOOP_IDS, reads_on_loop
from .statuses import BindingStage, Code, RunOutcome

#: between a calendar id and its role, and between two calendars, in the aggregated column;
#: control characters, which neither a Google calendar id nor a role contains
_FIELD, _ROW = "\x1f", "\x1e"


async def lock_free(
    session: AsyncConnection | AsyncSession, binding_id: uuid.UUID, owner: str, ttl: timedelta
) -> bool:
    """Take the binding when nobody holds it (released cleanly by the last run, so no run of a
    dead worker is left open); False when someone holds it, even an expired holder (the
    caller then goes through store.bindings.try_lock, which closes that holder's run)."""
    now = utcnow()
    result = await session.execute(
        _lock_statement(), {"binding_id": binding_id, "owner": owner, "until": now + ttl}
    )
    return bool(getattr(result, "rowcount", 0) == 1)


@functools.cache
def _lock_statement() -> Update:
    """Built once (see `_load_statement`)."""
    table = table_of(CalendarBinding)
    return (
        update(table)
        .where(
            table.c.id == bindparam("binding_id"),
            or_(table.c.locked_by.is_(None), table.c.locked_by == bindparam("owner")),
        )
        .values(locked_by=bindparam("owner"), locked_until=bindparam("until"))
    )


@dataclass(frozen=True)
class Secrets:
    """The credentials a run may send to Google, as stored: still encrypted (store.crypto),
    decrypted by sync.tokens when a request needs one."""

    refresh_token: Sealed | None = None
    access_token: Sealed | None = None
    service_account_key: Sealed | None = None
    service_account_key_password: Sealed | None = None


@dataclass
class Loaded:
    """A locked binding with what its run reads: connection, tenant, the connection's
    calendars as (Google calendar id, role), and the credentials still encrypted (the
    objects' secret columns are not loaded: reading one raises)."""

    binding: CalendarBinding
    connection: GoogleConnection
    tenant: Tenant
    calendars: list[tuple[str, str]]
    secrets: Secrets = Secrets()


async def load(conn: AsyncConnection | AsyncSession, binding_id: uuid.UUID) -> Loaded | None:
    """One SELECT: the binding joined to its connection and tenant, the connection's
    calendars aggregated into one column, and the credentials as stored (not decrypted).

    Read as plain rows on the tables (no ORM query: its loading, identity map and session
    cost 2–3× the statement); binding, connection and tenant are then made the detached
    objects the run reads, as a closed session leaves them: the columns read are loaded,
    every other attribute (the secret columns, the relationships) expired, so reading one
    raises instead of answering None."""
    with reads_on_loop():  # one row by its key (store/sqlite_driver.py)
        row = (await conn.execute(_load_statement(), {"binding_id": binding_id})).first()
    if row is None:
        return None
    binding, connection, tenant = (_detached(model, row, at) for model, at in _LOADED)
    packed, *secrets = row[_LOADED_WIDTH:]
    pairs = [p.split(_FIELD, 1) for p in (packed or "").split(_ROW) if p]
    return Loaded(
        typing.cast(CalendarBinding, binding),
        typing.cast(GoogleConnection, connection),
        typing.cast(Tenant, tenant),
        [(c, r) for c, r in pairs],
        Secrets(*map(sealed, secrets)),
    )


def _detached(model: type[Base], row: Row[typing.Any], at: list[tuple[str, int]]) -> Base:
    """`model`'s object of the row's columns at `at` (attribute, position), detached: as the
    ORM's loading makes it (no __init__), then as a closed session leaves it."""
    obj = typing.cast(Base, model.__mapper__.class_manager.new_instance())
    values = instance_dict(obj)
    for key, i in at:
        values[key] = row[i]
    make_transient_to_detached(obj)
    return obj


#: the secret columns of the rows a run starts with: none is decrypted by the start's read
#: (a Fernet decryption each, 5 for a watched calendar; a run sends one token at most)
_SEALED = (
    GoogleConnection.refresh_token,
    GoogleConnection.access_token,
    Tenant.service_account_key,
    Tenant.service_account_key_password,
)
_UNREAD = (
    *_SEALED,
    GoogleConnection.list_channel_token,
    CalendarBinding.channel_token,
    CalendarBinding.twin_channel_token,
)
_LOADED_MODELS: tuple[type[Base], ...] = (CalendarBinding, GoogleConnection, Tenant)


def _loaded_columns() -> list[tuple[type[Base], list[tuple[str, Column[typing.Any]]]]]:
    """Each loaded model's column attributes read by the start (attribute key, column), in
    the statement's order: every column but the unread ones."""
    unread = {_column(attribute) for attribute in _UNREAD}
    return [
        (
            model,
            [
                (prop.key, column)
                for prop in model.__mapper__.column_attrs
                if isinstance(column := prop.columns[0], Column) and column not in unread
            ],
        )
        for model in _LOADED_MODELS
    ]


def _column(attribute: InstrumentedAttribute[typing.Any]) -> Column[typing.Any]:
    """The table's column of a model's attribute (for statements on the tables)."""
    return table_of(typing.cast(type[Base], attribute.class_)).c[attribute.key]


#: the start's columns, in the statement's order; and each model's (attribute, position) in it
_READ = _loaded_columns()


def _positions() -> tuple[list[tuple[type[Base], list[tuple[str, int]]]], int]:
    at, n = [], 0
    for model, columns in _READ:
        at.append((model, [(key, n + i) for i, (key, _) in enumerate(columns)]))
        n += len(columns)
    return at, n


_LOADED, _LOADED_WIDTH = _positions()


@functools.cache
def _load_statement() -> Select[typing.Any]:
    """Built once: a statement object keeps its cache key, so each run skips building the
    SELECT and its alias's column proxies and computing the key again. On the tables: the
    read columns, the calendars, then the secrets a run may send as their stored text
    (`type_coerce`: no decryption)."""
    binding = table_of(CalendarBinding)
    other = binding.alias("other")
    calendars = (
        select(
            func.aggregate_strings(
                other.c.google_calendar_id + _FIELD + cast(other.c.role, String), _ROW
            )
        )
        .where(other.c.connection_id == binding.c.connection_id)
        .scalar_subquery()
    )
    stored = [
        type_coerce(_column(attribute), Text).label(f"sealed_{attribute.key}")
        for attribute in _SEALED
    ]
    connection, tenant = table_of(GoogleConnection), table_of(Tenant)
    read = [column for _, columns in _READ for _, column in columns]
    return (
        select(*read, calendars, *stored)
        .select_from(binding)
        .join(connection, connection.c.id == binding.c.connection_id)
        .join(tenant, tenant.c.id == binding.c.tenant_id)
        .where(binding.c.id == bindparam("binding_id"))
    )


async def start_run(
    session: AsyncConnection | AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    *,
    trigger: str,
    full_sync: bool,
) -> uuid.UUID:
    """The run's row, "running" (store.runs.start without an ORM object)."""
    run_id = uuid.uuid4()
    await session.execute(
        _run_statement(),
        {
            "id": run_id,
            "tenant_id": tenant_id,
            "binding_id": binding_id,
            "trigger": trigger,
            "full_sync": full_sync,
            "started_at": utcnow(),
            "outcome": RunOutcome.RUNNING,
        },
    )
    return run_id


@functools.cache
def _run_statement() -> Insert:
    """Built once (see `_load_statement`); the table's, not the ORM's (no bulk-insert path)."""
    return insert(table_of(SyncRun))


async def end_binding(
    session: AsyncConnection | AsyncSession,
    binding_id: uuid.UUID,
    owner: str,
    *,
    ok: bool,
    at: datetime,
    retry_in: timedelta | None = None,
    push_seq: int | None = None,
    scanned_key: str | None = None,
    owed: datetime | None = None,
    deletions_applied: bool = False,
    listed: tuple[str | None, str | None, str] | None = None,
    rate: tuple[float, datetime] | None = None,
) -> None:
    """One UPDATE for the binding's end of run, only while the lock is this owner's: last sync
    and failure count (backing off after a failure), the sync token the listing reached
    (`listed`: token, zone, private-events policy), the push cursor, the scan key, the
    webhook debt (cleared only if still the one seen at the start), the confirmed deletions
    used up, the Google-side change rate with the run's changes added (`rate`: the rate and
    when; domain.rates) and the lock released."""
    shape = _EndShape(
        ok=ok,
        retry=retry_in is not None,
        push_seq=push_seq is not None,
        scanned_key=scanned_key is not None,
        owed=owed is not None,
        deletions_applied=deletions_applied,
        listed=listed is not None,
        zone=bool(listed and listed[1]),
        rate=rate is not None,
    )
    # bind parameters named apart from the columns (a parameter named as a column would be
    # taken for a value to SET)
    params: dict[str, object] = {"v_binding": binding_id, "v_owner": owner, "v_at": at}
    if retry_in is not None:
        params["v_next_sync_at"] = at + retry_in
    if push_seq is not None:
        params["v_push_seq"] = push_seq
    if scanned_key is not None:
        params["v_scanned_key"] = scanned_key
    if owed is not None:
        params["v_owed"] = owed
    if listed is not None:
        token, zone, private_events = listed
        params.update(v_sync_token=token, v_private_events_applied=private_events)
        if zone:
            params["v_time_zone"] = zone
    if rate is not None:
        params["v_google_change_rate"], params["v_google_rate_at"] = rate
    await session.execute(_end_statement(shape), params)


@dataclass(frozen=True)
class _EndShape:
    """Which of end_binding's values a run writes: one statement each, built once."""

    ok: bool
    retry: bool
    push_seq: bool
    scanned_key: bool
    owed: bool
    deletions_applied: bool
    listed: bool
    zone: bool
    rate: bool


@functools.cache
def _end_statement(shape: _EndShape) -> Update:
    """The run's end as one UPDATE of this shape, its values bind parameters: built once, on
    the table (every sync ends with it: the ORM's bulk-update path and the statement's
    construction cost more than the UPDATE itself).

    A fence: only while the lock is this owner's. A run that lost its lock (another worker
    took the binding after its renewals failed past the timeout) stores nothing over the new
    holder's cursors; what it did is read again by a later run, as after a crash."""
    table = table_of(CalendarBinding)
    c = table.c

    def param(name: str) -> BindParameter[typing.Any]:
        return bindparam(f"v_{name}", type_=c[name].type)

    at = bindparam("v_at", type_=c.last_sync_at.type)
    values: dict[str, object] = {
        "last_sync_at": at,
        "locked_by": None,  # released (the UPDATE is this owner's only)
        "locked_until": None,
    }
    if shape.ok:
        values.update(last_success_at=at, failure_count=0, next_sync_at=None)
    else:
        values["failure_count"] = c.failure_count + 1
        if shape.retry:
            values["next_sync_at"] = param("next_sync_at")
    if shape.push_seq:
        values["push_seq"] = param("push_seq")
    if shape.scanned_key:
        values["scanned_key"] = param("scanned_key")
    if shape.owed:
        # cleared only if still the debt seen at the start (a notification since owes more)
        values["sync_owed_at"] = case(
            (c.sync_owed_at == bindparam("v_owed", type_=c.sync_owed_at.type), None),
            else_=c.sync_owed_at,
        )
    if shape.deletions_applied:
        values.update(deletions_confirmed=False, guarded_deletions=None)
    if shape.listed:
        # a first sync becomes incremental; a stage set while the run was going (disabled by
        # the calendarList check, paused) is left alone
        values.update(
            sync_token=param("sync_token"),
            private_events_applied=param("private_events_applied"),
            stage=case(
                (c.stage == BindingStage.INITIAL, literal(BindingStage.INCREMENTAL, c.stage.type)),
                else_=c.stage,
            ),
        )
        if shape.zone:
            values["time_zone"] = param("time_zone")
    if shape.rate:
        values.update(
            google_change_rate=param("google_change_rate"), google_rate_at=param("google_rate_at")
        )
    return (
        update(table)
        .where(c.id == bindparam("v_binding"), c.locked_by == bindparam("v_owner"))
        .values(**values)
    )


async def close_running(session: AsyncSession, run_id: uuid.UUID) -> None:
    """A run whose end was never stored (an unexpected error): closed as abandoned, as a dead
    worker's run is (store.schedule.abandon_runs), so it never stays "running"."""
    await session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.outcome == RunOutcome.RUNNING)
        .values(
            outcome=RunOutcome.ABANDONED,
            finished_at=utcnow(),
            error_code=Code.RUN_ABANDONED,
            error_message="The sync stopped on an unexpected error before it finished.",
        )
        .execution_options(synchronize_session=False)
    )


@dataclass
class PushReads:
    """What every push reads first: the tenant's last change-feed seq, the activities whose
    links owe Google a write, and the owner's changes after the push cursor up to that seq
    that the sync did not make (activity, seq), in feed order."""

    last: int
    owed: list[uuid.UUID]
    feed: list[tuple[uuid.UUID, int]]


async def push_reads(
    session: AsyncConnection | AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    owner_id: uuid.UUID,
    after: int,
) -> PushReads:
    """One statement (one snapshot, so the changes and the last seq agree): the tenant's last
    seq (store.changes.last_seq), the links owing a write (store.links.dirty) and the owner's
    changes after `after` that the sync did not make, each part through its partial index."""
    # through partial indexes: the few rows an incremental sync owes (store/sqlite_driver.py)
    with reads_on_loop():
        rows = await session.execute(
            _push_reads_statement(),
            {
                "tenant_id": tenant_id,
                "binding_id": binding_id,
                "owner_id": owner_id,
                "after": after,
            },
        )
    last, owed, feed = 0, [], []
    for activity_id, seq in rows:
        if activity_id is None:
            last = int(seq or 0)
        elif seq is None:
            owed.append(activity_id)
        else:
            feed.append((activity_id, int(seq)))
    feed.sort(key=lambda row: row[1])
    return PushReads(last, owed, [(a, seq) for a, seq in feed if seq <= last])


@functools.cache
def _push_reads_statement() -> CompoundSelect[uuid.UUID | None, int | None]:
    """Built once (see `_load_statement`). The owed links' condition is the partial index's,
    word for word, as in store.links.dirty; the feed's is
    ix_change_tenant_id_owner_id_seq_pushable's (NOT_FROM_SYNC, the value inline)."""
    owed = select(EventLink.activity_id, null().label("seq")).where(
        EventLink.binding_id == bindparam("binding_id"),
        OWED_WRITE,
        EventLink.activity_id.is_not(None),
    )
    last = select(null(), Tenant.change_seq).where(Tenant.id == bindparam("tenant_id"))
    feed = select(Change.activity_id, Change.seq).where(
        Change.tenant_id == bindparam("tenant_id"),
        Change.owner_id == bindparam("owner_id"),
        NOT_FROM_SYNC,
        Change.seq > bindparam("after"),
    )
    return union_all(owed, last, feed)


async def activities_and_links(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    binding_id: uuid.UUID,
    activity_ids: Collection[uuid.UUID],
) -> tuple[dict[uuid.UUID, Activity], dict[uuid.UUID, EventLink]]:
    """The tenant's activities of these ids, with their attendees, and each one's link in the
    binding: what the push's plan reads, in one statement (a chunk of ids each), not three
    (`activities`, its attendees' selectin, `by_activities`)."""
    found: dict[uuid.UUID, Activity] = {}
    linked: dict[uuid.UUID, EventLink] = {}
    for chunk in chunked(activity_ids):
        with reads_on_loop(len(chunk) <= ON_LOOP_IDS):  # store/sqlite_driver.py
            rows = await session.execute(
                _activities_and_links_statement(),
                {"tenant_id": tenant_id, "binding_id": binding_id, "activity_ids": chunk},
            )
        for activity, link in rows.unique():
            found[activity.id] = activity
            if link is not None:
                linked[activity.id] = link
    return found, linked


@functools.cache
def _activities_and_links_statement() -> Select[Activity, EventLink]:
    """Built once (see `_by_event_statement`); the ids an expanding parameter."""
    return (
        select(Activity, EventLink)
        .outerjoin(
            EventLink,
            and_(
                EventLink.activity_id == Activity.id,
                EventLink.binding_id == bindparam("binding_id"),
            ),
        )
        .where(
            unindexed(Activity.tenant_id) == bindparam("tenant_id"),  # found by id (base.unindexed)
            Activity.id.in_(bindparam("activity_ids", expanding=True)),
        )
        .options(joinedload(Activity.attendees))
    )


async def store_written(
    conn: AsyncConnection,
    link_id: uuid.UUID,
    binding_id: uuid.UUID,
    activity_id: uuid.UUID,
    values: dict[str, Any],
) -> bool | None:
    """Google's answer to a write stored on the link the push planned it from — `values` are
    columns of event_link — if that link is still the activity's in the binding; returns
    None when it is not (nothing written), else whether the activity has open sync issues
    there (read in the same statement, so a write that has none costs one statement)."""
    row = (
        await conn.execute(
            _store_written_statement(),
            {
                "link_id": link_id,
                "link_binding_id": binding_id,
                "link_activity_id": activity_id,
                **{f"v_{k}": v for k, v in values.items()},
            },
        )
    ).first()
    return None if row is None else bool(row[0])


#: the columns `store_written` writes (event_link's, besides updated_at)
WRITTEN_COLUMNS = (
    "state",
    "google_event_id",
    "snapshot",
    "google_hash",
    "crm_hash",
    "google_etag",
    "google_updated",
    "ical_uid",
)


@functools.cache
def _store_written_statement() -> Update:
    """Built once, on the table (not the ORM's bulk-update path). The EXISTS names binding
    and activity by parameter, not by correlation: SQLite's RETURNING takes no correlated
    subquery (store.changes)."""
    table = table_of(EventLink)
    open_issue = exists().where(
        SyncIssue.binding_id == bindparam("link_binding_id"),
        SyncIssue.activity_id == bindparam("link_activity_id"),
        SyncIssue.resolved_at.is_(None),
    )
    return (
        update(table)
        .where(
            table.c.id == bindparam("link_id"),
            table.c.binding_id == bindparam("link_binding_id"),
            table.c.activity_id == bindparam("link_activity_id"),
        )
        .values({name: bindparam(f"v_{name}") for name in WRITTEN_COLUMNS})
        .returning(open_issue)
    )
