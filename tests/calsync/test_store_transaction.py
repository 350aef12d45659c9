"""store.db.Transaction: a sync's table statements on a connection taken at the first statement
and returned at the commit (as an ORM session's is), with an ORM session joined to it for what
still goes through the ORM; what is not committed is rolled back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import event, select, update

from calsync.store import tenants, webhooks
from calsync.store.db import Database
from calsync.store.models import Tenant


class Pool:
    """Checkouts and checkins of the engine's connections."""

    def __init__(self, db: Database) -> None:
        self.out = self.back = 0
        event.listen(db.engine.sync_engine, "checkout", self._out)
        event.listen(db.engine.sync_engine, "checkin", self._back)

    def _out(self, *_: Any) -> None:
        self.out += 1

    def _back(self, *_: Any) -> None:
        self.back += 1


async def name_of(db: Database, tenant_id: uuid.UUID) -> str | None:
    async with db.session() as s:
        return await s.scalar(select(Tenant.name).where(Tenant.id == tenant_id))


async def new_tenant(db: Database) -> uuid.UUID:
    async with db.session() as s:
        tenant = await tenants.create(s, f"t-{uuid.uuid4()}")
        await s.commit()
    return tenant.id


async def test_a_connection_is_held_from_the_first_statement_to_the_commit(db: Database) -> None:
    tenant_id = await new_tenant(db)
    pool = Pool(db)
    async with db.transaction() as end:
        assert (pool.out, pool.back) == (0, 0)  # nothing run: nothing held
        await end.commit()  # nothing to commit
        assert (pool.out, pool.back) == (0, 0)
        conn = await end.connection()
        assert await end.connection() is conn
        await conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="first"))
        assert (pool.out, pool.back) == (1, 0)
        await end.commit()
        assert (pool.out, pool.back) == (1, 1)  # returned at the commit
        assert await name_of(db, tenant_id) == "first"
        # the next statement takes a connection again, for a transaction of its own
        conn = await end.connection()
        await conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="second"))
        await end.commit()
    assert await name_of(db, tenant_id) == "second"
    assert pool.out == pool.back


async def test_what_is_not_committed_is_rolled_back(db: Database) -> None:
    tenant_id = await new_tenant(db)
    pool = Pool(db)
    async with db.transaction() as end:
        conn = await end.connection()
        await conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="lost"))
        async with end.session() as s:
            tenant = await s.get(Tenant, tenant_id)
            assert tenant is not None and tenant.name == "lost"  # the same transaction
            tenant.lookback_days = 99
    assert pool.out == pool.back == 1  # returned at the block's end
    assert await name_of(db, tenant_id) != "lost"
    async with db.session() as s:
        assert await s.scalar(select(Tenant.lookback_days).where(Tenant.id == tenant_id)) != 99


async def test_the_joined_session_writes_in_the_transaction_and_commits_with_it(
    db: Database,
) -> None:
    tenant_id = await new_tenant(db)
    async with db.transaction() as end:
        async with end.session() as s:
            tenant = await s.get(Tenant, tenant_id)
            assert tenant is not None
            tenant.lookback_days = 77  # flushed when the session's block ends
            await s.commit()  # the session commits nothing: the transaction's owner does
        assert await end.connection() is await end.connection()
        conn = await end.connection()
        assert await conn.scalar(select(Tenant.lookback_days).where(Tenant.id == tenant_id)) == 77
        async with db.session() as other:  # not committed yet: not seen outside
            seen = await other.scalar(select(Tenant.lookback_days).where(Tenant.id == tenant_id))
            assert seen != 77
        await end.commit()
    async with db.session() as s:
        assert await s.scalar(select(Tenant.lookback_days).where(Tenant.id == tenant_id)) == 77


async def test_a_joined_session_refuses_work_only_a_commit_would_do(db: Database) -> None:
    """Its commit hooks never run: an event for the outbox would be lost without a word."""
    tenant_id = await new_tenant(db)
    async with db.transaction() as end:
        with pytest.raises(RuntimeError, match="left work for a commit"):
            async with end.session() as s:
                webhooks.emit(s, tenant_id, "connection.needs_reauth", {})


async def test_a_session_or_connection_closes_in_a_task_only_with_a_transaction_open(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`db.session()` and `db.connection()` close as `async with` would: what is not
    committed is rolled back (in SQLAlchemy's shielded task, which a cancellation cannot cut
    short), the connection goes back to the pool; a committed one closes without that task."""
    from sqlalchemy.ext.asyncio import engine, session

    tasks: list[object] = []
    real = engine._run_to_completion

    async def spy(coro: Any) -> Any:
        tasks.append(coro)
        return await real(coro)

    monkeypatch.setattr(engine, "_run_to_completion", spy)
    monkeypatch.setattr(session, "_run_to_completion", spy)
    tenant_id = await new_tenant(db)
    pool = Pool(db)
    tasks.clear()
    async with db.connection() as conn:
        await conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="lost"))
    async with db.session() as s:
        await s.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="lost too"))
    assert len(tasks) == 2
    assert (await name_of(db, tenant_id) or "").startswith("t-")  # both rolled back
    assert pool.out == pool.back
    tasks.clear()
    async with db.connection() as conn:
        await conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="kept"))
        await conn.commit()
    async with db.session() as s:
        await s.execute(update(Tenant).where(Tenant.id == tenant_id).values(name="kept too"))
        await s.commit()
    assert tasks == []
    assert await name_of(db, tenant_id) == "kept too"
    assert pool.out == pool.back
