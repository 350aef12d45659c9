"""GET /api/v1/activities reads plain rows (store/activity_reads.py), not ORM objects: it must
find exactly what the ORM listing (store/activities.list_) finds, field for field, for every
shape of the filters — the page, its order, and each activity's attendees in their order."""

from __future__ import annotations

import itertools
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from calsync.store import activities, activity_reads
from calsync.store.activities import Viewer

from .conftest import World

A = "/api/v1/activities"


async def test_the_core_listing_finds_what_the_orm_listing_finds(world: World) -> None:
    ann, _ = await world.user("ann@acme.test")
    bob, _ = await world.user("bob@acme.test")
    made: list[str] = []
    for i, (owner, guests) in enumerate(
        [
            (ann, ["zed@x.test", "bob@acme.test", "amy@x.test"]),
            (bob, []),
            (ann, ["bob@acme.test"]),
            (bob, ["ann@acme.test", "carl@x.test"]),
            (ann, []),
        ]
    ):
        body: dict[str, Any] = {
            "subject": f"Entry {i}",
            "start": f"2025-06-0{2 + i % 3}T09:00:00",  # equal starts: the id breaks the tie
            "end": f"2025-06-0{2 + i % 3}T10:00:00",
            "time_zone": "Europe/Oslo",
            "owner_id": str(owner),
            "type": "call" if i % 2 else "meeting",
            "attendees": [{"email": g, "display_name": g.upper()} for g in guests],
        }
        resp = await world.call("POST", A, json=body)
        assert resp.status_code == 201, resp.text
        made.append(resp.json()["id"])
    series = await world.call(
        "POST",
        A,
        json={
            "subject": "Weekly",
            "start": "2025-05-26T08:00:00",
            "end": "2025-05-26T08:30:00",
            "time_zone": "Europe/Oslo",
            "owner_id": str(ann),
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
        },
    )
    assert series.status_code == 201, series.text
    moved = await world.call(
        "POST",
        A,
        json={
            "recurring_parent_id": series.json()["id"],
            "original_start": "2025-06-02T08:00:00",
            "start": "2025-06-02T11:00:00",
            "end": "2025-06-02T11:30:00",
        },
    )
    assert moved.status_code == 201, moved.text
    assert (await world.call("DELETE", f"{A}/{made[4]}")).status_code == 204

    june = datetime(2025, 6, 2, tzinfo=UTC), datetime(2025, 6, 3, 12, tzinfo=UTC)
    shapes = itertools.product(
        [None, Viewer(bob, "bob@acme.test")],
        [None, ann],
        [None, "call"],
        [None, june[0]],
        [None, june[1]],
        [False, True],
        [(500, 0), (2, 1)],
    )
    names = [f.name for f in fields(activity_reads.ActivityRow) if f.name != "attendees"]
    checked = 0
    async with world.db.session() as s:
        for viewer, owner_id, type_key, start, end, deleted, (limit, offset) in shapes:
            query: dict[str, Any] = {
                "viewer": viewer,
                "owner_id": owner_id,
                "type_key": type_key,
                "start": start,
                "end": end,
                "include_deleted": deleted,
                "limit": limit,
                "offset": offset,
            }
            rows = await activity_reads.listing(s, world.tenant_id, **query)
            expected = await activities.list_(s, world.tenant_id, **query)
            assert [r.id for r in rows] == [e.id for e in expected], query
            for row, orm in zip(rows, expected, strict=True):
                for name in names:
                    assert getattr(row, name) == getattr(orm, name), (name, query)
                assert [
                    (a.email, a.display_name, a.response_status, a.optional) for a in row.attendees
                ] == [
                    (a.email, a.display_name, a.response_status, a.optional) for a in orm.attendees
                ], query
            checked += bool(rows)
            s.expunge_all()
    assert checked > 40  # most shapes find something
