"""The calsync.* codes: one table (sync/codes.py) with a message and a remedy each, and the
engine telling the user's off switch apart from a calendar disabled because of its stage."""

from __future__ import annotations

import pytest

from calsync.store import bindings
from calsync.sync.errors import Outcome

from .conftest import Harness, at


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        (bindings.DISABLED, "calsync.binding_disabled_stage"),
        (bindings.PAUSED, "calsync.binding_paused"),
    ],
)
async def test_a_stopped_stage_has_its_own_code(h: Harness, stage: str, code: str) -> None:
    """A calendar Google took away (disabled stage) is not "sync is switched off"
    (calsync.binding_disabled): the user's remedy differs."""
    await h.ginsert("Dentist", at(2, 9))
    assert (await h.sync()).outcome is Outcome.OK
    async with h.db.session() as s:
        await bindings.set_stage(s, h.binding_id, stage, "The calendar was deleted.")
        await s.commit()
    result = await h.sync()
    assert result.outcome is Outcome.SKIPPED
    assert result.error is not None and result.error.code == code
