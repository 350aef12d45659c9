"""A started app moves start-up's objects out of the collector's view (runtime.settle_heap, in web/app's lifespan), so
a full collection under load walks only what was made since, not every module, route and
schema of the process (a 0.1-0.2 s stop of the event loop on a 2-core machine: issue 16)."""

from __future__ import annotations

import gc

import httpx

from calsync.store import crypto
from calsync.store.db import Database
from tests.conftest import Emulator

from .conftest import build_app, settings_for


class IdleJobs:
    """A job runner that runs nothing (the lifespan needs one)."""

    def healthy(self) -> bool:
        return True


async def test_start_up_freezes_the_heap_and_shutdown_thaws_it(
    emulator: Emulator, db: Database, keyring: crypto.Keyring
) -> None:
    gc.unfreeze()
    app = build_app(settings_for(emulator), db, keyring)
    app.state.jobs = IdleJobs()
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, the app, its routes and schemas
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/healthz")).status_code == 200
        # requests' objects stay collectable (frozen ones freed meanwhile leave the count)
        assert gc.get_freeze_count() <= frozen
    assert gc.get_freeze_count() == 0
