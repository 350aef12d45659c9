"""Engine and session factory for SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from calsync.store.liveness import ping_when_idle
from calsync.store.sqlite_driver import AHEAD, OneTripDBAPI, may_write

SQLITE_BUSY_TIMEOUT_MS = 30_000


def async_url(url: str) -> str:
    """Map plain URLs (postgresql://, sqlite://) onto the async drivers calsync uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername != "postgresql+asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite" and parsed.drivername != "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def private_dir(path: Path) -> None:
    """Create the directory for calsync's state readable by its owner only (0700); a directory
    that already exists keeps the mode its operator gave it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def private_sqlite_file(url: str) -> Path | None:
    """Create a SQLite URL's database file 0600 before SQLite does (SQLite would follow the
    umask, typically 0644: world-readable); its -wal and -shm files take the same mode. An
    existing file is left as it is. Returns the file's path (None: not a file on disk)."""
    parsed = make_url(url)
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
        or parsed.query.get("mode") == "memory"
    ):
        return None
    path = Path(database)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    os.close(fd)
    os.chmod(path, 0o600)  # the umask cannot widen it
    return path


@contextmanager
def writes_first(ahead: bool = True) -> Iterator[None]:
    """The writes in this block (and in the tasks it starts) are handed SQLite's write turn
    before those waiting without it (store/sqlite_driver.py): a sync for Google's news, a
    "Sync now", a Google notification's write (sync.engine.WRITES_FIRST, web/webhooks.py), so
    the CRM API's writes never starve them (issue 16). Nothing changes on PostgreSQL, whose
    writers lock rows, not the database. `ahead` False: the block waits in line as usual."""
    token = AHEAD.set(ahead)
    try:
        yield
    finally:
        AHEAD.reset(token)


POOL_SIZE = 20  # CALSYNC_DB_POOL_SIZE
MAX_OVERFLOW = 10  # CALSYNC_DB_MAX_OVERFLOW


def make_engine(
    url: str, *, pooled: bool = True, pool_size: int = POOL_SIZE, max_overflow: int = MAX_OVERFLOW
) -> AsyncEngine:
    """An AsyncEngine with calsync's connection settings.

    `pooled=False` opens a connection per use: needed when requests run on changing event
    loops (test clients that start a loop per call).

    PostgreSQL's pool keeps `pool_size` connections and opens up to `max_overflow` more, closed
    as they come back. SQLAlchemy's own 5 made a `calsync serve` answering more than 5
    requests at once open and close connections all the time (a backend forked, an SSL
    request and asyncpg's set-up for each: bench/api_load.py counted 294–390 in 30 s). SQLite
    keeps SQLAlchemy's sizes: a connection there is cheap to open, and each one kept is a
    thread and a page cache.
    """
    url = async_url(url)
    kwargs: dict[str, Any] = {}
    if not pooled:
        kwargs["poolclass"] = NullPool
    elif url.startswith("postgresql"):
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = max_overflow
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        # one trip to aiosqlite's thread a statement, none for a commit or rollback with
        # no transaction open (store/sqlite_driver.py)
        kwargs["module"] = OneTripDBAPI()
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    elif pooled:
        ping_when_idle(engine)  # not pool_pre_ping: three round trips a checkout (liveness.py)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class WriteInReads(RuntimeError):
    """A statement that may write, sent through `Database.reads()`."""


def _refuse_writes(
    _conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool
) -> None:
    """Before each statement of a `reads()` session (an event of its engine alone): on
    PostgreSQL each one is committed on its own there, so a handler that wrote through it
    would leave half of its work if a later step failed."""
    if may_write(statement):
        raise WriteInReads(
            "a write through Database.reads(), which runs each statement in a transaction of "
            f"its own; write in a session(): {' '.join(statement.split())[:120]}"
        )


