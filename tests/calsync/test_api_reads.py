"""The CRM API's GET requests read through `Database.reads()` (issue 16): on PostgreSQL without
a transaction, so a week's listing is 3 round trips instead of 5 (no BEGIN, no ROLLBACK). A
statement that may write is refused there before it is sent, on both databases: each statement
would be committed on its own, and a handler that wrote would leave half of its work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from sqlalchemy import func, insert, select, text

from calsync.store import tenants
from calsync.store.db import Database, WriteInReads
from calsync.store.models import Tenant

from .conftest import World

A = "/api/v1/activities"


@contextmanager
def begun() -> Iterator[list[str]]:
    """Every BEGIN asyncpg sends while the block runs (what SQLAlchemy's asyncpg dialect
    calls for a transaction)."""
    sent: list[str] = []
    real = asyncpg.connection.Connection.transaction

    def counted(self: asyncpg.Connection, **kwargs: object) -> object:
        sent.append("BEGIN")
        return real(self, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncpg.connection.Connection, "transaction", counted)
        yield sent


async def test_a_write_through_reads_is_refused_and_nothing_is_written(world: World) -> None:
    async with world.db.session() as s:
        before = await s.scalar(select(func.count()).select_from(Tenant))
    async with world.db.reads() as s:
        assert (await s.execute(text("SELECT 1"))).scalar() == 1
        with pytest.raises(WriteInReads, match="write in a session"):
            await s.execute(insert(Tenant).values(id=uuid.uuid4(), name="not written"))
    async with world.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Tenant)) == before
        # the engine's own sessions write as before (the guard is the readers' alone)
        await tenants.create(s, f"written-{uuid.uuid4()}")
        await s.commit()
        assert await s.scalar(select(func.count()).select_from(Tenant)) == before + 1


async def test_gets_answer_through_reads_and_writes_still_commit_together(world: World) -> None:
    owner, _ = await world.user("ann@acme.test")
    created = await world.call(
        "POST",
        A,
        json={
            "subject": "Demo",
            "start": "2025-06-02T09:00:00",
            "end": "2025-06-02T10:00:00",
            "owner_id": str(owner),
        },
    )
    assert created.status_code == 201, created.text
    week = f"{A}?owner={owner}&from=2025-06-02T00:00:00Z&to=2025-06-09T00:00:00Z"
    with begun() as sent:
        listed = await world.call("GET", week)
        one = await world.call("GET", f"{A}/{created.json()['id']}")
        feed = await world.call("GET", "/api/v1/changes")
    assert listed.status_code == one.status_code == feed.status_code == 200
    assert [a["subject"] for a in listed.json()["activities"]] == ["Demo"]
    assert one.json()["subject"] == "Demo"
    assert [c["kind"] for c in feed.json()["changes"]] == ["created"]
    if world.db.dialect == "postgresql":
        assert sent == []  # no BEGIN (nor the ROLLBACK that ended it)
    with begun() as sent:
        patched = await world.call(
            "PATCH",
            f"{A}/{created.json()['id']}",
            json={"subject": "Moved"},
            headers={"If-Match": created.headers["ETag"]},
        )
    assert patched.status_code == 200, patched.text
    if world.db.dialect == "postgresql":
        assert sent == ["BEGIN"]  # a write is one transaction, as before


async def test_a_connection_back_from_reads_runs_transactions_again(world: World) -> None:
    """The reads' AUTOCOMMIT is the connection's only while reads() holds it: back in the
    pool, the same connection (a pool of one here) rolls a session's write back again."""
    db = Database(world.db.url, pool_size=1, max_overflow=0)
    try:
        for _ in range(2):
            async with db.reads() as s:
                assert (await s.execute(text("SELECT 1"))).scalar() == 1
            name = f"rolled back {uuid.uuid4()}"
            async with db.session() as s:
                await tenants.create(s, name)
                await s.flush()
                await s.rollback()
            async with db.reads() as s:
                found = await s.scalar(select(func.count()).where(Tenant.name == name))
            assert found == 0
    finally:
        await db.dispose()
