"""SQLAlchemy's aiosqlite adapter with one trip to SQLite's thread per statement.

aiosqlite runs each sqlite3 call in the connection's own thread and hands the result back to
the event loop. SQLAlchemy's adapter makes four such trips for a statement (open a cursor,
execute, fetch the rows, close the cursor) and one for every commit and rollback, even when no
transaction is open (the pool's rollback on return after a read). Each trip is a queue put, a
thread wake-up, the GIL handed over twice and a wake-up of the loop: at 13 statements a sync
they were a good part of a sync's CPU (docs/deploy.md "Capacity").

Here a statement is one trip (cursor, execute, fetch, close run together in the thread, in
the same order), and commit / rollback skip the trip when sqlite3 says no transaction is open
(sqlite3 would do nothing then: `Connection.commit` and `rollback` are no-ops outside a
transaction). Every statement still runs in aiosqlite's thread, so nothing blocks the event
loop (a writer waiting on SQLite's busy timeout waits there, as before). Passed to
`create_async_engine(module=...)`, SQLAlchemy's documented way to hand a dialect its DBAPI;
the URL stays `sqlite+aiosqlite`. Server-side (streamed) cursors keep SQLAlchemy's own class.

Writers queue in the process, not in SQLite (`WriteGate`): a connection's first statement
that may write waits for the engine's one write turn on the event loop, and the turn passes
on at its commit, rollback or close. SQLite takes its write lock at that same statement, and
a writer that finds it taken retries in SQLite's busy handler, which sleeps between tries
(up to 100 ms each) holding its connection and thread: 30 writers in one process had a p99
of 244-350 ms and a max of 1.6-1.9 s that way, 69-131 ms and 86-174 ms in line (issue 16,
docs/deploy.md "Capacity"). Queued on the loop, the next writer starts as soon as the
previous commits, in arrival order; those marked `AHEAD` (`store.db.writes_first`: a sync
for Google's news, a "Sync now", a Google notification's write) go first, so a busy CRM's
writes delay them by one transaction at most. The turn is per engine and event loop:
another process on the same file (a `calsync` command beside `calsync serve`) still meets
SQLite's busy timeout, as before.

A few small reads run on the event loop's thread instead (`reads_on_loop`): the sync's
reads of one row or a handful by index (its start's read, what the push owes, the few links
and activities of a change). A trip to the thread costs ≈ 0.13 ms of CPU on top of the
statement (the queue put, two thread wake-ups, the GIL handed over and back, the loop's
wake-up), more than such a read itself; in WAL mode a read takes no lock a writer holds, so
it never waits on the busy timeout, and it blocks the loop no longer than its own few rows.
In a `writes_on_loop` block, so do the writes of a transaction after its first: that one
takes SQLite's write lock (it may wait on the busy timeout for another process, so it runs in
the thread), and once the lock is held a WAL writer takes no other lock until its commit, so
the writes after it never wait either (the sync's run INSERT after its lock UPDATE, the run's
end after its first UPDATE, a pulled event's writes after the first). Commits, which may run
a checkpoint, and every other statement still go to the thread. The connections are opened
with `check_same_thread=False` for this; calls on one connection never overlap (SQLAlchemy
awaits each, and a statement's trip holds the connection's mutex).
"""

from __future__ import annotations

import asyncio
import collections
import re
import sqlite3
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from threading import Thread
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid


