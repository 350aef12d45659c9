"""The store's connection pool on PostgreSQL keeps what a busy process uses (issue 16).

SQLAlchemy's defaults keep 5 connections and close every further one when it comes back: a
`calsync serve` answering more than 5 requests at once opened and closed PostgreSQL
connections all the time (bench/api_load.py: 294 in 30 s), each a new backend, a TLS
handshake and asyncpg's set-up. CALSYNC_DB_POOL_SIZE (default 20) connections now stay open,
CALSYNC_DB_MAX_OVERFLOW (default 10) more are opened for a burst. PostgreSQL only: SQLite's
pool keeps SQLAlchemy's sizes (db.py says why); these tests exist when
CALSYNC_TEST_POSTGRES_URL is set, as in CI."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from sqlalchemy import event, text

from calsync.settings import Settings
from calsync.store.bootstrap import database_for
from calsync.store.db import Database

from .conftest import PG_ENV

PG_ONLY = pytest.mark.skipif(not os.environ.get(PG_ENV), reason="PostgreSQL only")


def connects(db: Database) -> list[Any]:
    opened: list[Any] = []
    event.listen(db.engine.sync_engine, "connect", lambda conn, _record: opened.append(conn))
    return opened


async def busy(db: Database, at_once: int) -> None:
    """`at_once` sessions each holding a connection at the same time, then all returned."""
    started = asyncio.Barrier(at_once)

    async def one() -> None:
        async with db.session() as s:
            await s.execute(text("SELECT 1"))
            await started.wait()  # every connection is out before any goes back

    await asyncio.gather(*(one() for _ in range(at_once)))


@PG_ONLY
async def test_a_burst_within_the_pool_reuses_its_connections() -> None:
    db = database_for(Settings(database_url=os.environ[PG_ENV]))
    try:
        opened = connects(db)
        await busy(db, 12)
        await busy(db, 12)
        await busy(db, 12)
        assert len(opened) == 12  # opened once, kept: 12 is within the default pool of 20
        assert db.engine.pool.size() == 20
    finally:
        await db.engine.dispose()


@PG_ONLY
async def test_the_pool_sizes_are_settings() -> None:
    settings = Settings(database_url=os.environ[PG_ENV], db_pool_size=3, db_max_overflow=2)
    db = database_for(settings)
    try:
        opened = connects(db)
        await busy(db, 5)  # 3 kept and 2 overflow, the most it opens
        assert len(opened) == 5
        await busy(db, 3)
        assert len(opened) == 5  # the 3 kept are reused
        await busy(db, 5)
        assert len(opened) == 7  # the overflow was closed when it came back, opened again
    finally:
        await db.engine.dispose()


def test_the_pool_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="db_pool_size"):
        Settings(db_pool_size=0)
    with pytest.raises(ValueError, match="db_max_overflow"):
        Settings(db_max_overflow=-1)
