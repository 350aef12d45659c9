"""Outbound webhooks: calsync's app in process (SQLite, PostgreSQL when configured), a stub
receiver on loopback, and the deliverer run on demand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from calsync.jobs.webhooks import Deliverer
from calsync.settings import Settings
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from tests.calsync.conftest import (  # noqa: F401
    BACKENDS,
    World,
    client,
    db,
    fresh_url,
    keyring,
    make_world,
    other_world,
    world,
)

from .receiver import Receiver, running_receiver


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of the test's own: the deliverer sends whatever is due in the whole
    database, so counts and clocks moved by one test must not meet another's deliveries."""
    url = fresh_url(request.param, tmp_path_factory, "webhooks")
    database = Database(url, pooled=False)
    await upgrade(database)
    await database.dispose()
    return url


@pytest.fixture
def app_settings(tmp_path: Any) -> Settings:
    # the stub receiver is on loopback: allowed here, as in the sandbox
    return Settings(data_dir=tmp_path, mode="sandbox", webhook_allow_private=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


async def add_endpoint(
    world: World,  # noqa: F811
    url: str,
    events: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    resp = await world.call("POST", "/api/v1/webhook-endpoints", json=body)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def deliver(db: Database, at: datetime | None = None) -> int:  # noqa: F811
    """One pass of the deliverer (as a runner's tick does), optionally at a moved clock."""
    clock = utcnow if at is None else (lambda: at)
    return await Deliverer(db, allow_private=True, clock=clock).run()