def _run(conn: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    """In aiosqlite's thread: what SQLAlchemy's adapter does in four trips."""
    cursor = conn.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _run_many(conn: sqlite3.Connection, operation: str, seq: Sequence[Any]) -> _Outcome:
    cursor = conn.cursor()
    try:
        cursor.executemany(operation, seq)
        return cursor.description, [], cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


#: what a statement that only reads starts with (SQLAlchemy's SQL: no comments before)
_READS = ("SELECT", "PRAGMA", "EXPLAIN")
#: a write after a CTE: the clause's words, not a column or function that names one
#: (`updated_at`, `replace(...)`)
_CTE_WRITE = re.compile(
    r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|REPLACE\s+INTO|DELETE\s+FROM"
    r"|UPDATE\s+(OR\s+\w+\s+)?\S+\s+SET)\b",
    re.IGNORECASE,
)


def may_write(operation: str) -> bool:
    """Whether a statement may write: anything that does not start as a read, or a CTE
    before an INSERT, UPDATE, DELETE or REPLACE."""
    head = operation.lstrip()[:7].upper()
    if head.startswith("WITH"):  # a CTE before a SELECT or before a write
        return _CTE_WRITE.search(operation) is not None
    return not head.startswith(_READS)


#: set by store.db.writes_first: its writers are handed the turn before those that came
#: without it — the CRM API's many writes never starve Google's news (issue 16)
AHEAD: ContextVar[bool] = ContextVar("calsync_sqlite_writes_first", default=False)

#: set by `writes_on_loop`: the writes after a transaction's first run on the loop's thread
WRITES_ON_LOOP: ContextVar[bool] = ContextVar("calsync_sqlite_writes_on_loop", default=False)


@contextmanager
def writes_on_loop() -> Iterator[None]:
    """The writes in this block that follow their transaction's first run on the event
    loop's thread (see the module's docstring): only for a few small writes."""
    token = WRITES_ON_LOOP.set(True)
    try:
        yield
    finally:
        WRITES_ON_LOOP.reset(token)


#: a read of up to this many ids (and their few rows each) is small (`reads_on_loop`)
ON_LOOP_IDS = 20
#: set by `reads_on_loop`: reads in its block run on the event loop's thread
ON_LOOP: ContextVar[bool] = ContextVar("calsync_sqlite_reads_on_loop", default=False)


@contextmanager
def reads_on_loop(small: bool = True) -> Iterator[None]:
    """The reads in this block run on the event loop's thread, not in aiosqlite's (see the
    module's docstring): only for reads of a few rows by index. `small` False: as usual (a
    caller that reads a few rows or many, by its input). No effect on PostgreSQL."""
    token = ON_LOOP.set(small)
    try:
        yield
    finally:
        ON_LOOP.reset(token)


class Turn:
    """The write turn of one engine on one event loop: held by one connection, handed to
    the longest waiting writer, the sync's (`AHEAD`) before the others'."""

    def __init__(self) -> None:
        self.held = False
        self.waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),  # AHEAD
            collections.deque(),
        )

    def pass_on(self) -> None:
        for line in self.waiting:
            while line:
                waiter = line.popleft()
                if not waiter.done():  # a waiter that gave up is skipped
                    waiter.set_result(None)  # handed over: still held
                    return
        self.held = False


class WriteGate:
    """One write transaction at a time per engine, writers waiting in line on the event loop
    (see the module's docstring). A turn per event loop: an engine with NullPool may be used
    from several (tests that start a loop per call)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turn]
        self._turns = weakref.WeakKeyDictionary()

    async def enter(self) -> Turn:
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = Turn()
        if not turn.held:
            turn.held = True
            return turn
        waiter: asyncio.Future[None] = loop.create_future()
        turn.waiting[0 if AHEAD.get() else 1].append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                turn.pass_on()  # handed the turn as it gave up: the next one's
            if isinstance(exc, TimeoutError):  # what SQLite's busy timeout says then
                raise sqlite3.OperationalError("database is locked") from None
            raise
        return turn


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement, rows and counts come back in one trip."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # no aiosqlite cursor of its own (SQLAlchemy's opens one here: a trip)
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1  # sqlite3's default; fetchmany() without a size takes one row

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass  # the rows are all here already

    async def _async_soft_close(self) -> None:
        pass  # nothing is open in the thread

    def close(self) -> None:
        self._rows.clear()

    def _took(self, outcome: _Outcome) -> None:
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._trip(_run, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._trip(_run_many, operation, seq_of_parameters)

    async def _trip(self, run: Any, operation: Any, parameters: Any) -> None:
        """`run` in aiosqlite's thread, after the write turn when the statement may write."""
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapt: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        async with adapt._execute_mutex:
            await adapt.turn(operation)
            try:
                writes = may_write(operation)
                if run is _run and adapt.on_loop and adapt.may_run_here(writes):
                    if not conn._running:  # as aiosqlite's own check before a trip
                        raise ValueError("Connection closed")
                    outcome = _run(conn._conn, operation, parameters)  # on the loop's thread
                else:
                    outcome = await conn._execute(  # type: ignore[no-untyped-call]
                        run, conn._conn, operation, parameters
                    )
                    if writes and self._turn_held(adapt):
                        adapt.locked = True  # SQLite's write lock is held till the end
            finally:
                adapt.turn_over_if_idle()
        self._took(outcome)

    @staticmethod
    def _turn_held(adapt: OneTripConnection) -> bool:
        return adapt._turn is not None and not _idle(adapt._connection)  # type: ignore[arg-type]

    def nextset(self) -> None:
        return None  # sqlite3 has one result set

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None  # as sqlite3's


