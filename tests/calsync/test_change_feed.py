"""The change feed: every write appends a change in its transaction, numbered in commit order."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text

from calsync.domain.activity import ActivityDraft, ActivityValues, validate
from calsync.store import activities, changes
from calsync.store.db import Database
from calsync.store.errors import Deleted, VersionMismatch
from calsync.store.models import Activity
from tests.sql_events import statements

from .conftest import World

A, C = "/api/v1/activities", "/api/v1/changes"


async def feed(
    world: World, after: int = 0, limit: int = 1000, key: str | None = None
) -> dict[str, Any]:
    resp = await world.call("GET", C, key, params={"after": after, "limit": limit})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_create_update_delete_append_in_order(world: World) -> None:
    owner, _ = await world.user("ann@acme.test")
    body = {"owner_id": str(owner), "start": "2025-06-02T09:00:00", "end": "2025-06-02T10:00:00"}
    made = (await world.call("POST", A, json=body)).json()
    url = f"{A}/{made['id']}"
    await world.call("PATCH", url, json={"subject": "v2"})
    # refused writes leave no trace and no gap
    assert (
        await world.call("PATCH", url, json={"subject": "v3"}, headers={"If-Match": "1"})
    ).status_code == 412
    assert (await world.call("PATCH", url, json={"end": "2025-06-01T00:00:00"})).status_code == 422
    await world.call("DELETE", url)
    got = (await feed(world))["changes"]
    assert [(c["seq"], c["kind"], c["version"]) for c in got] == [
        (1, "created", 1),
        (2, "updated", 2),
        (3, "deleted", 3),
    ]
    assert {c["activity_id"] for c in got} == {made["id"]} and all(
        c["origin"] == "api" for c in got
    )


async def test_paging(world: World) -> None:
    owner, _ = await world.user("ann@acme.test")
    for n in range(5):
        await world.call(
            "POST",
            A,
            json={
                "owner_id": str(owner),
                "subject": str(n),
                "start": "2025-06-02T09:00:00",
                "end": "2025-06-02T10:00:00",
            },
        )
    page = await feed(world, limit=2)
    assert (
        [c["seq"] for c in page["changes"]] == [1, 2]
        and page["has_more"]
        and page["next_after"] == 2
    )
    page = await feed(world, after=page["next_after"], limit=2)
    assert [c["seq"] for c in page["changes"]] == [3, 4] and page["has_more"]
    page = await feed(world, after=page["next_after"], limit=2)
    assert (
        [c["seq"] for c in page["changes"]] == [5]
        and not page["has_more"]
        and page["next_after"] == 5
    )
    empty = await feed(world, after=5)
    assert empty == {"changes": [], "next_after": 5, "has_more": False}


def _values(subject: str) -> ActivityValues:
    return validate(
        ActivityDraft(
            subject=subject,
            start=datetime(2025, 6, 2, 9),
            end=datetime(2025, 6, 2, 10),
            time_zone="UTC",
        )
    )


async def _create(db: Database, world: World, owner: uuid.UUID, subject: str) -> uuid.UUID:
    async with db.session() as s:
        row = await activities.create(
            s, world.tenant_id, type_key="meeting", owner_id=owner, values=_values(subject)
        )
        await s.commit()
        return row.id


async def test_numbers_follow_commit_order(world: World, db: Database, backend: str) -> None:
    """A write that started first but commits last gets the later number, so a reader that has
    seen N never misses a commit with a smaller one. On PostgreSQL the open write does not hold
    the other up at all (issue 16: one tenant's API writes and syncs ran one at a time, each
    holding the feed's lock until its commit): the second write commits while the first is
    still open — a wait for the first would fail it (lock_timeout) instead of hanging."""
    owner, _ = await world.user("ann@acme.test")
    async with db.session() as first:
        await activities.create(
            first, world.tenant_id, type_key="meeting", owner_id=owner, values=_values("first")
        )
        await first.flush()

        async def second_writer() -> None:
            async with db.session() as second:
                if backend == "postgres":
                    await second.execute(text("SET LOCAL lock_timeout = '5s'"))
                await activities.create(
                    second,
                    world.tenant_id,
                    type_key="meeting",
                    owner_id=owner,
                    values=_values("second"),
                )
                await second.commit()

        task = asyncio.create_task(second_writer())
        if backend == "postgres":
            await task  # committed while the first write is open
        await first.commit()
    await task  # SQLite: one writer at a time, the second went after the first's commit
    got = [(c["seq"], c["kind"]) for c in (await feed(world))["changes"]]
    assert got == [(1, "created"), (2, "created")]
    async with db.session() as s:
        subjects = [
            (await s.get(Activity, uuid.UUID(c["activity_id"]))).subject  # type: ignore[union-attr]
            for c in (await feed(world))["changes"]
        ]
    order = ["second", "first"] if backend == "postgres" else ["first", "second"]
    assert subjects == order


async def test_a_rolled_back_write_leaves_no_gap(world: World, db: Database) -> None:
    owner, _ = await world.user("ann@acme.test")
    async with db.session() as s:
        await activities.create(
            s, world.tenant_id, type_key="meeting", owner_id=owner, values=_values("gone")
        )
        await s.flush()
        await s.rollback()
    await _create(db, world, owner, "kept")
    assert [c["seq"] for c in (await feed(world))["changes"]] == [1]
    async with db.session() as s:
        assert await changes.last_seq(s, world.tenant_id) == 1


async def test_one_write_many_changes_numbered_in_order(world: World, db: Database) -> None:
    """A write's changes keep the order it recorded them in (one reserve for a batch, several
    next_seq calls), numbered consecutively."""
    owner, _ = await world.user("ann@acme.test")
    made = await _create(db, world, owner, "one")
    async with db.session() as s:
        batch = await activities.create_many(
            s,
            world.tenant_id,
            [activities.NewActivity("meeting", owner, _values(f"b{n}")) for n in range(3)],
        )
        row = await s.get(Activity, made)
        assert row is not None
        await activities.update(s, row, _values("one, edited"))
        await s.commit()
    got = [(c["seq"], c["activity_id"], c["kind"]) for c in (await feed(world))["changes"]]
    assert got == [
        (1, str(made), "created"),
        *[(2 + n, str(a.id), "created") for n, a in enumerate(batch)],
        (5, str(made), "updated"),
    ]


async def test_two_edits_of_one_activity_at_once(world: World, db: Database) -> None:
    """Both expected version 1: the one that locks the activity first wins, the other is
    refused once the first commits — never two version-2 changes."""
    owner, _ = await world.user("ann@acme.test")
    made = await _create(db, world, owner, "v1")
    async with db.session() as first:
        row = await first.get(Activity, made)
        assert row is not None
        await activities.update(first, row, _values("first"), expected_version=1)

        async def second_edit() -> None:
            async with db.session() as second:
                other = await second.get(Activity, made)
                assert other is not None
                await activities.update(second, other, _values("second"), expected_version=1)
                await second.commit()

        task = asyncio.create_task(second_edit())
        await asyncio.sleep(0.2)  # the second edit reaches the activity's lock (or SQLite's)
        await first.commit()
    with pytest.raises(VersionMismatch):
        await task
    got = [(c["kind"], c["version"]) for c in (await feed(world))["changes"]]
    assert got == [("created", 1), ("updated", 2)]


async def test_an_edit_of_an_activity_read_before_another_write_builds_on_that_write(
    world: World, db: Database
) -> None:
    """An activity read, then written by someone else, then edited: the edit is checked against
    the row as it is under the lock (the object is reloaded only when the locked row's version
    differs from its own), so it gets the next version and never edits a deleted entry."""
    owner, _ = await world.user("ann@acme.test")
    made = await _create(db, world, owner, "v1")
    gone = await _create(db, world, owner, "to delete")
    async with db.session() as stale:
        row = await stale.get(Activity, made)
        doomed = await stale.get(Activity, gone)
        assert row is not None and doomed is not None and row.version == 1
        await stale.commit()  # the objects stay as read (expire_on_commit=False)
        async with db.session() as other:
            fresh = await other.get(Activity, made)
            victim = await other.get(Activity, gone)
            assert fresh is not None and victim is not None
            await activities.update(other, fresh, _values("someone else's"))
            await activities.delete(other, victim)
            await other.commit()
        await activities.update(stale, row, _values("mine"))
        assert row.version == 3
        with pytest.raises(Deleted):
            await activities.update(stale, doomed, _values("too late"))
        await stale.rollback()
        row = await stale.get(Activity, made)
        assert row is not None
        await activities.update(stale, row, _values("mine"))
        await stale.commit()
    got = [(c["activity_id"], c["kind"], c["version"]) for c in (await feed(world))["changes"]]
    assert got[2:] == [
        (str(made), "updated", 2),
        (str(gone), "deleted", 2),
        (str(made), "updated", 3),
    ]


async def test_twenty_concurrent_writers_and_a_reader(world: World, backend: str) -> None:
    """Order and completeness under concurrency: a reader polling throughout sees every change,
    exactly once, and the final feed is 1..N without gaps."""
    writers, rounds = 20, 4
    owners = [(await world.user(f"w{i}@acme.test"))[0] for i in range(writers)]
    done = asyncio.Event()
    seen: list[dict[str, Any]] = []

    async def reader() -> None:
        after = 0
        while True:
            finished = done.is_set()
            page = await feed(world, after=after, limit=50)
            seen.extend(page["changes"])
            after = page["next_after"]
            if finished and not page["has_more"]:
                return
            await asyncio.sleep(0)

    async def writer(owner: uuid.UUID) -> int:
        body = {
            "owner_id": str(owner),
            "start": "2025-06-02T09:00:00",
            "end": "2025-06-02T10:00:00",
        }
        resp = await world.call("POST", A, json=body)
        assert resp.status_code == 201, resp.text
        url = f"{A}/{resp.json()['id']}"
        for n in range(rounds):
            await asyncio.sleep(random.random() / 100)
            resp = await world.call("PATCH", url, json={"subject": f"round {n}"})
            assert resp.status_code == 200, resp.text
        assert (await world.call("DELETE", url)).status_code == 204
        return rounds + 2

    read = asyncio.create_task(reader())
    counts = await asyncio.gather(*(writer(o) for o in owners))
    done.set()
    await asyncio.wait_for(read, 60)

    total = sum(counts)
    final = (await feed(world, limit=1000))["changes"]
    assert [c["seq"] for c in final] == list(range(1, total + 1))
    assert [c["seq"] for c in seen] == [c["seq"] for c in final]  # the live reader missed nothing
    by_activity: dict[str, list[int]] = {}
    for c in final:
        by_activity.setdefault(c["activity_id"], []).append(c["version"])
    assert len(by_activity) == writers
    assert all(v == list(range(1, rounds + 3)) for v in by_activity.values())


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
async def test_bad_limits(world: World, limit: str) -> None:
    assert (await world.call("GET", C, params={"limit": limit})).status_code == 422


async def test_a_write_of_many_changes_moves_the_counter_once(
    world: World, db: Database, backend: str
) -> None:
    """A chunk of a first import records 500 changes in one transaction. The feed's counter
    moves once for them, not once per change: on PostgreSQL inside the commit (the numbering
    trigger numbers the transaction's provisional changes together, in the order recorded),
    on SQLite when the range is reserved. The numbers stay consecutive, in that order."""
    owner, _ = await world.user("ann@acme.test")
    first = await _create(db, world, owner, "before")
    # this backend's tenant updates not yet reported: this transaction's, and maybe earlier
    # ones' on the same connection (PostgreSQL reports them to its statistics every second)
    updates = text(
        "SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_xact_user_tables WHERE relname = 'tenant'"
    )
    async with db.session() as s:
        before = await s.scalar(updates) if backend == "postgres" else 0
        with statements(db) as sent:
            batch = await activities.create_many(
                s,
                world.tenant_id,
                [activities.NewActivity("meeting", owner, _values(f"b{n}")) for n in range(40)],
            )
            if backend == "postgres":
                # the commit's numbering now, inside the transaction, where its counts show
                await s.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
                moved = await s.scalar(updates) - before
            else:
                moved = sum(1 for st in sent if st.startswith("UPDATE tenant"))
        await s.commit()
    assert moved == 1
    got = [(c["seq"], c["activity_id"]) for c in (await feed(world))["changes"]]
    assert got == [(1, str(first)), *[(2 + n, str(a.id)) for n, a in enumerate(batch)]]
    async with db.session() as s:
        assert await changes.last_seq(s, world.tenant_id) == 41
