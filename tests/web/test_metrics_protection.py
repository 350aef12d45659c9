"""/metrics is not open to everyone and does not query the database on every scrape (issue 13,
item 7): a bearer token (CALSYNC_METRICS_TOKEN), or a port of its own (CALSYNC_METRICS_PORT),
and the database-backed series cached for CALSYNC_METRICS_CACHE_SECONDS."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from calsync.jobs import metrics as metrics_module
from calsync.store import crypto
from calsync.store.db import Database
from tests.conftest import Emulator
from tests.web.conftest import build_app, settings_for

TOKEN = "scrape-me-4f1c2d"


class IdleJobs:
    """A job runner that runs nothing (the lifespan needs one)."""

    def healthy(self) -> bool:
        return True

    def queue_depth(self) -> int:
        return 0


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_token_is_needed_when_configured(
    emulator: Emulator, db: Database, keyring: crypto.Keyring
) -> None:
    app = build_app(settings_for(emulator, metrics_token=SecretStr(TOKEN)), db, keyring)
    async with client_of(app) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = await c.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert refused.json()["error"]["code"] == "unauthorized"
            assert "CALSYNC_METRICS_TOKEN" in refused.json()["error"]["remedy"]
        ok = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "calsync_bindings" in ok.text


async def test_open_without_a_token(
    emulator: Emulator, db: Database, keyring: crypto.Keyring
) -> None:
    async with client_of(build_app(settings_for(emulator), db, keyring)) as c:
        assert (await c.get("/metrics")).status_code == 200


async def test_database_series_are_cached(
    emulator: Emulator,
    db: Database,
    keyring: crypto.Keyring,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = build_app(settings_for(emulator, metrics_cache_seconds=15), db, keyring)
    now = [1000.0]
    app.state.metrics.clock = lambda: now[0]
    reads: list[int] = []
    original = metrics_module.reports.bindings_by_state

    async def counted(*args: Any, **kwargs: Any) -> dict[str, int]:
        reads.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(metrics_module.reports, "bindings_by_state", counted)
    async with client_of(app) as c:
        for _ in range(5):
            assert (await c.get("/metrics")).status_code == 200
        assert len(reads) == 1  # five scrapes, one round of queries
        now[0] += 14.9
        await c.get("/metrics")
        assert len(reads) == 1
        now[0] += 0.2
        resp = await c.get("/metrics")
        assert len(reads) == 2 and "calsync_bindings" in resp.text


async def test_a_port_of_its_own(emulator: Emulator, db: Database, keyring: crypto.Keyring) -> None:
    app = build_app(settings_for(emulator, metrics_port=0), db, keyring)
    app.state.jobs = IdleJobs()
    async with app.router.lifespan_context(app), client_of(app) as public:
        # the public port has no /metrics at all
        assert (await public.get("/metrics")).status_code == 404
        url = app.state.metrics_endpoint.url
        async with httpx.AsyncClient(base_url=url) as private:
            resp = await private.get("/metrics")
            assert resp.status_code == 200 and "calsync_bindings" in resp.text
    assert app.state.metrics_endpoint.server.should_exit
