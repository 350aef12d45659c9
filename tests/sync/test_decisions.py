"""Every cell of the decision table (domain.decide) reached through production code.

Each scenario below syncs real entries against the emulator, records the cells the pull
(`reconcile.classify`) and the push (`plan.classify`) looked up, and asserts that the cell it
walks was reached, gave its action, and that the action's effect is there. `test_every_cell_
is_walked` checks that the scenarios together walk every cell of the table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from calsync.domain import decide
from calsync.domain.activity import ActivityDraft, validate
from calsync.domain.decide import Action, Kind, State, Writes
from calsync.domain.ids import google_event_id
from calsync.store import activities, bindings, links, tenants
from calsync.store.models import Activity
from calsync.store.statuses import BindingRole, LinkState
from calsync.sync import plan, reconcile
from calsync.sync.context import Hooks
from calsync.sync.engine import sync_binding

from .conftest import ZONE, Harness, at
from .test_series import exception, exceptions_of, series, suffix
from .test_shared import bob  # noqa: F401  (the fixture: a second CRM user)

F = TypeVar("F", bound=Callable[..., Any])

#: (kind, crm, google, writes) as the classification gave them, and the action looked up
Cell = tuple[Kind, State | None, State | None, Writes]
Seen = list[tuple[Cell, Action]]

WALKED: dict[str, list[Cell]] = {}


def walks(*cells: Cell | Kind | tuple[State, State]) -> Callable[[F], F]:
    """Register the cells a scenario walks (checked by `test_every_cell_is_walked`)."""

    def register(test: F) -> F:
        WALKED[test.__name__] = [_cell(c) for c in cells]
        return test

    return register


def _cell(spec: Cell | Kind | tuple[State, State]) -> Cell:
    if isinstance(spec, Kind):
        return (spec, None, None, Writes.BOTH)
    if len(spec) == 2:
        crm, google = spec
        return (Kind.ENTRY, crm, google, Writes.BOTH)
    return spec


def one_way(writes: Writes, crm: State, google: State) -> Cell:
    return (Kind.ENTRY, crm, google, writes)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Records every lookup of the table the pull and the push make."""
    record: Seen = []

    def spy(
        kind: Kind,
        crm: State | None = None,
        google: State | None = None,
        writes: Writes = Writes.BOTH,
    ) -> Action:
        action = decide.action_for(kind, crm, google, writes)
        if kind is not Kind.ENTRY:
            crm = google = None
        record.append(((kind, crm, google, writes), action))
        return action

    monkeypatch.setattr(reconcile, "action_for", spy)
    monkeypatch.setattr(plan, "action_for", spy)
    yield record


def reached(seen: Seen, spec: Cell | Kind | tuple[State, State]) -> Action:
    """The action the walked cell gave (asserting it was reached, and gave the table's)."""
    cell = _cell(spec)
    kind = cell[0]
    # a special kind's cell is its kind alone, whichever sides the run may write
    got = [(c, a) for c, a in seen if (c[0] is kind if kind is not Kind.ENTRY else c == cell)]
    assert got, f"{cell} not reached; seen: {sorted({str(c) for c, _ in seen})}"
    actions = {action for _, action in got}
    (action,) = actions
    for (kind, crm, google, writes), action in got:
        assert action is decide.action_for(kind, crm, google, writes)
    return action


async def set_direction(h: Harness, direction: str) -> None:
    async with h.db.session() as s:
        binding = await bindings.get(s, h.binding_id)
        assert binding is not None
        binding.direction = direction
        await s.commit()


async def set_exported(h: Harness, keys: list[str]) -> None:
    async with h.db.session() as s:
        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        tenant.exported_type_keys = keys
        await s.commit()


async def synced(h: Harness, subject: str, day: int = 2) -> tuple[uuid.UUID, str]:
    """A CRM entry synced to Google: its id and its event's id."""
    aid = await h.activity(subject, at(day, 9))
    assert (await h.sync()).ok
    return aid, google_event_id(aid)


# -- an ordinary entry: the two sides ----------------------------------------------------------


