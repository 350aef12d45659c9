"""store/sqlite_driver.WriteGate: on SQLite a process's writers wait for their turn on the
event loop, not in SQLite's busy handler (which sleeps up to 100 ms between tries: a tail of
seconds for 30 writers in one process, issue 16). SQLite only: PostgreSQL has row locks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Executable

from calsync.store import db as store_db
from calsync.store import sqlite_driver
from calsync.store.db import Database, writes_first

meta = MetaData()
counter = Table("counter", meta, Column("id", Integer, primary_key=True), Column("n", Integer))
rows = Table("rows", meta, Column("id", Integer, primary_key=True), Column("v", String))


@pytest.fixture
async def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Database]:
    """A database whose connections give up at once on SQLite's lock (busy timeout 0): any
    writer that met another in SQLite would fail with "database is locked"."""
    monkeypatch.setattr(store_db, "SQLITE_BUSY_TIMEOUT_MS", 0)
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
        await conn.execute(insert(counter).values(id=1, n=0))
    gate = database.engine.dialect.dbapi.gate  # type: ignore[union-attr]
    assert gate is not None and gate.timeout == 0
    gate.timeout = 10.0  # the turn is waited for; SQLite's lock never is
    yield database
    await database.dispose()


async def write_many(db: Database, writers: int, each: int) -> None:
    async def writer(i: int) -> None:
        for k in range(each):
            async with db.session() as s:
                await s.execute(select(func.count()).select_from(rows))  # a read first
                await s.execute(update(counter).values(n=counter.c.n + 1))
                await asyncio.sleep(0)  # other work inside the transaction
                await s.execute(insert(rows).values(v=f"{i}-{k}"))
                await s.commit()

    await asyncio.gather(*(writer(i) for i in range(writers)))


async def test_concurrent_writers_take_turns_and_none_meets_sqlites_lock(db: Database) -> None:
    await write_many(db, writers=12, each=5)
    async with db.session() as s:
        assert await s.scalar(select(counter.c.n)) == 60
        assert await s.scalar(select(func.count()).select_from(rows)) == 60


async def test_without_the_gate_the_same_writers_meet_sqlites_lock(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: what the test above would see if the writers queued in SQLite."""
    monkeypatch.setattr(sqlite_driver, "may_write", lambda _operation: False)
    with pytest.raises(OperationalError, match="database is locked"):
        await write_many(db, writers=12, each=5)


@contextlib.asynccontextmanager
async def holding_the_turn(db: Database, statement: Executable) -> AsyncIterator[None]:
    """Inside the block another task's transaction has run `statement` and holds the write
    turn; it commits when the block ends."""
    holding, done = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with db.session() as s:
            await s.execute(statement)
            holding.set()
            await done.wait()
            await s.commit()

    task = asyncio.create_task(holder())
    await holding.wait()
    try:
        yield
    finally:
        done.set()
        await task


async def writer_of(db: Database, name: str) -> None:
    async with db.session() as s:
        await s.execute(insert(rows).values(v=name))
        await s.commit()


async def test_readers_do_not_wait_for_a_writer(db: Database) -> None:
    async with holding_the_turn(db, update(counter).values(n=5)):
        async with db.session() as s:  # WAL: reads the last committed value meanwhile
            assert await asyncio.wait_for(s.scalar(select(counter.c.n)), 5) == 0
    async with db.session() as s:
        assert await s.scalar(select(counter.c.n)) == 5


async def test_a_rollback_and_a_closed_connection_pass_the_turn_on(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.session() as s:
            await s.execute(update(counter).values(n=99))
            raise RuntimeError("the handler failed")  # the session rolls back
    conn = await db.engine.connect()
    await conn.execute(update(counter).values(n=98))
    await conn.invalidate()  # the connection closed under its transaction
    await conn.close()
    async with db.session() as s:
        await asyncio.wait_for(s.execute(update(counter).values(n=1)), 5)
        await s.commit()
    async with db.session() as s:
        assert await s.scalar(select(counter.c.n)) == 1


async def test_a_writer_waiting_past_the_timeout_fails_as_sqlite_would(db: Database) -> None:
    """And loses nothing: the holder's transaction commits, the late one wrote nothing."""
    db.engine.dialect.dbapi.gate.timeout = 0.2  # type: ignore[union-attr]
    async with holding_the_turn(db, insert(rows).values(v="first")):
        with pytest.raises(OperationalError, match="database is locked"):
            await writer_of(db, "late")
    async with db.session() as s:
        assert (await s.scalars(select(rows.c.v))).all() == ["first"]


@pytest.mark.parametrize(
    ("sql", "writes"),
    [
        ("SELECT 1", False),
        ("  select * from t", False),
        ("PRAGMA busy_timeout", False),
        ("WITH x AS (SELECT 1) SELECT * FROM x", False),
        # a read whose CTE names a column or a function like a write word: still a read (a
        # GET's `Database.reads()` refuses what may write)
        ("WITH x AS (SELECT updated_at, replace(a, 'b', 'c') FROM t) SELECT * FROM x", False),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", True),
        ("WITH x AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM x)", True),
        ("INSERT INTO t VALUES (1)", True),
        ("UPDATE t SET a = 1 RETURNING a", True),
        ("DELETE FROM t", True),
        ("REPLACE INTO t VALUES (1)", True),
        ("WITH x AS (SELECT 1) UPDATE t SET a = (SELECT * FROM x)", True),
        ("SAVEPOINT sa_savepoint_1", True),
        ("CREATE TABLE t (a)", True),
    ],
)
def test_which_statements_wait_for_the_turn(sql: str, writes: bool) -> None:
    assert sqlite_driver.may_write(sql) is writes


async def test_the_syncs_writers_are_handed_the_turn_first(db: Database) -> None:
    """Those waiting in `writes_first` (the sync, Google's notifications) go before the CRM
    API's, however many of those came first; each line in arrival order."""
    order: list[str] = []

    async def writer(name: str, first: bool) -> None:
        with writes_first(first):
            async with db.session() as s:
                await s.execute(insert(rows).values(v=name))
                order.append(name)
                await s.commit()

    names = [("api-1", False), ("api-2", False), ("sync-1", True), ("api-3", False)]
    names.append(("sync-2", True))
    tasks = []
    async with holding_the_turn(db, insert(rows).values(v="holder")):
        turn = next(iter(db.engine.dialect.dbapi.gate._turns.values()))  # type: ignore[union-attr]
        for i, (name, first) in enumerate(names, start=1):
            tasks.append(asyncio.create_task(writer(name, first)))
            while sum(len(line) for line in turn.waiting) < i:  # noqa: ASYNC110 (in order)
                await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    assert order == ["sync-1", "sync-2", "api-1", "api-2", "api-3"]


async def test_a_writer_that_gives_up_is_skipped_and_the_turn_goes_on(db: Database) -> None:
    db.engine.dialect.dbapi.gate.timeout = 0.2  # type: ignore[union-attr]
    async with holding_the_turn(db, insert(rows).values(v="holder")):
        cancelled = asyncio.create_task(writer_of(db, "cancelled"))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(OperationalError, match="database is locked"):
            await writer_of(db, "timed out")
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(writer_of(db, "after"), 5)
    async with db.session() as s:
        assert sorted((await s.scalars(select(rows.c.v))).all()) == ["after", "holder"]
