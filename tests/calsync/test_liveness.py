"""store/liveness.py: a pooled PostgreSQL connection is checked at checkout only when it sat idle,
for SQLAlchemy's pool (the store) and psycopg_pool's (procrastinate). A connection the server
killed while it waited is replaced and the caller never sees it; one reused at once costs no
round trip. PostgreSQL only (SQLite has no server to lose): these tests exist when
CALSYNC_TEST_POSTGRES_URL is set, as in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from procrastinate import App
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from calsync.jobs.procrastinate_runner import connector
from calsync.store import liveness
from calsync.store.db import Database

from .conftest import PG_ENV, _admin_conninfo

PG_ONLY = pytest.mark.skipif(not os.environ.get(PG_ENV), reason="PostgreSQL only")


def terminate(pid: int) -> None:
    """The server ends that backend, as a restart or an idle timeout would."""
    with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


class Pings:
    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        dialect = db.engine.dialect
        real = dialect.do_ping

        def counted(dbapi_connection: Any) -> bool:
            self.count += 1
            return real(dbapi_connection)

        monkeypatch.setattr(dialect, "do_ping", counted)


@pytest.fixture
async def pg() -> AsyncIterator[Database]:
    db = Database(os.environ[PG_ENV])
    yield db
    await db.engine.dispose()


async def backend_pid(db: Database) -> int:
    async with db.session() as s:
        return int(await s.scalar(text("SELECT pg_backend_pid()")) or 0)


@PG_ONLY
async def test_a_connection_reused_at_once_is_not_pinged(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = Pings(pg, monkeypatch)
    first = await backend_pid(pg)
    for _ in range(5):
        assert await backend_pid(pg) == first  # the same pooled connection
    assert pings.count == 0


@PG_ONLY
async def test_a_connection_killed_while_idle_is_replaced_unseen(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = Pings(pg, monkeypatch)
    first = await backend_pid(pg)
    terminate(first)
    monkeypatch.setattr(liveness, "IDLE_SECONDS", 0.0)  # it has been idle "long enough"
    second = await backend_pid(pg)  # no error reaches the caller
    assert second != first
    assert pings.count == 1
    assert await backend_pid(pg) == second


@PG_ONLY
async def test_without_the_check_the_dead_connection_fails_once_then_the_pool_recovers(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control (and the trade-off): a connection killed within IDLE_SECONDS of its last use
    is not checked; its statement fails as it would have a moment earlier, and the pool has
    replaced it for the next caller."""
    first = await backend_pid(pg)
    terminate(first)
    monkeypatch.setattr(liveness, "IDLE_SECONDS", 3600.0)
    with pytest.raises(DBAPIError) as failed:
        await backend_pid(pg)
    assert failed.value.connection_invalidated
    assert await backend_pid(pg) not in (first, 0)


@PG_ONLY
async def test_procrastinate_pool_replaces_a_connection_killed_while_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = App(connector=connector(os.environ[PG_ENV]))
    async with app.open_async():
        pool = app.connector.pool  # type: ignore[attr-defined]
        checks = 0
        real = AsyncConnectionPool.check_connection

        async def counted(conn: Any) -> None:
            nonlocal checks
            checks += 1
            await real(conn)

        monkeypatch.setattr(AsyncConnectionPool, "check_connection", counted)

        async def pid() -> int:
            row = await app.connector.execute_query_one_async("SELECT pg_backend_pid() AS pid")
            return int(row["pid"])

        seen = {await pid() for _ in range(8)}  # each of the pool's connections once, at least
        opened = checks  # a new connection is checked at its first use
        assert opened <= pool.max_size
        seen |= {await pid() for _ in range(8)}
        assert checks == opened  # reused at once: not checked again
        killed = min(seen)
        terminate(killed)
        monkeypatch.setattr(liveness, "IDLE_SECONDS", 0.0)
        after = {await pid() for _ in range(8)}  # checked, found dead, replaced: no error
        assert killed not in after
        assert pool.get_stats().get("connections_lost") == 1  # found by the check
        assert checks > opened


def test_the_embedded_runner_does_not_load_procrastinate_or_psycopg() -> None:
    """procrastinate and psycopg (≈ 12 MB of a process's memory) are the PostgreSQL runner's:
    the store, the sync, the web app and the CLI load them only when that runner is used (not
    for the pools' check, not for the worker's or the CLI's imports)."""
    code = (
        "import sys, calsync.store.db, calsync.sync.engine, calsync.web.app, calsync.cli, "
        "calsync.cli.worker, calsync.jobs.worker, calsync.jobs.factory; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'procrastinate', 'psycopg', 'psycopg_pool'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
