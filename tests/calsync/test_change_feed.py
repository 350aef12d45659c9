"""The change feed: every write appends a change in its transaction, numbered in commit order."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest

from calsync.store import changes
from calsync.store.db import Database

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


async def test_a_later_writer_waits_for_an_earlier_one(world: World, db: Database) -> None:
    """Whoever holds number N commits before anyone gets N+1, so readers cannot skip N."""
    async with db.session() as first:
        seq = await changes.next_seq(first, world.tenant_id)

        async def second_writer() -> int:
            async with db.session() as second:
                value = await changes.next_seq(second, world.tenant_id)
                await second.commit()
                return value

        task = asyncio.create_task(second_writer())
        await asyncio.sleep(0.3)
        assert not task.done()  # blocked behind the first transaction
        await first.commit()
    assert await asyncio.wait_for(task, 10) == seq + 1


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
