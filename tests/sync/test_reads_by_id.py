"""The sync's reads of given entries and links look each one up by its id, whatever the size of
the tenant, the owner's calendar or the binding.

SQLite has no statistics to plan from (store/planner.py), and takes an equality on an index's
first column for a selective one: `tenant_id = ? AND id IN (?, ?, ?)` was answered by walking
the tenant's index on (tenant_id, owner_id, start) and testing every entry against the list.
With three ids or more, a push of a few CRM changes, a sync of a few new Google events and
every page of a first import read the whole tenant (or the owner's calendar, or the binding's
links): a first import of 50,000 events spent seconds there. The tenant, owner and binding
still filter the rows; SQLite is told not to use them to find them (`base.unindexed`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from calsync.store import bulk_import, links, sync_rows
from calsync.store.db import Database

from .conftest import Harness, at

#: a read of some entries (or of their links) by id, as the sync calls it
Read = Callable[[Any, Harness, list[uuid.UUID]], Awaitable[Any]]

#: each read, and whether it finds the linked entries asked for (still_unlinked: none of them)
READS: dict[str, tuple[Read, bool]] = {
    "sync_rows.activities_and_links (the push's plan)": (
        lambda s, h, ids: sync_rows.activities_and_links(s, h.tenant_id, h.binding_id, ids),
        True,
    ),
    "bulk_import.owned_activity_ids (a page of new events)": (
        lambda s, h, ids: bulk_import.owned_activity_ids(s, h.tenant_id, h.user_id, ids),
        True,
    ),
    "links.activities": (lambda s, h, ids: links.activities(s, h.tenant_id, ids), True),
    "links.by_activities": (lambda s, h, ids: links.by_activities(s, h.binding_id, ids), True),
    "links.still_unlinked (matching)": (
        lambda s, h, ids: links.still_unlinked(s, h.tenant_id, h.user_id, h.binding_id, ids),
        False,
    ),
}


def _found(result: Any) -> set[uuid.UUID]:
    """The entry ids a read returned (the push's plan: its activities, each with its link)."""
    if isinstance(result, tuple):
        entries, linked = result
        assert set(entries) == set(linked)
        return set(entries)
    return set(result)


async def _plans(db: Database, sent: list[tuple[str, Any]]) -> list[str]:
    """SQLite's query plan of each statement sent (EXPLAIN QUERY PLAN, its detail lines)."""
    details: list[str] = []
    async with db.engine.connect() as conn:
        for statement, parameters in sent:
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            details += [str(row[-1]) for row in rows]
    return details


@pytest.mark.parametrize("name", list(READS))
async def test_entries_read_by_id_are_found_by_id(h: Harness, name: str) -> None:
    read, finds = READS[name]
    ids = [await h.activity(f"Meeting {i}", at(2, 8) + timedelta(hours=i)) for i in range(12)]
    assert (await h.sync()).ok  # linked: the link reads have something to find
    for i in range(30):  # more of the owner's entries, none of them asked for
        await h.activity(f"Other {i}", at(3, 8) + timedelta(minutes=30 * i))
    sent: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    async with h.db.session() as s:
        sa_event.listen(h.db.engine.sync_engine, "before_cursor_execute", record)
        try:
            found = await read(s, h, ids)
        finally:
            sa_event.remove(h.db.engine.sync_engine, "before_cursor_execute", record)
    assert _found(found) == (set(ids) if finds else set())  # still_unlinked: all are linked
    if h.db.dialect != "sqlite":
        return  # PostgreSQL plans from statistics (store/planner.py)
    plans = await _plans(h.db, sent)
    scans = [p for p in plans if "tenant_id=?" in p or "binding_id=?)" in p or p.startswith("SCAN")]
    assert scans == [], plans
    assert any("(id=?)" in p or "(activity_id=?)" in p for p in plans), plans
