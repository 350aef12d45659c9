"""Google requests counted per UTC minute, for every process: the shared count the project-wide
request budget (jobs/budget.py) is checked against.

One row per minute that saw requests; each sync run, channel watch or stop adds its count with
one upsert (INSERT … ON CONFLICT DO UPDATE, on SQLite and PostgreSQL alike), so N web processes
and N workers spend from one budget. A day is at most 1,440 rows; older rows are pruned.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import BigInteger, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

KEPT = timedelta(days=2)


class GoogleRequestMinute(Base):
    """Google requests sent in one UTC minute, by all processes (migration 0017)."""

    __tablename__ = "google_request_minute"

    minute: Mapped[datetime] = mapped_column(primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def record(session: AsyncSession, at: datetime, requests: int) -> None:
    """Add `requests` to the count of `at`'s minute."""
    if requests <= 0:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(GoogleRequestMinute).values(minute=minute_of(at), requests=requests)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[GoogleRequestMinute.minute],
            set_={"requests": GoogleRequestMinute.requests + statement.excluded.requests},
        )
    )


async def used(session: AsyncSession, since: datetime, until: datetime | None = None) -> int:
    """Requests counted in the minutes from `since`'s minute on (up to `until`, exclusive)."""
    query = select(func.coalesce(func.sum(GoogleRequestMinute.requests), 0)).where(
        GoogleRequestMinute.minute >= minute_of(since)
    )
    if until is not None:
        query = query.where(GoogleRequestMinute.minute < until)
    return int(await session.scalar(query) or 0)


async def prune(session: AsyncSession, now: datetime) -> None:
    await session.execute(
        delete(GoogleRequestMinute).where(GoogleRequestMinute.minute < now - KEPT)
    )
