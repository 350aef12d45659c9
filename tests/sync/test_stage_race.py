"""A binding disabled or paused while its sync runs (the calendarList check, a user, another
process) stays so: the run's end must not put it back to incremental."""

from __future__ import annotations

from typing import Any

import pytest

from calsync.store import bindings
from calsync.store.statuses import BindingStage
from calsync.sync.context import Hooks
from calsync.sync.errors import Outcome

from .conftest import Harness, at


@pytest.mark.parametrize("stage", [BindingStage.DISABLED, BindingStage.PAUSED])
async def test_stage_set_during_a_run_survives_its_end(h: Harness, stage: str) -> None:
    await h.ginsert("Dentist", at(2, 9))
    assert (await h.sync()).outcome is Outcome.OK  # first sync: initial → incremental
    await h.ginsert("Lunch", at(3, 12))

    async def elsewhere(_ctx: Any) -> None:
        async with h.db.session() as s:
            await bindings.set_stage(s, h.binding_id, stage, "The calendar was deleted.")
            await s.commit()

    result = await h.sync(hooks=Hooks(after_pull=elsewhere))
    assert result.outcome in (Outcome.OK, Outcome.PARTIAL)
    async with h.db.session() as s:
        binding = await bindings.get(s, h.binding_id)
    assert binding is not None
    assert binding.stage == stage and binding.paused_reason == "The calendar was deleted."
    assert binding.sync_token  # what the run applied is still remembered
