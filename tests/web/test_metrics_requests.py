"""Google requests per sync run (issue 7): each run stores the HTTP requests it sent to Google,
and /metrics computes requests per binding per day from those runs, so every web process and
worker sharing the database reports the same figure."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from calsync.store import crypto
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import SyncRun
from tests.calsync.conftest import BACKENDS, fresh_url, keyring  # noqa: F401
from tests.conftest import Emulator
from tests.sync.conftest import Harness, at, oauth_flow, sync_settings  # noqa: F401
from tests.web.conftest import build_app, register_client, settings_for


@pytest.fixture(params=BACKENDS)
async def db(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    keyring: crypto.Keyring,  # noqa: F811
) -> AsyncIterator[Database]:
    """A database of this test's own: the per-binding figure counts every binding and run."""
    url = fresh_url(request.param, tmp_path_factory, f"metrics_{uuid.uuid4().hex[:10]}")
    crypto.install(keyring)
    database = Database(url)
    await upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture
async def h(
    emulator: Emulator,
    db: Database,
    sync_settings: Any,  # noqa: F811
    oauth_flow: Any,  # noqa: F811
) -> AsyncIterator[Harness]:
    harness = Harness(emulator, db, sync_settings, oauth_flow)
    await harness.setup()
    yield harness
    await harness.aclose()


async def stored_requests(db: Database, run_id: uuid.UUID | None) -> int:
    async with db.session() as s:
        run = await s.get(SyncRun, run_id)
        assert run is not None
        return run.google_requests


def gauge(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{series} missing from:\n{text}"
    return float(match.group(1))


async def test_each_run_stores_the_requests_it_sent(h: Harness) -> None:
    # run 1: a Google event comes in, two CRM activities go out in one batch of two parts
    await h.ginsert("From Google", at(1, 9))
    await h.activity("From the CRM", at(1, 11))
    await h.activity("Also from the CRM", at(1, 13))
    mark = h.mark()
    first = await h.sync(trigger="initial")
    log = h.requests_since(mark)
    assert first.ok, first.error
    batches = [e for e in log if e["path"].startswith("/batch/")]
    assert len(batches) == 1
    # the emulator logs each part of a batch too; calsync sent one HTTP request for them
    assert await stored_requests(h.db, first.run_id) == len(log) - 2

    # run 2: the access token expired: 401, a refresh at /token, the call again
    h.emu.control("POST", "/tokens/expire", {"email": h.email})
    await h.ginsert("Later from Google", at(2, 9))
    mark = h.mark()
    second = await h.sync(trigger="poll")
    log = h.requests_since(mark)
    assert second.ok, second.error
    assert [e["status"] for e in log][:3] == [401, 200, 200]
    assert any(e["path"] == "/token" for e in log)
    assert await stored_requests(h.db, second.run_id) == len(log)

    # run 3: nothing changed: one incremental list
    mark = h.mark()
    third = await h.sync(trigger="poll")
    log = h.requests_since(mark)
    assert await stored_requests(h.db, third.run_id) == len(log) >= 1


async def test_runs_of_concurrent_syncs_count_only_their_own_requests(h: Harness) -> None:
    other = Harness(h.emu, h.db, h.settings, h.oauth, email="bob@example.com")
    await other.setup()
    try:
        for i in range(3):
            await h.ginsert(f"Alice {i}", at(1, 8 + i))
        mark = h.mark()
        mine, theirs = await asyncio.gather(h.sync(), other.sync())
        log = h.requests_since(mark)
    finally:
        await other.aclose()
    assert mine.ok and theirs.ok
    by_account = {
        email: sum(1 for e in log if e["account"] == email) for email in (h.email, other.email)
    }
    assert await stored_requests(h.db, mine.run_id) == by_account[h.email]
    assert await stored_requests(h.db, theirs.run_id) == by_account[other.email]


async def test_metrics_read_requests_per_binding_from_the_database(
    h: Harness,
    emulator: Emulator,
    db: Database,
    keyring: crypto.Keyring,  # noqa: F811
) -> None:
    await h.ginsert("Metered", at(1, 9))
    await h.sync(trigger="initial")
    await h.sync(trigger="poll")
    await h.sync(trigger="poll")
    await h.sync(trigger="manual")
    old = await h.sync(trigger="poll")
    async with db.session() as s:  # a run from two days ago is out of the window
        await s.execute(
            update(SyncRun)
            .where(SyncRun.id == old.run_id)
            .values(started_at=utcnow() - timedelta(days=2))
        )
        await s.commit()
        runs = list(await s.scalars(select(SyncRun).where(SyncRun.id != old.run_id)))
    per_trigger: dict[str, int] = {}
    for run in runs:
        per_trigger[run.trigger] = per_trigger.get(run.trigger, 0) + run.google_requests
    assert all(n > 0 for n in per_trigger.values())
    total = sum(per_trigger.values())

    register_client(emulator)
    settings = settings_for(emulator)
    texts = []
    for _ in range(2):  # two web processes sharing one database
        app = build_app(settings, db, keyring)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as c:
            resp = await c.get("/metrics")
        assert resp.status_code == 200
        texts.append(resp.text)
    for text in texts:
        # one binding enabled: the figure is the runs' total
        assert gauge(text, "calsync_google_requests_per_binding_per_day") == total
        for trigger in ("initial", "poll", "manual"):
            assert (
                gauge(text, f'calsync_google_requests_last_day{{trigger="{trigger}"}}')
                == per_trigger[trigger]
            )
        assert gauge(text, 'calsync_google_requests_last_day{trigger="webhook"}') == 0


async def test_metrics_show_the_request_budget_every_process_spends(
    emulator: Emulator,
    db: Database,
    keyring: crypto.Keyring,  # noqa: F811
) -> None:
    """Issue 16: the budget's use in this minute and the last day, from the shared count, and
    its limits; two web processes report the same figures."""
    from calsync.jobs.budget import Budget

    await Budget(db).spend(40)
    await Budget(db).spend(2)  # another process
    register_client(emulator)
    settings = settings_for(emulator, google_budget_per_minute=500, google_budget_per_day=9000)
    for _ in range(2):
        app = build_app(settings, db, keyring)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as c:
            text = (await c.get("/metrics")).text
        assert gauge(text, 'calsync_google_budget_used{window="day"}') == 42
        assert gauge(text, 'calsync_google_budget_used{window="minute"}') in (0, 2, 42)
        assert gauge(text, 'calsync_google_budget_limit{window="minute"}') == 500
        assert gauge(text, 'calsync_google_budget_limit{window="day"}') == 9000
        assert gauge(text, "calsync_push_channels_suspect") == 0
