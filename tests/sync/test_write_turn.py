"""A run for Google's news or a user's "Sync now" is handed SQLite's write turn before the CRM
API's writes (store.db.writes_first, store/sqlite_driver.WriteGate): the whole run, and the
tasks it starts. A CRM change's push waits in line with the API's writes it follows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from calsync.store import sqlite_driver
from calsync.sync.context import Hooks

from .conftest import Harness, at


@pytest.mark.parametrize(
    ("trigger", "ahead"),
    [("webhook", True), ("manual", True), ("change", False), ("poll", False)],
)
async def test_which_runs_write_ahead_of_the_crm_api(h: Harness, trigger: str, ahead: bool) -> None:
    await h.ginsert("Dentist", at(2, 9))
    seen: dict[str, bool] = {}

    async def during(_ctx: Any) -> None:
        seen["run"] = sqlite_driver.AHEAD.get()

        async def started() -> bool:
            return sqlite_driver.AHEAD.get()

        seen["task"] = await asyncio.create_task(started())

    result = await h.sync(trigger=trigger, hooks=Hooks(after_pull=during))
    assert result.ok, result
    assert seen == {"run": ahead, "task": ahead}
    assert sqlite_driver.AHEAD.get() is False  # only for the run