@walks(Kind.NEW_IN_CRM, (State.UNCHANGED, State.UNCHANGED))
async def test_new_then_unchanged(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    assert reached(seen, Kind.NEW_IN_CRM) is Action.INSERT_GOOGLE
    assert [e.id for e in await h.events()] == [eid]
    seen.clear()
    assert (await h.sync(full=True)).ok  # lists the event again: our own write, nothing new
    assert reached(seen, (State.UNCHANGED, State.UNCHANGED)) is Action.NOTHING
    assert (await h.get(aid)).subject == "Plan"


@walks((State.CHANGED, State.UNCHANGED))
async def test_crm_edit_is_pushed(h: Harness, seen: Seen) -> None:
    aid, _ = await synced(h, "Plan")
    await h.edit(aid, subject="Plan B")
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.CHANGED, State.UNCHANGED)) is Action.PUSH
    assert [e.summary for e in await h.events()] == ["Plan B"]


@walks((State.UNCHANGED, State.CHANGED))
async def test_google_edit_is_pulled(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await h.gpatch(eid, {"location": "Oslo"})
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.UNCHANGED, State.CHANGED)) is Action.PULL
    assert (await h.get(aid)).location == "Oslo"


@walks((State.CHANGED, State.CHANGED))
async def test_both_edits_merge(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await h.edit(aid, subject="Plan B")
    await h.gpatch(eid, {"location": "Oslo"})
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.CHANGED, State.CHANGED)) is Action.MERGE
    row = await h.get(aid)
    (event,) = await h.events()
    assert row.subject == event.summary == "Plan B"
    assert row.location == event.location == "Oslo"


@walks((State.DELETED, State.UNCHANGED))
async def test_crm_delete_deletes_the_event(h: Harness, seen: Seen) -> None:
    aid, _ = await synced(h, "Plan")
    await h.delete(aid)
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.DELETED, State.UNCHANGED)) is Action.DELETE_GOOGLE
    assert await h.events() == [] and await h.link(aid) is None


@walks((State.UNCHANGED, State.DELETED))
async def test_google_delete_deletes_the_activity(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await h.gdelete(eid)
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.UNCHANGED, State.DELETED)) is Action.DELETE_CRM
    assert (await h.get(aid)).deleted_at is not None


@walks((State.DELETED, State.CHANGED))
async def test_google_edit_brings_back_a_crm_delete(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await h.delete(aid)
    await h.gpatch(eid, {"location": "Oslo"})
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.DELETED, State.CHANGED)) is Action.RESTORE_CRM
    row = await h.get(aid)
    assert row.deleted_at is None and row.location == "Oslo"


@walks((State.CHANGED, State.DELETED))
async def test_crm_edit_brings_back_a_google_delete(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await h.edit(aid, subject="Plan B")
    await h.gdelete(eid)
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.CHANGED, State.DELETED)) is Action.RESTORE_GOOGLE
    (event,) = await h.events()
    assert event.id == eid and event.summary == "Plan B"
    assert (await h.get(aid)).deleted_at is None


@walks((State.DELETED, State.DELETED))
async def test_deleted_on_both_sides_is_forgotten(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await h.delete(aid)
    await h.gdelete(eid)
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, (State.DELETED, State.DELETED)) is Action.FORGET
    assert await h.link(aid) is None


# -- one side may not be written -----------------------------------------------------------------