class Database:
    """One engine plus its session factory; the only handle the rest of calsync holds."""

    def __init__(
        self,
        url: str,
        *,
        pooled: bool = True,
        pool_size: int = POOL_SIZE,
        max_overflow: int = MAX_OVERFLOW,
    ) -> None:
        self.url = async_url(url)
        self.engine = make_engine(
            self.url, pooled=pooled, pool_size=pool_size, max_overflow=max_overflow
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: sessions for reads only (`reads`): on PostgreSQL without a transaction; a write
        #: through one is refused (`WriteInReads`), on SQLite too
        options = {"isolation_level": "AUTOCOMMIT"} if self.dialect == "postgresql" else {}
        readers = self.engine.execution_options(**options)  # its own events: the guard
        event.listen(readers.sync_engine, "before_cursor_execute", _refuse_writes)
        self.readers = async_sessionmaker(readers, expire_on_commit=False)
        self._autocommit = self.engine.execution_options(**options) if options else self.engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        session = self.sessions()
        try:
            yield session
        finally:
            await close(session)

    @asynccontextmanager
    async def reads(self) -> AsyncIterator[AsyncSession]:
        """A session that only reads (the CRM API's GET requests). On PostgreSQL its
        statements run without a transaction: under READ COMMITTED each statement of a
        transaction sees what was committed when it started anyway, so reads see the same, and
        the BEGIN and the ROLLBACK — two of a week's listing's five round trips — are not sent.
        A write through it would be committed at once, statement by statement, so none is
        sent (a statement that may write raises `WriteInReads` before it is sent). SQLite: a
        session as `session()`'s (its BEGIN costs no round trip)."""
        session = self.readers()
        try:
            yield session
        finally:
            await close(session)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection without an ORM session, for a hot path that runs only table statements
        (the Google webhook's lookup and write): a session's set-up, commit and close cost
        about as much CPU as one of its statements."""
        conn = await self.engine.connect()
        try:
            yield conn
        finally:
            await close(conn)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """`connection()` for statements each complete on its own (the Google webhook's lookup,
        then its conditional UPDATE of the channel's row). On PostgreSQL each statement is
        its own transaction, so neither BEGIN nor COMMIT is sent: two of the four round trips
        of a notification's receipt. Under READ COMMITTED each statement of a transaction sees
        what was committed when it started anyway. SQLite: `connection()`'s (its BEGIN costs no
        round trip, and its writes take turns at their first statement: `writes_first`), so
        the caller still commits, which is a no-op on PostgreSQL."""
        conn = await self._autocommit.connect()
        try:
            yield conn
        finally:
            await close(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction on a connection taken at its first statement (as a session's), rolled
        back if not committed when the block ends."""
        end = Transaction(self.engine)
        try:
            yield end
        finally:
            await end.close()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def close(held: AsyncSession | AsyncConnection) -> None:
    """Close a session or connection as its `async with` block does, without the task that
    block starts when nothing is left to roll back. SQLAlchemy runs every such close in a
    task of its own, shielded, so that a cancellation cannot cut a rollback short; a task
    and two more turns of the event loop are ≈ 25 µs of CPU, paid by each of a sync's
    sessions and connections (issue 16). Once committed, a close has no rollback to run."""
    if held.in_transaction():
        await held.__aexit__(None, None, None)
    else:
        await held.close()


class Transaction:
    """A sync's hot path without an ORM session (whose set-up, statement dispatch, commit and
    close cost about as much CPU as a statement): table statements on a connection checked
    out at the first `connection()` and returned at `commit()`, as a session's is, so nothing
    is held while no transaction is open. `session()`: an ORM session in the same
    transaction, for what still goes through the ORM."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def connection(self) -> AsyncConnection:
        if self._conn is None:
            self._conn = await self._engine.connect()
        return self._conn

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session joined to this transaction (`joined`)."""
        async with joined(await self.connection()) as session:
            yield session

    async def commit(self) -> None:
        """Commit what was run (nothing when nothing was) and return the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.commit()
            finally:
                await close(conn)

    async def close(self) -> None:
        """Roll back what was not committed and return the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await close(conn)


@asynccontextmanager
async def joined(conn: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """An ORM session whose statements run in `conn`'s transaction (begun here if it is not):
    it commits nothing — the connection's owner commits or rolls back — and its pending writes
    are flushed when the block ends.

    Its commit hooks never run (the outbox of store.webhooks, the feed numbers of
    store.changes): work that leaves something for them in `session.info` raises here, and
    belongs in a session that commits."""
    if not conn.in_transaction():
        await conn.begin()
    async with AsyncSession(
        bind=conn, expire_on_commit=False, join_transaction_mode="rollback_only"
    ) as session:
        yield session
        await session.flush()
        if session.info:
            raise RuntimeError(f"a joined session left work for a commit: {sorted(session.info)}")
