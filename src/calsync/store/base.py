"""Declarative base, naming convention and the column types every model shares."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, cast

from sqlalchemy import JSON, ColumnElement, DateTime, MetaData, Table, Uuid
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

from calsync import clock

# Stable constraint names, so migrations can name what they drop on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC timestamp on both databases (SQLite has no time zones: stored naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        list[str]: JSON(),
        uuid.UUID: Uuid(),
    }


def utcnow() -> datetime:
    """Now, in UTC: the wall clock, or a simulation's (calsync.clock)."""
    return clock.utcnow()


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def new_ids(n: int) -> list[uuid.UUID]:
    """`n` times `new_id()`: what uuid.uuid4 makes (a version-4 UUID of 16 random bytes from
    the OS), the bytes read in one os.urandom call instead of one each. uuid4 spends half its
    time in that call: a first import makes two ids an event (3.6 -> 1.8 us an id)."""
    data = os.urandom(16 * n)
    return [uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, 16 * n, 16)]


T = TypeVar("T")

#: ids per IN (...) list: a page of Google's listing (at most 2,500) in one query, far below
#: SQLite's 32,766 bound parameters (since 3.32) and asyncpg's 32,767
ID_CHUNK = 2500


def chunked(items: Iterable[T], size: int = ID_CHUNK) -> Iterator[list[T]]:
    """`items` in lists of at most `size`, for IN (...) lists (itertools.batched, which
    arrived in Python 3.12, gives tuples; calsync still runs on 3.11)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements built once on it (not the ORM's paths)."""
    return cast(Table, model.__table__)


class unindexed(ColumnElement[Any]):  # used like a SQL function: unindexed(Activity.tenant_id)
    """`column`, which SQLite is told not to use an index for (its unary +, SQLite's own way
    to disqualify a term from index use); the column itself on other databases.

    For reads of given ids: SQLite has no statistics (store/planner.py) and takes an equality
    on an index's first column for a selective one, so `tenant_id = ? AND id IN (?, ?, ?)`
    walked the tenant's (tenant_id, owner_id, start) index, every entry tested against the
    list, rather than look the three up by id. Wrapped, the tenant still filters the rows
    found by id. PostgreSQL plans from statistics and is left to them."""

    inherit_cache = True

    def __init__(self, column: QueryableAttribute[Any] | ColumnElement[Any]) -> None:
        self.column: ColumnElement[Any] = (
            column.__clause_element__() if isinstance(column, QueryableAttribute) else column
        )
        self.type = self.column.type

    def get_children(self, **kw: Any) -> Iterable[ColumnElement[Any]]:
        return (self.column,)

    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012


@compiles(unindexed)
def _as_column(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(unindexed, "sqlite")
def _not_for_an_index(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)
