"""store/sqlite_driver.py: SQLAlchemy's aiosqlite adapter, one trip to SQLite's thread a
statement and none for a commit or rollback with nothing open; results, counts and errors as
SQLAlchemy's own adapter gives them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from calsync.store.db import Database
from calsync.store.sqlite_driver import OneTripDBAPI, reads_on_loop, writes_on_loop

meta = MetaData()
items = Table(
    "items",
    meta,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
)


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The calls handed to aiosqlite's thread, by name."""
    seen: list[str] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield seen


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    yield database
    await database.dispose()


def test_sqlite_engines_use_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(db.engine.dialect.dbapi, OneTripDBAPI)
    assert db.url.startswith("sqlite+aiosqlite://")


async def test_one_trip_a_statement_and_none_to_close_a_read(
    db: Database, trips: list[str]
) -> None:
    async with db.session() as s:
        await s.execute(insert(items), [{"name": "a"}, {"name": "b"}])
        await s.commit()
    trips.clear()
    async with db.session() as s:
        rows = (await s.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
        assert rows == ["a", "b"]
        assert (await s.execute(select(items.c.id).where(items.c.name == "b"))).scalar() == 2
    # two statements, and the pool's rollback on return (no transaction open) costs nothing
    assert trips == ["_run", "_run"]


async def test_a_write_commits_once(db: Database, trips: list[str]) -> None:
    async with db.session() as s:
        result = await s.execute(insert(items).values(name="a"))
        assert result.inserted_primary_key == (1,)  # lastrowid
        await s.commit()
    assert trips == ["_run", "commit"]


async def test_counts_returning_and_many(db: Database) -> None:
    async with db.session() as s:
        await s.execute(insert(items), [{"name": n} for n in "abc"])  # executemany
        changed = await s.execute(
            update(items).where(items.c.name != "a").values(name="z" + items.c.name)
        )
        assert changed.rowcount == 2
        returned = await s.execute(
            update(items).where(items.c.name == "a").values(name="A").returning(items.c.id)
        )
        assert returned.scalars().all() == [1]
        assert returned.rowcount == 1
        await s.commit()
    async with db.session() as s:
        partitions = await s.execute(text("SELECT name FROM items ORDER BY id"))
        assert [list(p) for p in partitions.partitions(2)] == [[("A",), ("zb",)], [("zc",)]]
        assert (await s.execute(text("SELECT name FROM items WHERE id = 99"))).first() is None


async def test_a_rollback_undoes_and_errors_are_sqlalchemys(db: Database) -> None:
    async with db.session() as s:
        await s.execute(insert(items).values(name="kept"))
        await s.commit()
    async with db.session() as s:
        await s.execute(insert(items).values(name="undone"))
        await s.rollback()
        with pytest.raises(IntegrityError):
            await s.execute(insert(items).values(name="kept"))
        await s.rollback()
    async with db.session() as s:
        names = (await s.execute(select(items.c.name))).scalars().all()
    assert names == ["kept"]


async def test_reads_on_loop_make_no_trip_and_writes_still_do(
    db: Database, trips: list[str]
) -> None:
    """`reads_on_loop`: its reads run on the loop's thread (no trip), with the same rows and
    errors; its writes and commits, and reads outside it or marked not small, still trip."""
    async with db.session() as s:
        await s.execute(insert(items), [{"name": "a"}, {"name": "b"}])
        await s.commit()
    trips.clear()
    async with db.session() as s:
        with reads_on_loop():
            rows = (await s.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
            assert rows == ["a", "b"]
            assert trips == []
            # a write in the block: in the thread, after the write turn, as always
            await s.execute(update(items).where(items.c.name == "a").values(name="A"))
            assert trips == ["_run"]
            # a read in the open write transaction sees it
            assert (await s.execute(select(items.c.name).where(items.c.id == 1))).scalar() == "A"
            with pytest.raises(OperationalError):
                await s.execute(text("SELECT nope FROM items"))
            await s.rollback()
        with reads_on_loop(False):
            await s.execute(select(items.c.id))
        await s.execute(select(items.c.id))
    assert trips == ["_run", "rollback", "_run", "_run"]
    async with db.session() as s:
        assert (await s.execute(select(items.c.name).order_by(items.c.id))).scalars().all() == [
            "a",
            "b",
        ]


async def test_reads_on_loop_on_a_connection_of_someone_elses_creator(tmp_path: Path) -> None:
    """A connection made by `async_creator_fn` may refuse other threads: it keeps every call
    in its own thread."""
    from sqlalchemy.ext.asyncio import create_async_engine

    path = tmp_path / "y.db"
    engine = create_async_engine(
        "sqlite+aiosqlite://",
        module=OneTripDBAPI(),
        async_creator=lambda: aiosqlite.connect(path),
    )
    try:
        async with engine.connect() as conn:
            with reads_on_loop():
                assert (await conn.execute(text("SELECT 7"))).scalar() == 7
    finally:
        await engine.dispose()


async def test_writes_on_loop_after_the_transactions_first(db: Database, trips: list[str]) -> None:
    """`writes_on_loop`: a transaction's first write (it takes SQLite's write lock, and may
    wait on the busy timeout) and its commit trip; the writes after it, which never wait,
    run on the loop's thread; the next transaction starts over."""
    async with db.session() as s:
        with writes_on_loop():
            with pytest.raises(IntegrityError):  # a first write that failed took no lock
                await s.execute(insert(items), [{"name": "a"}, {"name": "a"}])
            await s.rollback()
            await s.execute(insert(items).values(name="a"))
            await s.execute(insert(items).values(name="b"))
            await s.execute(update(items).where(items.c.name == "b").values(name="B"))
            await s.commit()
            assert trips == ["_run_many", "rollback", "_run", "commit"], trips
            trips.clear()
            await s.execute(insert(items).values(name="c"))
            await s.execute(insert(items).values(name="d"))
            with pytest.raises(IntegrityError):  # an error on the loop's thread, as in it
                await s.execute(insert(items).values(name="c"))
            await s.execute(insert(items).values(name="e"))
            await s.commit()
            assert trips == ["_run", "commit"], trips
        trips.clear()
        await s.execute(insert(items).values(name="f"))
        await s.execute(insert(items).values(name="g"))
        await s.commit()
        assert trips == ["_run", "_run", "commit"], trips
    async with db.session() as s:
        names = (await s.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
    assert names == ["a", "B", "c", "d", "e", "f", "g"]
