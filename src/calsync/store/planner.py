"""PostgreSQL's planner statistics of the tables a bulk import fills (activity, change,
event_link): refreshed after a large import, and while one streams when the rows it added
would at least double a table (sync/pull.py). SQLite plans without statistics: nothing.

Until autovacuum analyses a table (a minute or more after a bulk load), its plans come from
the statistics of the table as it was: after a first import into a new database, "empty".
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .base import table_of
from .models import Activity, Change, EventLink

_TABLES = sorted((table_of(Activity), table_of(Change), table_of(EventLink)), key=lambda t: t.name)


def _import_tables(connection: AsyncConnection) -> list[str]:
    quote = connection.dialect.identifier_preparer.format_table
    return [quote(t) for t in _TABLES]


async def refresh(session: AsyncSession) -> bool:
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
    await connection.exec_driver_sql(f"ANALYZE {', '.join(_import_tables(connection))}")
    return True


#: the fewest rows any of the named tables has in its planner statistics (-1: never analysed)
_ROWS_IN_STATISTICS = text(
    "SELECT min(reltuples) FROM pg_class WHERE oid = ANY(CAST(CAST(:tables AS text[]) AS regclass[]))"
)


async def behind(session: AsyncSession, imported: int) -> bool:
    """PostgreSQL: whether one of the tables a bulk import fills has at most `imported` rows
    in its planner statistics (pg_class.reltuples; -1 when never analysed), so the rows
    imported since would at least double it: plans made from them may scan what they think
    is a small table. In a large shared table a few thousand new rows change no plan, and an
    ANALYZE would sample it for nothing. SQLite: False."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return False
    rows = await connection.scalar(_ROWS_IN_STATISTICS, {"tables": _import_tables(connection)})
    return rows is not None and rows <= imported
