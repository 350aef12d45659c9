"""Alembic builds exactly the models' schema from empty, and takes it down again."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from calsync.store.base import Base
from calsync.store.db import Database
from calsync.store.migrate import current_revision, downgrade, head_revision, upgrade

from .conftest import BACKENDS, fresh_url

TABLES = {
    "tenant",
    "user",
    "api_key",
    "activity_type",
    "activity",
    "activity_attendee",
    "change",
    "google_connection",
    "calendar_binding",
    "event_link",
    "sync_run",
    "sync_issue",
    "conflict",
    "oauth_state",
    "retired_channel",
    "web_session",
    "login_failure",
    "portal_session",
    "webhook_endpoint",
    "webhook_message",
    "webhook_delivery",
    "google_request_minute",
}


@pytest.mark.parametrize("backend_name", BACKENDS)
async def test_up_from_empty_matches_models_and_down_again(
    backend_name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    db = Database(fresh_url(backend_name, tmp_path_factory, "migrations"))

    async def tables() -> set[str]:
        async with db.engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names())) - {
                "alembic_version"
            }

    assert await tables() == set()
    await upgrade(db)
    assert await tables() == TABLES
    assert await current_revision(db) == head_revision()
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
            )
        )
    assert diff == [], diff
    await downgrade(db, "base")
    assert await tables() == set()
    assert await current_revision(db) is None
    await upgrade(db)  # and up again
    assert await tables() == TABLES
    await db.dispose()
