"""Push, import, echo suppression and what they cost in Google requests."""

from __future__ import annotations

from calsync.domain.ids import google_event_id
from calsync.store import runs
from calsync.sync import mapping
from calsync.sync.errors import Outcome

from .conftest import Harness, at


async def test_crm_activity_reaches_google_once_and_does_not_echo(h: Harness) -> None:
    aid = await h.activity("Budget review", at(3, 10), attendees=("bob@example.org",))
    first = await h.sync()
    assert first.outcome is Outcome.OK, first
    events = await h.events()
    assert [e.id for e in events] == [google_event_id(aid)]
    event = events[0]
    assert event.summary == "Budget review"
    assert event.extended_properties is not None and event.extended_properties.private
    assert event.extended_properties.private[mapping.ACTIVITY_KEY] == str(aid)
    assert event.extended_properties.private[mapping.TENANT_KEY] == str(h.tenant_id)
    assert event.start is not None and event.start.time_zone == "Europe/Oslo"

    mark = h.mark()
    second = await h.sync()
    assert second.outcome is Outcome.OK
    log = h.requests_since(mark)
    assert len(log) == 1, log  # one events.list with the sync token, nothing else
    assert second.counts.get("pushed", 0) == 0 and second.counts.get("updated", 0) == 0
    assert h.emails() == []  # sendUpdates=none: the guest got nothing


async def test_google_event_becomes_an_activity_of_the_default_type(h: Harness) -> None:
    event = await h.ginsert("Dentist", at(2, 9))
    result = await h.sync()
    assert result.counts["created"] == 1
    rows = await h.live_activities()
    assert len(rows) == 1
    row = rows[0]
    assert row.subject == "Dentist" and row.type_key == "meeting"
    assert row.time_zone == "Europe/Oslo" and row.start_local == at(2, 9)
    link = await h.link(row.id)
    assert link is not None and link.google_event_id == event.id and link.state == "linked"
    # nothing goes back: the push sees the activity as already in sync
    assert result.counts.get("pushed", 0) == 0
    async with h.db.session() as s:
        run = await runs.get(s, result.run_id)  # type: ignore[arg-type]
    assert run is not None and run.outcome == "ok" and run.created == 1


async def test_edits_travel_both_ways_and_never_echo(h: Harness) -> None:
    aid = await h.activity("Standup", at(1, 9))
    await h.sync()
    await h.edit(aid, subject="Standup (moved)", start=at(1, 10), end=at(1, 11))
    mark = h.mark()
    result = await h.sync()
    assert result.counts["pushed"] == 1
    log = h.requests_since(mark)
    # the emulator logs the batch request and each part: one list, one batch with one PATCH
    assert [r["method"] for r in log if "/batch/" not in r["path"]] == ["GET", "PATCH"]
    assert sum("/batch/" in r["path"] for r in log) == 1
    (event,) = await h.events()
    assert event.summary == "Standup (moved)"
    # now Google edits; the CRM follows and nothing is pushed back
    await h.gpatch(event.id or "", {"location": "Room 4"})
    result = await h.sync()
    assert result.counts["updated"] == 1 and result.counts.get("pushed", 0) == 0
    assert (await h.get(aid)).location == "Room 4"
    mark = h.mark()
    again = await h.sync()
    assert len(h.requests_since(mark)) == 1 and again.counts.get("pushed", 0) == 0