@walks(one_way(Writes.GOOGLE, State.CHANGED, State.CHANGED))
async def test_crm_to_google_overwrites_a_google_edit(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await set_direction(h, "crm_to_google")
    await h.edit(aid, subject="Plan B")
    await h.gpatch(eid, {"location": "Oslo"})  # the patch's If-Match fails: 412, re-read
    seen.clear()
    result = await h.sync()
    assert result.ok and result.counts["refetched"] == 1
    assert reached(seen, one_way(Writes.GOOGLE, State.CHANGED, State.CHANGED)) is Action.PUSH
    (event,) = await h.events()
    assert event.summary == "Plan B" and not event.location
    assert (await h.get(aid)).location is None


class Crash(BaseException):
    """The process dies right after a Google write: nothing after it runs or commits."""


async def crash(*_: Any) -> None:
    raise Crash


@walks(one_way(Writes.GOOGLE, State.UNCHANGED, State.CHANGED))
async def test_crm_to_google_overwrites_an_edit_of_its_unconfirmed_insert(
    h: Harness, seen: Seen
) -> None:
    await set_direction(h, "crm_to_google")
    aid = await h.activity("Plan", at(2, 9))
    with pytest.raises(Crash):
        await h.sync(hooks=Hooks(after_google_write=crash))  # inserted, the link still pending
    await h.gpatch(google_event_id(aid), {"summary": "Plan G"})
    seen.clear()
    result = await h.sync()  # the insert again: 409, the event is re-read
    assert result.ok and result.counts["adopted"] == 1
    assert reached(seen, one_way(Writes.GOOGLE, State.UNCHANGED, State.CHANGED)) is Action.PUSH
    assert [e.summary for e in await h.events()] == ["Plan"]
    assert (await h.get(aid)).subject == "Plan"


@walks(one_way(Writes.GOOGLE, State.DELETED, State.CHANGED))
async def test_crm_to_google_deletes_despite_a_google_edit(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await set_direction(h, "crm_to_google")
    await h.delete(aid)
    await h.gpatch(eid, {"location": "Oslo"})  # the delete's If-Match fails: 412, re-read
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, one_way(Writes.GOOGLE, State.DELETED, State.CHANGED)) is Action.PUSH
    assert await h.events() == []
    assert (await h.get(aid)).deleted_at is not None


@walks(one_way(Writes.CRM, State.CHANGED, State.CHANGED))
async def test_google_to_crm_pulls_instead_of_merging(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await set_direction(h, "google_to_crm")
    await h.edit(aid, subject="Plan B")
    await h.gpatch(eid, {"summary": "Plan G"})
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, one_way(Writes.CRM, State.CHANGED, State.CHANGED)) is Action.PULL
    assert (await h.get(aid)).subject == "Plan G"
    assert [e.summary for e in await h.events()] == ["Plan G"]


@walks(one_way(Writes.CRM, State.CHANGED, State.DELETED))
async def test_google_to_crm_deletes_an_edited_entry_google_deleted(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await set_direction(h, "google_to_crm")
    await h.edit(aid, subject="Plan B")
    await h.gdelete(eid)
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, one_way(Writes.CRM, State.CHANGED, State.DELETED)) is Action.DELETE_CRM
    assert (await h.get(aid)).deleted_at is not None


# -- special kinds --------------------------------------------------------------------------------


@walks(Kind.GONE)
async def test_created_and_deleted_between_syncs_is_gone(h: Harness, seen: Seen) -> None:
    aid = await h.activity("Never mind", at(2, 9))
    await h.delete(aid)
    assert (await h.sync()).ok
    assert reached(seen, Kind.GONE) is Action.FORGET
    assert await h.events() == [] and await h.link(aid) is None


@walks(Kind.NEW_IN_GOOGLE)
async def test_a_copy_made_in_google_is_new(h: Harness, seen: Seen) -> None:
    _, eid = await synced(h, "Plan")
    (event,) = await h.events()
    start = at(5, 9)
    copy = await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Plan (copy)",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": start.replace(hour=10).isoformat(), "timeZone": ZONE},
            "extendedProperties": event.extended_properties.to_wire()  # type: ignore[union-attr]
            if event.extended_properties
            else None,
        },
    )
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, Kind.NEW_IN_GOOGLE) is Action.IMPORT
    subjects = sorted(a.subject for a in await h.live_activities())
    assert subjects == ["Plan", "Plan (copy)"]
    assert copy.id != eid


@walks(Kind.WAITING)
async def test_an_ambiguous_entry_waits(h: Harness, seen: Seen) -> None:
    first = await h.activity("Lunch", at(4, 12))
    await h.activity("Lunch", at(4, 12))
    await h.ginsert("Lunch", at(4, 12))
    await h.sync()
    assert reached(seen, Kind.WAITING) is Action.NOTHING
    link = await h.link(first)
    assert link is not None and link.state == LinkState.PARKED
    assert len(await h.events()) == 1


@walks(Kind.OUT_OF_SCOPE)
async def test_an_unexported_type_stays_in_the_crm(h: Harness, seen: Seen) -> None:
    await h.activity("Build", at(2, 9), type_key="project_task")
    assert (await h.sync()).ok
    assert reached(seen, Kind.OUT_OF_SCOPE) is Action.NOTHING
    assert await h.events() == []


