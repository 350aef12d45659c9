"""CRM changes through the API: debounced into one push, one batch request to Google; Sync now
through the API goes through the runner as MANUAL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from calsync.store import apikeys, crypto
from calsync.store.db import Database
from calsync.web.app import create_app
from tests.sync.conftest import Harness

from .conftest import runs_of, start_running, wait_until


async def _app(h: Harness, db: Database, runner: Any, secret: str) -> Any:
    # the debounce must outlast the gap between two of a test's writes on a loaded CI machine
    # (at 0.4 s one slow request let the push start mid-bulk-edit: two runs, a flaky failure)
    settings = h.settings.model_copy(update={"change_debounce_seconds": 2.0, "mode": "production"})
    app = create_app(settings, database=db, keyring=crypto.Keyring([secret]))
    app.state.jobs = runner
    return app


async def test_bulk_edit_goes_out_as_one_batch(
    h: Harness, db: Database, make_runner: Any, secret: str
) -> None:
    await h.sync()  # first sync done: what follows is incremental
    runner = await make_runner()
    await start_running(runner)
    async with db.session() as s:
        _, key = await apikeys.create(s, h.tenant_id, user_id=h.user_id)
        await s.commit()
    app = await _app(h, db, runner, secret)
    mark = h.mark()
    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as c:
            for i in range(10):
                resp = await c.post(
                    "/api/v1/activities",
                    headers={"Authorization": f"Bearer {key}"},
                    json={
                        "subject": f"Bulk {i}",
                        "start": (start + timedelta(hours=i)).isoformat(),
                        "end": (start + timedelta(hours=i, minutes=30)).isoformat(),
                        "time_zone": "Europe/Oslo",
                    },
                )
                assert resp.status_code == 201, resp.text
                await asyncio.sleep(0.02)

            async def pushed() -> bool:
                runs = await runs_of(db, [h.binding_id])
                return any(r.trigger == "change" and r.finished_at for r in runs)

            await wait_until(pushed, within=30)
            await asyncio.sleep(0.8)  # no second push trails the first
    runs = [r for r in await runs_of(db, [h.binding_id]) if r.trigger == "change"]
    assert len(runs) == 1 and runs[0].pushed == 10, [(r.outcome, r.pushed) for r in runs]
    batches = [r for r in h.requests_since(mark) if "batch" in str(r.get("path", ""))]
    assert len(batches) == 1, batches
    assert len(await h.events()) == 10


async def test_sync_now_without_wait_goes_through_the_runner(
    h: Harness, db: Database, make_runner: Any, secret: str
) -> None:
    runner = await make_runner()
    await start_running(runner)
    async with db.session() as s:
        _, key = await apikeys.create(s, h.tenant_id, user_id=h.user_id)
        await s.commit()
    app = await _app(h, db, runner, secret)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as c:
            resp = await c.post(
                f"/api/v1/users/{h.user_id}/google/sync",
                headers={"Authorization": f"Bearer {key}"},
                json={"wait": False},
            )
            assert resp.status_code == 202, resp.text

            async def done() -> bool:
                runs = await runs_of(db, [h.binding_id])
                return any(r.trigger == "manual" and r.outcome == "ok" for r in runs)

            await wait_until(done, within=30)
