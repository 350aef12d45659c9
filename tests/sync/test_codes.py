"""The calsync.* codes: one table (sync/codes.py) with a message and a remedy each, and the
engine telling the user's off switch apart from a calendar disabled because of its stage."""

from __future__ import annotations

import pytest

from calsync.google import errors
from calsync.store import bindings
from calsync.store.statuses import BindingStage, Code
from calsync.sync import codes
from calsync.sync.errors import CalendarGone, Outcome
from calsync.sync.tokens import NotConnected

from .conftest import Harness, at


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        (BindingStage.DISABLED, "calsync.binding_disabled_stage"),
        (BindingStage.PAUSED, "calsync.binding_paused"),
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


def test_every_code_has_its_texts_in_one_table() -> None:
    """One list of codes (store/statuses.py `Code`, below every layer that writes one), one
    table of texts (sync/codes.py); the GoogleError subclasses calsync raises carry members."""
    assert set(codes.TEXTS) == set(Code)
    assert all(texts.message for texts in codes.TEXTS.values())
    assert NotConnected.code is Code.NOT_CONNECTED
    assert CalendarGone.code is Code.CALENDAR_GONE


def test_remedy_for_calsync_and_google_codes() -> None:
    assert codes.remedy_for(None) is None
    assert codes.remedy_for("calsync.binding_disabled") == (
        "Switch sync on in Settings → Google Calendar."
    )
    assert codes.remedy_for("calsync.binding_disabled_stage") == (
        "Choose another calendar in Settings → Google Calendar."
    )
    assert codes.remedy_for("calsync.binding_paused") == codes.GUARD_REMEDY
    assert codes.remedy_for("calsync.run_abandoned") is None  # another run finished it
    assert codes.remedy_for(errors.GrantRevoked.code) == errors.GrantRevoked.remedy
    assert codes.remedy_for(NotConnected.code) == NotConnected.remedy
    assert codes.remedy_for("no.such_code") is None