@walks(Kind.NOT_EXPORTED)
async def test_a_type_no_longer_exported_is_withdrawn(h: Harness, seen: Seen) -> None:
    aid, _ = await synced(h, "Plan")
    await set_exported(h, ["call"])
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, Kind.NOT_EXPORTED) is Action.WITHDRAW
    assert await h.events() == []
    assert (await h.get(aid)).deleted_at is None


@walks(Kind.REUSED_ID)
async def test_exported_again_comes_back_under_its_own_id(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    await set_exported(h, ["call"])
    assert (await h.sync()).ok  # withdrawn: Google holds our id as deleted
    await set_exported(h, ["meeting"])
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, Kind.REUSED_ID) is Action.RESTORE_GOOGLE
    (event,) = await h.events()
    assert event.id == eid and event.summary == "Plan"
    assert (await h.get(aid)).deleted_at is None


@walks(Kind.FIRST_LINK)
async def test_a_lost_link_is_linked_again(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    async with h.db.session() as s:
        link = await links.by_activity(s, h.binding_id, aid)
        assert link is not None
        await links.remove(s, link)
        await s.commit()
    seen.clear()
    assert (await h.sync(full=True)).ok
    assert reached(seen, Kind.FIRST_LINK) is Action.LINK
    link = await h.link(aid)
    assert link is not None and link.google_event_id == eid and link.snapshot is not None
    assert len(await h.events()) == 1 and len(await h.live_activities()) == 1


@walks(Kind.ATTENDEE_COPY, Kind.ATTENDEE_COPY_GONE)
async def test_an_attendees_copy_brings_answers_only(
    h: Harness,
    bob: Harness,  # noqa: F811
    seen: Seen,
) -> None:
    start = at(3, 14)
    event = await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Pipeline review",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": start.replace(hour=15).isoformat(), "timeZone": ZONE},
            "attendees": [{"email": "bob@example.com"}],
        },
    )
    assert event.id is not None
    assert (await h.sync()).ok
    assert (await bob.sync()).ok
    await bob.person.patch_event(
        bob.calendar_id,
        event.id,
        {"attendees": [{"email": "bob@example.com", "responseStatus": "declined"}]},
    )
    seen.clear()
    assert (await bob.sync()).ok
    assert reached(seen, Kind.ATTENDEE_COPY) is Action.ANSWERS
    (row,) = await h.live_activities()
    assert {a.email: a.response_status for a in row.attendees}["bob@example.com"] == "declined"
    await h.gdelete(event.id)  # the organiser cancels the meeting
    seen.clear()
    assert (await bob.sync()).ok
    assert reached(seen, Kind.ATTENDEE_COPY_GONE) is Action.FORGET
    assert await bob.link(row.id) is None
    assert (await h.get(row.id)).deleted_at is None  # the organiser's binding decides


@walks(Kind.READ_ONLY)
async def test_a_crm_edit_of_a_read_only_entry_is_undone(h: Harness, seen: Seen) -> None:
    await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Focus",
            "eventType": "focusTime",
            "start": {"dateTime": at(4, 8).isoformat(), "timeZone": ZONE},
            "end": {"dateTime": at(4, 10).isoformat(), "timeZone": ZONE},
        },
    )
    assert (await h.sync()).ok
    (row,) = await h.live_activities()
    await h.edit(row.id, subject="Not focus")
    seen.clear()
    result = await h.sync()
    assert result.ok
    assert reached(seen, Kind.READ_ONLY) is Action.FOLLOW_GOOGLE
    assert result.counts["reverted"] == 1
    assert (await h.get(row.id)).subject == "Focus"