def _idle(conn: aiosqlite.Connection) -> bool:
    """No transaction open on the connection (then commit and rollback would do nothing).
    Read from the loop while no call of this connection runs: SQLAlchemy waits for each."""
    try:
        return not conn._conn.in_transaction
    except (ValueError, sqlite3.Error):
        return False  # closed: let the usual call report it


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_gate", "_turn", "locked", "on_loop")

    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # (a subclass of it)

    def __init__(self, dbapi: Any, connection: Any, gate: WriteGate, on_loop: bool) -> None:
        super().__init__(dbapi, connection)
        self._gate = gate
        self._turn: Turn | None = None  # the gate's turn while this one writes
        #: opened with check_same_thread=False: `reads_on_loop` may read on the loop's thread
        self.on_loop = on_loop
        #: a write of the open transaction went through: SQLite's write lock is held
        self.locked = False

    def may_run_here(self, writes: bool) -> bool:
        """A statement may run on the loop's thread: a read in `reads_on_loop`, a write in
        `writes_on_loop` once its transaction holds SQLite's write lock."""
        if writes:
            return self.locked and WRITES_ON_LOOP.get() and self._turn is not None
        return ON_LOOP.get()

    async def turn(self, operation: str) -> None:
        """Before a statement: wait for the write turn if it may write and none is held."""
        if self._turn is None and may_write(operation):
            self._turn = await self._gate.enter()

    def turn_over_if_idle(self) -> None:
        """Pass the write turn on once no transaction is open (after a commit or rollback,
        or a statement that wrote nothing and opened none)."""
        if self._turn is not None and _idle(self._connection):  # type: ignore[arg-type]
            self._turn_over()

    def rollback(self) -> None:
        try:
            if not _idle(self._connection):  # type: ignore[arg-type]
                super().rollback()
        finally:
            self.turn_over_if_idle()

    def commit(self) -> None:
        try:
            if not _idle(self._connection):  # type: ignore[arg-type]
                super().commit()
        finally:
            self.turn_over_if_idle()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._turn_over()

    def terminate(self) -> None:  # an invalidated connection's end
        try:
            super().terminate()
        finally:
            self._turn_over()

    def _turn_over(self) -> None:
        """Pass the write turn on: no transaction open, or the connection closed (SQLite
        dropped its transaction with it)."""
        self.locked = False
        if self._turn is not None:
            self._turn.pass_on()
            self._turn = None


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI for `create_async_engine(..., module=OneTripDBAPI())`."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)
        self.gate: WriteGate | None = None  # the engine's, made with its first connection

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        if self.gate is None:  # as long as SQLite's busy timeout (sqlite3's default 5 s)
            self.gate = WriteGate(float(kw.get("timeout", 5.0)))
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:  # someone else's connection: every call stays in its thread
            connection = creator_fn(*arg, **kw)
        else:
            kw["check_same_thread"] = False  # reads_on_loop
            connection = self.aiosqlite.connect(*arg, **kw)
            # as SQLAlchemy's: a daemon thread (aiosqlite >= 0.22 holds one; before, it was one)
            thread = connection if isinstance(connection, Thread) else connection._thread
            thread.daemon = True
        return OneTripConnection(self, await_(connection), self.gate, on_loop=not creator_fn)
