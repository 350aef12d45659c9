"""Push-channel state that every process must see lives in the database (migration 0013): a
failed watch's retry time, and the connection's calendarList check — running, or owed again.
Each "process" here is its own engine on the same database file (or the served app)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from calsync.store import bindings, connections, tenants, users
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.statuses import BindingStage
from calsync.sync.channels.service import WATCH_RETRY, renew_due_channels
from tests.channels.conftest import Served


@pytest.fixture
async def other(db: Database) -> AsyncIterator[Database]:
    """A second process: its own engine and connections on the same database."""
    second = Database(db.url)
    yield second
    await second.dispose()


async def _connection_with_binding(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with db.session() as s:
        tenant = await tenants.create(s, f"t-{uuid.uuid4()}")
        user = await users.create(s, tenant.id, "two@example.com")
        conn = await connections.create(s, tenant.id, user.id, google_email="two@example.com")
        binding = await bindings.create(s, tenant.id, conn.id, "two@example.com")
        await bindings.set_stage(s, binding.id, BindingStage.INCREMENTAL, None)
        await s.commit()
    return conn.id, binding.id


async def test_a_retry_time_set_by_one_process_holds_in_another(
    db: Database, other: Database
) -> None:
    conn_id, binding_id = await _connection_with_binding(db)
    now = utcnow()
    later = now + timedelta(hours=1)

    async def due(database: Database, holder: stored.Holder, at: Any) -> set[uuid.UUID]:
        async with database.session() as s:
            return set(await stored.due(s, holder, renew_before=at, now=at, limit=100_000))

    assert binding_id in await due(other, stored.EVENTS, now)
    assert conn_id in await due(other, stored.CALENDAR_LIST, now)
    async with db.session() as s:  # the first process's watches failed
        await stored.set_retry_after(s, stored.EVENTS, binding_id, now + WATCH_RETRY)
        await stored.set_retry_after(s, stored.CALENDAR_LIST, conn_id, now + WATCH_RETRY)
        await s.commit()
    assert binding_id not in await due(other, stored.EVENTS, now)
    assert conn_id not in await due(other, stored.CALENDAR_LIST, now)
    assert binding_id in await due(other, stored.EVENTS, later)
    assert conn_id in await due(other, stored.CALENDAR_LIST, later)
    async with other.session() as s:  # the second one's retry worked
        await stored.set_retry_after(s, stored.EVENTS, binding_id, None)
        await s.commit()
    assert binding_id in await due(db, stored.EVENTS, now)


async def test_a_calendar_list_check_is_coalesced_across_processes(
    db: Database, other: Database
) -> None:
    conn_id, _ = await _connection_with_binding(db)
    async with db.session() as s:
        await stored.replace(
            s, stored.CALENDAR_LIST, conn_id, expected=None, channel_id="list-x", resource_id="r"
        )
        await s.commit()

    async def notified(database: Database, number: int) -> bool:
        async with database.session() as s:
            fresh = await stored.note_message(
                s, stored.CALENDAR_LIST, conn_id, "list-x", number, utcnow()
            )
            await s.commit()
        return fresh

    async def claim(database: Database) -> bool:
        async with database.session() as s:
            claimed = await stored.claim_list_check(s, conn_id, utcnow())
            await s.commit()
        return claimed

    async def end(database: Database) -> bool:
        async with database.session() as s:
            again = await stored.end_list_check(s, conn_id, utcnow())
            await s.commit()
        return again

    assert not await claim(db)  # nothing owed
    assert await notified(db, 1) and await claim(db)  # the first process checks
    # notifications reaching the second process meanwhile: it does not check as well ...
    assert await notified(other, 2) and not await claim(other)
    assert await notified(other, 3) and not await claim(other)
    assert not await notified(other, 3)  # (a replay owes nothing)
    # ... the first process checks once more for both, then stops
    assert await end(db)
    assert not await end(db)
    assert not await claim(other)
    # the next notification is checked by whoever receives it
    assert await notified(other, 4) and await claim(other)
    assert not await end(other)


async def test_a_check_left_by_a_dead_process_is_taken_over(db: Database, other: Database) -> None:
    conn_id, _ = await _connection_with_binding(db)
    async with db.session() as s:
        await stored.replace(
            s, stored.CALENDAR_LIST, conn_id, expected=None, channel_id="list-y", resource_id="r"
        )
        await stored.note_message(s, stored.CALENDAR_LIST, conn_id, "list-y", 1, utcnow())
        assert await stored.claim_list_check(s, conn_id, utcnow())
        await s.commit()
    # the first process died mid-check; a notification to the second is owed a check
    async with other.session() as s:
        await stored.note_message(s, stored.CALENDAR_LIST, conn_id, "list-y", 2, utcnow())
        assert not await stored.claim_list_check(s, conn_id, utcnow())
        after_lease = utcnow() + stored.LIST_CHECK_LEASE + timedelta(seconds=1)
        assert await stored.claim_list_check(s, conn_id, after_lease)
        await s.commit()


def _requests(served: Served, suffix: str) -> int:
    log = served.emu.control("GET", "/requests").json()["items"]
    return sum(1 for r in log if r["path"].endswith(suffix))


async def test_the_renewal_tick_of_another_process_waits_for_the_retry_time(
    served: Served,
) -> None:
    second = Database(served.world.db.url)
    try:
        config = served.emu.world.config
        config.allow_http_webhooks = False  # every watch fails
        try:
            user_id, _, _ = await served.connected("tia@example.com")
            now = utcnow()
            first = await renew_due_channels(
                served.world.db, served.services.access, served.services.settings, now=now
            )
            assert first.lists_failed >= 1
            async with second.session() as s:
                conn = await connections.for_user(s, user_id)
            assert conn is not None and conn.list_channel_retry_after is not None
            watches = _requests(served, "calendarList/watch")
            # another process's tick at the same time leaves it alone
            await renew_due_channels(
                second, served.services.access, served.services.settings, now=now
            )
            assert _requests(served, "calendarList/watch") == watches
        finally:
            config.allow_http_webhooks = True
        # once the retry time has passed, the other process's tick makes the channel
        later = now + WATCH_RETRY + timedelta(seconds=1)
        done = await renew_due_channels(
            second, served.services.access, served.services.settings, now=later
        )
        assert done.lists_watched >= 1
        async with second.session() as s:
            conn = await connections.for_user(s, user_id)
        assert conn is not None and conn.list_channel_id and conn.list_channel_retry_after is None
    finally:
        await second.dispose()


async def test_a_list_notification_waits_for_the_check_another_process_runs(
    served: Served,
) -> None:
    user_id, _, _ = await served.connected("ugo@example.com")
    await served.wait_for(lambda: len(served.deliveries()) == 2)  # the `sync` messages
    second = Database(served.world.db.url)
    try:
        async with second.session() as s:
            conn = await connections.for_user(s, user_id)
            assert conn is not None
            # another process received notification 1 and is checking
            assert await stored.note_message(
                s, stored.CALENDAR_LIST, conn.id, conn.list_channel_id, 1, utcnow()
            )
            assert await stored.claim_list_check(s, conn.id, utcnow())
            await s.commit()
        headers = {
            "X-Goog-Channel-ID": conn.list_channel_id,
            "X-Goog-Channel-Token": conn.list_channel_token,
            "X-Goog-Resource-ID": conn.list_channel_resource_id,
            "X-Goog-Resource-State": "exists",
            "X-Goog-Message-Number": "2",
        }
        listed = _requests(served, "/calendarList")
        resp = await served.world.client.post("/webhooks/google", headers=headers)
        assert resp.status_code == 200
        await served.services.drain()
        assert _requests(served, "/calendarList") == listed  # the served app left it
        async with second.session() as s:  # the other process checks once more, then ends
            assert await stored.end_list_check(s, conn.id, utcnow())
            assert not await stored.end_list_check(s, conn.id, utcnow())
            await s.commit()
        # with no check running, the served app checks the next notification itself
        resp = await served.world.client.post(
            "/webhooks/google", headers={**headers, "X-Goog-Message-Number": "3"}
        )
        assert resp.status_code == 200
        await served.services.drain()
        assert _requests(served, "/calendarList") == listed + 1
    finally:
        await second.dispose()
