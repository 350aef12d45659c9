"""Google's answers to the push's writes stored in the run's end (sync.push `_store_written`):
committed with the run's outcome, before anything else the push writes, and when the push
stops on an error — on SQLite without waiting on the write turn the end holds."""

from __future__ import annotations

import uuid

import pytest

from calsync.google.models import Event
from calsync.sync import mapping
from calsync.sync.errors import Outcome

from .conftest import Harness, at


async def two_edited(h: Harness) -> tuple[uuid.UUID, uuid.UUID, dict[uuid.UUID, str]]:
    """Two CRM entries synced, then both edited: the first planned, the second planned, and
    each one's new subject."""
    a = await h.activity("Visit", at(2, 9))
    b = await h.activity("Call", at(2, 11))
    assert (await h.sync()).ok
    assert (await h.sync()).ok  # the echo of the inserts
    await h.edit(a, subject="Visit, moved")
    await h.edit(b, subject="Call, moved")
    first, second = sorted((a, b))  # the plan's order
    return first, second, {a: "Visit, moved", b: "Call, moved"}


async def refuse_once(h: Harness, activity_id: uuid.UUID, status: int) -> None:
    link = await h.link(activity_id)
    assert link is not None
    h.emu.control(
        "POST",
        "/faults",
        {
            "method": "PATCH",
            "path_regex": f"/events/{link.google_event_id}",
            "status": status,
            "count": 1,
        },
    )


async def test_an_answer_stored_in_the_end_then_one_settled_on_its_own(h: Harness) -> None:
    """The first write's answer waits in the end; the second, refused, is parked in a
    session of its own (the end committed first: on SQLite it holds the write turn, which
    that session's writes would wait for until the busy timeout)."""
    first, second, subjects = await two_edited(h)
    await refuse_once(h, second, 400)
    result = await h.sync()
    assert result.outcome is Outcome.PARTIAL, result
    assert result.counts["pushed"] == 1 and result.counts["issues"] == 1, result
    events = {e.id: e for e in await h.events()}
    link = await h.link(first)
    assert link is not None and link.state == "linked"
    event = events[link.google_event_id]
    assert event.summary == subjects[first] and link.google_etag == event.etag
    parked = await h.link(second)
    assert parked is not None and parked.state == "parked"


async def test_a_412_after_an_answer_stored_in_the_end_is_written_again(h: Harness) -> None:
    """The second write's 412 is re-read and merged in a session of its own and written in
    a second round (the end committed before it); both links take Google's etags."""
    first, second, subjects = await two_edited(h)
    await refuse_once(h, second, 412)
    result = await h.sync()
    assert result.outcome is Outcome.OK, result
    assert result.counts["pushed"] == 2 and result.counts["refetched"] == 1, result
    events = {e.id: e for e in await h.events()}
    for aid in (first, second):
        link = await h.link(aid)
        assert link is not None and link.state == "linked"
        event = events[link.google_event_id]
        assert event.summary == subjects[aid] and link.google_etag == event.etag
    result = await h.sync()  # the echoes: no change either way
    assert result.ok and not result.counts.get("pushed") and not result.counts.get("updated")


async def test_an_answer_stays_stored_when_the_push_stops_on_an_error(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the first answer was stored in the end (here: reading the second's)
    still leaves the first answer committed, as when each had its own transaction; the
    binding is released, and the next run writes the second."""
    first, second, subjects = await two_edited(h)
    link = await h.link(second)
    assert link is not None
    real = mapping.event_fields

    def broken(event: Event, *args: object, **kwargs: object) -> object:
        if event.id == link.google_event_id:
            raise RuntimeError("a bug")
        return real(event, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(mapping, "event_fields", broken)
    with pytest.raises(RuntimeError):
        await h.sync()
    events = {e.id: e for e in await h.events()}
    stored = await h.link(first)
    assert stored is not None
    assert stored.google_etag == events[stored.google_event_id].etag
    monkeypatch.undo()
    result = await h.sync()  # not locked
    assert result.ok, result
    events = {e.id: e for e in await h.events()}
    link = await h.link(second)
    assert link is not None and events[link.google_event_id].summary == subjects[second]
    assert link.google_etag == events[link.google_event_id].etag
