"""Is a pooled PostgreSQL connection still alive? Asked only of one that sat idle.

A pool hands out connections it opened earlier; after a server restart, a failover or an idle
timeout, those are dead and the first statement on one fails. SQLAlchemy's `pool_pre_ping`
and psycopg_pool's `check` (procrastinate turns it on) ask on *every* checkout — with asyncpg
that is BEGIN, ";" and ROLLBACK, three round trips, before every transaction. Under load that
was ≈ 10 % of the CPU of `calsync serve` and of each `calsync worker`, and the pool check
another 2–4 % (bench/api_load.py on PostgreSQL, py-spy, 2026-12-04).

A connection that was back in its pool less than `IDLE_SECONDS` ago was working then; only
one idle for longer is asked. That keeps the point of the check — connections a restart or an
idle timeout killed while they waited are replaced, not handed to a request — and costs
nothing under load, when every connection is reused within milliseconds. A dead connection
found at checkout is replaced, and SQLAlchemy replaces the pool's older ones with it (a
restart killed them all); one that died in the last second fails its statement as it would
have failed a moment earlier in its previous use.

Neither library has a ping-by-idle-time option: SQLAlchemy documents the checkout event
raising DisconnectionError as its way to check a connection, and psycopg_pool takes the
`check` and `reset` callbacks used here.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # psycopg is loaded by procrastinate's runner only: ~10 MB in every process
    import psycopg
    from psycopg_pool import AsyncConnectionPool

IDLE_SECONDS = 1.0
_IDLE_SINCE = "calsync_idle_since"


def ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a connection at checkout when it sat in the pool for IDLE_SECONDS or more."""
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # the pool opens a new one, and replaces those older than this one
                raise InvalidatePoolError(f"pooled connection is dead: {exc}") from exc
            raise

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checked_out)


_returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
    weakref.WeakKeyDictionary()
)


async def _returned_now(conn: psycopg.AsyncConnection[Any]) -> None:
    _returned[conn] = time.monotonic()


async def _check_when_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    from psycopg_pool import AsyncConnectionPool

    since = _returned.pop(conn, None)
    if since is not None and time.monotonic() - since < IDLE_SECONDS:
        return
    await AsyncConnectionPool.check_connection(conn)


def psycopg_pool(**kwargs: Any) -> AsyncConnectionPool[Any]:
    """procrastinate's `pool_factory`: its pool, checking a connection only when it was idle
    (procrastinate passes psycopg_pool's check-every-time `check`, replaced here)."""
    from psycopg_pool import AsyncConnectionPool

    kwargs["check"] = _check_when_idle
    kwargs["reset"] = _returned_now
    return AsyncConnectionPool(**kwargs)
