"""Shared meetings (DESIGN.md rules 5 and 8): a meeting between CRM users of one tenant is one
activity with its participants whoever syncs first; answers show on it, a decline deletes
nothing; only the organiser's binding writes to Google, an attendee's copy is read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from calsync.google.oauth import GoogleOAuth
from calsync.settings import Settings
from calsync.store import activities
from calsync.store.db import Database
from calsync.store.models import Activity
from tests.calsync.google.conftest import ControlTokens
from tests.conftest import Emulator

from .conftest import ZONE, Harness, at, retry_policy


@pytest.fixture
async def bob(
    h: Harness, emulator: Emulator, db: Database, sync_settings: Settings, oauth_flow: GoogleOAuth
) -> AsyncIterator[Harness]:
    other = Harness(emulator, db, sync_settings, oauth_flow, email="bob@example.com")
    await other.setup(tenant_id=h.tenant_id)
    yield other
    await other.aclose()


def writes(h: Harness, mark: int) -> list[dict[str, Any]]:
    return [r for r in h.requests_since(mark) if r["method"] in ("PATCH", "POST", "PUT", "DELETE")]


async def tenant_activities(h: Harness) -> list[Activity]:
    async with h.db.session() as s:
        rows = await activities.list_(s, h.tenant_id, limit=1000)
    return list(rows)


async def test_meeting_between_two_crm_users_is_one_activity(h: Harness, bob: Harness) -> None:
    start = at(3, 14)
    event = await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Pipeline review",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
            "attendees": [{"email": "bob@example.com"}],
        },
    )
    assert event.id is not None
    # the attendee syncs first: the activity still belongs to the organiser
    assert (await bob.sync()).ok
    assert (await h.sync()).ok
    (row,) = await tenant_activities(h)
    assert row.owner_id == h.user_id and row.subject == "Pipeline review"
    assert "bob@example.com" in {a.email for a in row.attendees}
    bob_link = await bob.link(row.id)
    assert bob_link is not None and bob_link.read_only == "not_organizer"
    alice_link = await h.link(row.id)
    assert alice_link is not None and alice_link.read_only is None

    # bob declines in Google: shown on the activity, nothing deleted anywhere
    await bob.person.patch_event(
        bob.calendar_id,
        event.id,
        {"attendees": [{"email": "bob@example.com", "responseStatus": "declined"}]},
    )
    assert (await bob.sync()).ok
    assert (await h.sync()).ok
    (row,) = await tenant_activities(h)
    assert row.deleted_at is None
    assert {a.email: a.response_status for a in row.attendees}["bob@example.com"] == "declined"
    assert len(await h.events()) == 1 and len(await bob.events()) == 1

    # the organiser edits in the CRM: only alice's binding writes; bob's sync writes nothing
    await h.edit(row.id, subject="Pipeline review (Q3)")
    assert (await h.sync()).ok
    mark = h.mark()
    result = await bob.sync()
    assert result.ok and result.counts.get("issues", 0) == 0
    assert writes(bob, mark) == []
    assert (await bob.person.get_event(bob.calendar_id, event.id)).summary == (
        "Pipeline review (Q3)"
    )
    assert [r.subject for r in await tenant_activities(h)] == ["Pipeline review (Q3)"]


async def test_copy_of_an_outside_organisers_meeting_is_read_only(
    h: Harness, emulator: Emulator, sync_settings: Settings
) -> None:
    emulator.account("carol@outside.example", "Carol")
    from calsync.google.calendar import CalendarClient

    carol = CalendarClient(
        ControlTokens(emulator, "carol@outside.example"),
        settings=sync_settings,
        retry=retry_policy(),
        rate_limiter=None,
    )
    start = at(2, 10)
    try:
        event = await carol.insert_event(
            "carol@outside.example",
            {
                "summary": "Vendor pitch",
                "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
                "attendees": [{"email": h.email}],
            },
        )
    finally:
        await carol.aclose()
    assert event.id is not None
    assert (await h.sync()).ok
    (row,) = await h.live_activities()
    assert row.owner_id == h.user_id and row.organizer_email == "carol@outside.example"
    link = await h.link(row.id)
    assert link is not None and link.read_only == "not_organizer"
    await h.edit(row.id, subject="My notes")  # not alice's meeting: undone, no 403 loop
    for _ in range(2):
        mark = h.mark()
        result = await h.sync()
        assert result.ok and result.counts.get("issues", 0) == 0, result
        assert writes(h, mark) == []
    assert (await h.get(row.id)).subject == "Vendor pitch"
