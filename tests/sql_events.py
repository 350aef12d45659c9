"""What the database was asked while a block ran, for the tests that pin a sync's or an API
call's cost: SQL statements and transactions, from SQLAlchemy's engine events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from calsync.store.db import Database


@contextmanager
def _listening(db: Database, name: str, listener: Callable[..., None]) -> Iterator[None]:
    event.listen(db.engine.sync_engine, name, listener)
    try:
        yield
    finally:
        event.remove(db.engine.sync_engine, name, listener)


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement sent while the block runs (its whitespace collapsed)."""
    sent: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    with _listening(db, "before_cursor_execute", record):
        yield sent


@contextmanager
def transactions(db: Database) -> Iterator[list[int]]:
    """One item per transaction begun while the block runs."""
    begun: list[int] = []

    def begin(_conn: Any) -> None:
        begun.append(1)

    with _listening(db, "begin", begin):
        yield begun