@walks(Kind.BAD_RULE)
async def test_a_rule_google_refuses_is_reported(h: Harness, seen: Seen) -> None:
    start = at(2, 9)
    sid = await series(h, "Daily", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY")
    async with h.db.session() as s:
        row = await s.get(Activity, sid)
        assert row is not None
        row.recurrence = ["RRULE:FREQ=DAILY;INTERVAL=0"]
        await s.commit()
    result = await h.sync()
    assert reached(seen, Kind.BAD_RULE) is Action.REPORT
    assert result.counts["issues"] == 1 and await h.events() == []


@walks(Kind.UNPLACED_EXCEPTION)
async def test_a_crm_exception_is_patched_into_its_instance(h: Harness, seen: Seen) -> None:
    start = at(2, 15)
    sid = await series(h, "Gym", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    last = start + timedelta(days=14)
    cancelled = await exception(h, sid, last, status="cancelled")
    assert (await h.sync()).ok
    assert reached(seen, Kind.UNPLACED_EXCEPTION) is Action.PLACE
    link = await h.link(cancelled)
    assert link is not None and link.google_event_id == f"{google_event_id(sid)}_{suffix(last)}"
    assert link.state == LinkState.LINKED


async def _google_exception(h: Harness) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A weekly series whose second occurrence was renamed in Google: series, exception,
    instance id."""
    start = at(2, 13)
    sid = await series(
        h, "Coaching", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3"
    )
    assert (await h.sync()).ok
    instance = f"{google_event_id(sid)}_{suffix(start + timedelta(days=7))}"
    await h.gpatch(instance, {"summary": "Coaching (customer)"})
    assert (await h.sync()).ok
    (exc,) = await exceptions_of(h, sid)
    return sid, exc.id, instance


@walks(Kind.CANCELLED_EXCEPTION)
async def test_an_exception_deleted_on_both_sides_is_left_to_the_push(
    h: Harness, seen: Seen
) -> None:
    _, exc, instance = await _google_exception(h)
    await h.delete(exc)
    await h.gdelete(instance)
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, Kind.CANCELLED_EXCEPTION) is Action.PUSH
    assert (await h.person.get_event(h.calendar_id, instance)).status == "cancelled"
    assert (await h.get(exc)).deleted_at is not None


@walks(Kind.SERIES_DELETED)
async def test_an_occurrence_edit_does_not_bring_back_a_deleted_series(
    h: Harness, seen: Seen
) -> None:
    sid, exc, instance = await _google_exception(h)
    await h.delete(sid)
    await h.gpatch(instance, {"summary": "Coaching (customer, moved)"})
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, Kind.SERIES_DELETED) is Action.FORGET
    assert await h.live_activities() == [] and await h.link(exc) is None


@walks(Kind.ORPHANED_EXCEPTION)
async def test_an_exception_dropped_by_a_move_and_back_is_restored(h: Harness, seen: Seen) -> None:
    start = at(3, 10)
    sid = await series(h, "Weekly", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    second = start + timedelta(days=7)
    await exception(h, sid, second, start=second + timedelta(hours=2))
    assert (await h.sync()).ok
    moved = start + timedelta(days=1)
    await h.edit(sid, start=moved, end=moved + timedelta(hours=1))
    await h.edit(sid, start=start, end=start + timedelta(hours=1))
    seen.clear()
    result = await h.sync()
    assert result.ok
    assert reached(seen, Kind.ORPHANED_EXCEPTION) is Action.RESTORE_CRM
    assert result.counts["restored"] == 1
    (restored,) = await exceptions_of(h, sid)
    assert restored.start_local == second + timedelta(hours=2)


@walks(Kind.MOVED_EXCEPTION)
async def test_the_old_instance_of_a_moved_exception_is_no_news(h: Harness, seen: Seen) -> None:
    start = at(3, 10)
    sid = await series(h, "Weekly", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    second = start + timedelta(days=7)
    renamed = await exception(h, sid, second)
    await h.edit(renamed, subject="Weekly (customer)")
    assert (await h.sync()).ok
    old_instance = f"{google_event_id(sid)}_{suffix(second)}"
    moved = start + timedelta(days=1)
    await h.edit(sid, start=moved, end=moved + timedelta(hours=1))
    await h.gpatch(old_instance, {"location": "Room 1"})  # Google still lists the old one
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, Kind.MOVED_EXCEPTION) is Action.NOTHING
    link = await h.link(renamed)
    assert link is not None and link.google_event_id != old_instance


async def retype(h: Harness, activity_id: uuid.UUID, type_key: str) -> None:
    """The activity's type changes in the CRM (a change the push's feed names)."""
    async with h.db.session() as s:
        row = await activities.get(s, h.tenant_id, activity_id)
        assert row is not None
        draft = ActivityDraft(
            start=row.start_local,
            end=row.end_local,
            subject=row.subject,
            description=row.description,
            location=row.location,
            time_zone=row.time_zone,
        )
        await activities.update(s, row, validate(draft), type_key=type_key)
        await s.commit()


async def second_calendar(h: Harness, *, role: str) -> uuid.UUID:
    """Another calendar of the account, bound with `role` (the primary keeps its binding)."""
    created = h.emu.control("POST", f"/accounts/{h.email}/calendars", {"summary": "Work"})
    calendar_id = created.json()["id"]
    async with h.db.session() as s:
        binding = await bindings.create(
            s, h.tenant_id, h.connection_id, calendar_id, role=role, time_zone=ZONE
        )
        await s.commit()
    return binding.id


async def set_role(h: Harness, binding_id: uuid.UUID, role: str) -> None:
    async with h.db.session() as s:
        binding = await bindings.get(s, binding_id)
        assert binding is not None
        binding.role = role
        await s.commit()


@walks(Kind.EXPORTED_AGAIN)
async def test_a_detached_entry_exported_again_is_attached(h: Harness, seen: Seen) -> None:
    event = await h.ginsert("From Google", at(2, 9))
    assert (await h.sync()).ok
    (row,) = await h.live_activities()
    await retype(h, row.id, "project_task")
    assert (await h.sync()).ok
    link = await h.link(row.id)
    assert link is not None and link.state == LinkState.DETACHED  # not ours to delete in Google
    await retype(h, row.id, "meeting")
    await h.edit(row.id, subject="From Google, edited")
    seen.clear()
    assert (await h.sync()).ok
    assert reached(seen, Kind.EXPORTED_AGAIN) is Action.ATTACH
    link = await h.link(row.id)
    assert link is not None and link.state == LinkState.LINKED
    assert (await h.person.get_event(h.calendar_id, event.id or "")).summary == (
        "From Google, edited"
    )


@walks(Kind.MOVES_HERE)
async def test_an_entry_follows_a_new_export_calendar(h: Harness, seen: Seen) -> None:
    aid, eid = await synced(h, "Plan")
    work = await second_calendar(h, role=BindingRole.BOTH)
    await set_role(h, h.binding_id, "import")  # the primary no longer receives CRM entries
    seen.clear()
    result = await sync_binding(h.db, work, h.google)
    assert result.ok, result
    assert reached(seen, Kind.MOVES_HERE) is Action.MOVE
    assert result.counts["moved"] == 1 and await h.events() == []
    async with h.db.session() as s:
        link = await links.by_activity(s, work, aid)
    assert link is not None and link.google_event_id == eid


@walks(Kind.WITHDRAWN_ELSEWHERE)
async def test_a_crm_delete_leaves_an_unticked_calendar(h: Harness, seen: Seen) -> None:
    aid, _ = await synced(h, "Plan")
    work = await second_calendar(h, role=BindingRole.BOTH)
    await set_role(h, h.binding_id, BindingRole.UNSELECTED)  # unticked: its runs are skipped
    await h.delete(aid)
    seen.clear()
    result = await sync_binding(h.db, work, h.google)
    assert result.ok, result
    assert reached(seen, Kind.WITHDRAWN_ELSEWHERE) is Action.WITHDRAW
    assert await h.events() == [] and await h.link(aid) is None


#: one-way changes no scenario reaches, and why (domain.decide.ONE_WAY says the same)
NOT_WALKED = {
    (Writes.GOOGLE, Action.DELETE_CRM): "a crm_to_google run reads Google only to settle its "
    "own write; an unchanged CRM side meets a deleted event there only as REUSED_ID",
}


def test_every_cell_is_walked() -> None:
    """The scenarios above walk every cell: each side pair, each special kind, and each way a
    one-way calendar changes an action."""
    walked = {cell for cells in WALKED.values() for cell in cells}
    cells: set[Cell] = {(Kind.ENTRY, crm, google, Writes.BOTH) for crm, google in decide.SIDES}
    cells |= {(kind, None, None, Writes.BOTH) for kind in decide.KINDS}
    missing = sorted(str(cell) for cell in cells - walked)
    for writes, changes in decide.ONE_WAY.items():
        for before in changes:
            one_way_walked = any(
                kind is Kind.ENTRY
                and cell_writes is writes
                and crm is not None
                and google is not None
                and decide.SIDES[(crm, google)] is before
                for kind, crm, google, cell_writes in walked
            )
            if not one_way_walked and (writes, before) not in NOT_WALKED:
                missing.append(f"{writes}: {before}")
    assert not missing, missing
