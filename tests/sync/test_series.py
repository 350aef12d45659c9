"""Recurring series, their exceptions and all-day entries (DESIGN.md rules 5 and 7), against the
emulator: wall clock kept across DST, one occurrence moved or cancelled on either side touches
only that occurrence, "this and following" splits, far-off time zones keep their dates."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from calsync.domain.activity import ActivityDraft, validate
from calsync.domain.ids import google_event_id
from calsync.google.models import Event
from calsync.store import activities, runs
from calsync.store.models import Activity, EventLink
from calsync.sync.context import Hooks

from .conftest import ZONE, Harness, at

OSLO = ZoneInfo(ZONE)


async def series(
    h: Harness,
    subject: str,
    start: datetime | date,
    end: datetime | date,
    rule: str,
    *,
    zone: str = ZONE,
) -> uuid.UUID:
    values = validate(
        ActivityDraft(start=start, end=end, subject=subject, time_zone=zone, recurrence=[rule])
    )
    async with h.db.session() as s:
        row = await activities.create(
            s, h.tenant_id, type_key="meeting", owner_id=h.user_id, values=values
        )
        await s.commit()
    return row.id


async def exception(
    h: Harness,
    master_id: uuid.UUID,
    original: datetime,
    *,
    start: datetime | None = None,
    status: str = "confirmed",
) -> uuid.UUID:
    async with h.db.session() as s:
        master = await activities.get(s, h.tenant_id, master_id)
        assert master is not None
        duration = master.end_local - master.start_local
        begin = start or original
        values = validate(
            ActivityDraft(
                start=begin,
                end=begin + duration,
                subject=master.subject,
                time_zone=master.time_zone,
                status=status,
                original_start=original,
            ),
            activities.series(master),
        )
        row = await activities.create(
            s,
            h.tenant_id,
            type_key=master.type_key,
            owner_id=h.user_id,
            values=values,
            recurring_parent_id=master.id,
        )
        await s.commit()
    return row.id


async def instances(h: Harness, *, deleted: bool = False) -> list[Event]:
    out: list[Event] = []
    pages = h.person.list_events(
        h.calendar_id,
        single_events=True,
        show_deleted=deleted,
        time_min=datetime.now(UTC) - timedelta(days=400),
    )
    async for page in pages:
        out.extend(page.items)
    return out


def local(event: Event) -> datetime:
    assert event.start is not None and event.start.date_time is not None
    return event.start.date_time.astimezone(OSLO).replace(tzinfo=None)


def suffix(original_local: datetime) -> str:
    return original_local.replace(tzinfo=OSLO).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


async def exceptions_of(h: Harness, master_id: uuid.UUID) -> list[Activity]:
    async with h.db.session() as s:
        master = await activities.get(s, h.tenant_id, master_id)
        assert master is not None
        return list(await activities.exceptions_of(s, master))


def next_march() -> date:
    today = date.today()
    return date(today.year + (1 if today.month >= 3 else 0), 3, 1)


async def test_crm_series_in_oslo_keeps_its_local_time_after_the_dst_change(h: Harness) -> None:
    first = next_march() + timedelta(days=(7 - next_march().weekday()) % 7)  # first Monday
    start = datetime.combine(first, datetime.min.time()).replace(hour=9)
    sid = await series(h, "Standup", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=8")
    assert (await h.sync()).ok
    events = await instances(h)
    assert len(events) == 8
    assert {local(e).time() for e in events} == {start.time()}  # 09:00 in Oslo, all of them
    offsets = {e.start.date_time.utcoffset() for e in events if e.start and e.start.date_time}
    assert len({local(e).replace(tzinfo=OSLO).utcoffset() for e in events}) == 2  # CET and CEST
    assert offsets  # Google wrote the zone; the wall clock did not move
    link = await h.link(sid)
    assert link is not None and link.google_event_id == google_event_id(sid)


async def test_occurrence_moved_in_google_moves_only_that_crm_occurrence(h: Harness) -> None:
    start = at(3, 10)
    sid = await series(h, "Weekly", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=5")
    assert (await h.sync()).ok
    second = start + timedelta(days=7)
    moved = second + timedelta(hours=3)
    await h.gpatch(
        f"{google_event_id(sid)}_{suffix(second)}",
        {
            "start": {"dateTime": moved.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (moved + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        },
    )
    result = await h.sync()
    assert result.ok, result
    excs = await exceptions_of(h, sid)
    assert len(excs) == 1
    assert excs[0].original_start_local == second and excs[0].start_local == moved
    master = await h.get(sid)
    assert master.start_local == start and master.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=5"]
    # nothing echoes back, and a second sync changes nothing
    again = await h.sync()
    assert again.ok and again.counts.get("pushed", 0) == 0 and again.counts.get("updated", 0) == 0
    starts = sorted(local(e) for e in await instances(h))
    assert starts == sorted([start + timedelta(days=7 * i) for i in (0, 2, 3, 4)] + [moved])


async def test_occurrence_cancelled_in_crm_cancels_only_that_google_instance(h: Harness) -> None:
    start = at(2, 8)
    sid = await series(h, "Daily", start, start + timedelta(minutes=30), "RRULE:FREQ=DAILY;COUNT=4")
    third = start + timedelta(days=2)
    await exception(h, sid, third, status="cancelled")  # before the first sync: follows its series
    fourth = start + timedelta(days=3)
    result = await h.sync()
    assert result.ok, result
    assert sorted(local(e) for e in await instances(h)) == [
        start,
        start + timedelta(days=1),
        fourth,
    ]
    # cancel one more after the series is in Google, and move the first in the CRM
    await exception(h, sid, fourth, status="cancelled")
    await exception(h, sid, start, start=start + timedelta(hours=1))
    result = await h.sync()
    assert result.ok, result
    assert sorted(local(e) for e in await instances(h)) == [
        start + timedelta(hours=1),
        start + timedelta(days=1),
    ]
    assert (await h.sync()).counts.get("pushed", 0) == 0


async def test_google_series_with_moved_and_cancelled_occurrences_is_imported(h: Harness) -> None:
    start = at(1, 12)
    master = await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Lunch club",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
        },
    )
    assert master.id is not None
    second, third = start + timedelta(days=7), start + timedelta(days=14)
    await h.gdelete(f"{master.id}_{suffix(second)}")
    await h.gpatch(f"{master.id}_{suffix(third)}", {"summary": "Lunch club (moved)"})
    result = await h.sync()
    assert result.ok, result
    rows = await h.live_activities()
    masters = [r for r in rows if r.recurrence]
    assert len(masters) == 1 and masters[0].subject == "Lunch club"
    excs = {e.original_start_local: e for e in await exceptions_of(h, masters[0].id)}
    assert set(excs) == {second, third}
    assert excs[second].status == "cancelled"
    assert excs[third].subject == "Lunch club (moved)" and excs[third].status == "confirmed"
    again = await h.sync()
    assert again.ok and again.counts.get("pushed", 0) == 0


async def test_this_and_following_split_in_google_becomes_two_crm_series(h: Harness) -> None:
    start = at(1, 9)
    sid = await series(h, "Review", start, start + timedelta(hours=1), "RRULE:FREQ=DAILY;COUNT=10")
    assert (await h.sync()).ok
    gid = google_event_id(sid)
    split = start + timedelta(days=5)
    until = (split - timedelta(seconds=1)).replace(tzinfo=OSLO).astimezone(UTC)
    # what Google Calendar does for "this and following events": UNTIL on the old series...
    await h.gpatch(gid, {"recurrence": [f"RRULE:FREQ=DAILY;UNTIL={until:%Y%m%dT%H%M%SZ}"]})
    # ...and a new series from the split on (here at another time)
    later = split + timedelta(hours=2)
    await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Review",
            "start": {"dateTime": later.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (later + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
            "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"],
        },
    )
    result = await h.sync()
    assert result.ok, result
    rows = [r for r in await h.live_activities() if r.recurrence]
    assert len(rows) == 2
    old = await h.get(sid)
    assert old.recurrence is not None and any("UNTIL=" in line for line in old.recurrence)
    async with h.db.session() as s:
        listed = await activities.list_expanded(
            s,
            h.tenant_id,
            start=start.replace(tzinfo=OSLO) - timedelta(hours=1),
            end=start.replace(tzinfo=OSLO) + timedelta(days=12),
            owner_id=h.user_id,
        )
    starts = [i.occurrence.start_local for i in listed if i.occurrence]
    assert starts == [start + timedelta(days=d) for d in range(5)] + [
        later + timedelta(days=d) for d in range(5)
    ]
    assert (await h.sync()).counts.get("pushed", 0) == 0


async def test_all_day_entries_keep_their_dates_at_utc_minus_10_and_plus_14(h: Harness) -> None:
    day = date.today() + timedelta(days=6)
    ids = {}
    for zone in ("Pacific/Honolulu", "Pacific/Kiritimati"):
        values = validate(
            ActivityDraft(start=day, end=day + timedelta(days=1), subject=zone, time_zone=zone)
        )
        async with h.db.session() as s:
            row = await activities.create(
                s, h.tenant_id, type_key="meeting", owner_id=h.user_id, values=values
            )
            await s.commit()
        ids[zone] = row.id
    for n, zone in enumerate(("Pacific/Honolulu", "Pacific/Kiritimati")):
        await h.person.insert_event(
            h.calendar_id,
            {
                "summary": f"google {zone}",
                "start": {"date": (day + timedelta(days=n)).isoformat()},
                "end": {"date": (day + timedelta(days=n + 2)).isoformat()},
            },
        )
    result = await h.sync()
    assert result.ok, result
    by_summary = {e.summary: e for e in await h.events()}
    for zone in ids:
        event = by_summary[zone]
        assert event.start is not None and event.start.date == day
        assert event.end is not None and event.end.date == day + timedelta(days=1)
    rows = {r.subject: r for r in await h.live_activities()}
    for n, zone in enumerate(("Pacific/Honolulu", "Pacific/Kiritimati")):
        row = rows[f"google {zone}"]
        assert row.all_day and row.start_local.date() == day + timedelta(days=n)
        assert row.end_local.date() == day + timedelta(days=n + 2)
    # an all-day edit in Google comes back as the same dates, nothing shifts a day
    await h.gpatch(by_summary["Pacific/Kiritimati"].id or "", {"summary": "renamed"})
    assert (await h.sync()).ok
    row = await h.get(ids["Pacific/Kiritimati"])
    assert row.subject == "renamed" and row.start_local.date() == day
    assert row.time_zone == "Pacific/Kiritimati"


async def test_all_day_series_and_its_exception_round_trip(h: Harness) -> None:
    day = date.today() + timedelta(days=2)
    sid = await series(h, "Holiday", day, day + timedelta(days=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    assert (await h.sync()).ok
    second = day + timedelta(days=7)
    await h.gpatch(f"{google_event_id(sid)}_{second:%Y%m%d}", {"summary": "Holiday (long)"})
    assert (await h.sync()).ok
    excs = await exceptions_of(h, sid)
    assert len(excs) == 1 and excs[0].subject == "Holiday (long)" and excs[0].all_day
    assert excs[0].original_start_local == datetime.combine(second, datetime.min.time())


async def test_window_includes_older_series_with_future_occurrences(h: Harness) -> None:
    old = at(-90, 9)
    crm = await series(h, "Old CRM series", old, old + timedelta(hours=1), "RRULE:FREQ=WEEKLY")
    ended = await series(
        h, "Ended", old, old + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=2"
    )  # over long before the window: stays in the CRM only
    await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Old Google series",
            "start": {"dateTime": old.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (old + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
            "recurrence": ["RRULE:FREQ=DAILY"],
        },
    )
    assert (await h.sync()).ok
    assert await h.link(crm) is not None and await h.link(ended) is None
    subjects = {r.subject for r in await h.live_activities()}
    assert "Old Google series" in subjects


async def test_initial_matching_compares_recurrence(h: Harness) -> None:
    start = at(4, 14)
    same = await series(h, "Sync", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    other = await series(h, "Plan", start, start + timedelta(hours=1), "RRULE:FREQ=DAILY;COUNT=3")
    for summary, rule in (("Sync", "RRULE:FREQ=WEEKLY;COUNT=3"), ("Plan", "RRULE:FREQ=WEEKLY")):
        await h.person.insert_event(
            h.calendar_id,
            {
                "summary": summary,
                "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
                "recurrence": [rule],
            },
        )
    result = await h.sync()
    assert result.ok, result
    assert result.counts["linked"] == 1  # "Sync" matched; "Plan" repeats differently
    link = await h.link(same)
    assert link is not None and link.google_event_id != google_event_id(same)
    assert (await h.link(other)) is not None  # exported as its own series
    assert len([r for r in await h.live_activities() if r.subject == "Plan"]) == 2
    assert len(await h.events()) == 3


async def test_exotic_rule_is_imported_read_only_and_reported(h: Harness) -> None:
    start = at(2, 9)
    event = await h.person.insert_event(
        h.calendar_id,
        {
            "summary": "Every hour",
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(minutes=10)).isoformat(), "timeZone": ZONE},
            "recurrence": ["RRULE:FREQ=HOURLY;COUNT=5"],
        },
    )
    await h.ginsert("Plain", at(2, 15))
    result = await h.sync()
    assert result.counts["created"] == 2, result
    rows = {r.subject: r for r in await h.live_activities()}
    assert rows["Every hour"].recurrence is None and rows["Every hour"].start_local == start
    async with h.db.session() as s:
        issues = await runs.open_issues(s, h.binding_id)
    assert [i.code for i in issues] == ["calsync.recurrence_unsupported"]
    # read-only: a CRM edit is undone, never written to Google (no 4xx loops)
    await h.edit(rows["Every hour"].id, subject="Changed in CRM")
    mark = h.mark()
    assert (await h.sync()).ok
    assert not [r for r in h.requests_since(mark) if r["method"] in ("PATCH", "POST", "PUT")]
    assert (await h.get(rows["Every hour"].id)).subject == "Every hour"
    assert event.id and (await h.person.get_event(h.calendar_id, event.id)).summary == "Every hour"


async def test_series_edit_in_crm_keeps_the_google_exceptions(h: Harness) -> None:
    start = at(2, 11)
    sid = await series(h, "Sales", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    assert (await h.sync()).ok
    second = start + timedelta(days=7)
    await h.gpatch(f"{google_event_id(sid)}_{suffix(second)}", {"summary": "Sales (customer)"})
    assert (await h.sync()).ok
    await h.edit(sid, subject="Sales weekly", location="Room 4")
    result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1, result
    by_start = {local(e): e for e in await instances(h)}
    assert [by_start[start + timedelta(days=7 * i)].summary for i in range(3)] == [
        "Sales weekly",
        "Sales (customer)",
        "Sales weekly",
    ]
    (exc,) = await exceptions_of(h, sid)
    assert exc.subject == "Sales (customer)"
    assert (await h.sync()).counts.get("pushed", 0) == 0


async def crm_view(h: Harness, around: datetime) -> list[tuple[datetime, str]]:
    """What the CRM's calendar shows near `around` (occurrences expanded): (start, subject)."""
    async with h.db.session() as s:
        listed = await activities.list_expanded(
            s,
            h.tenant_id,
            start=around.replace(tzinfo=OSLO) - timedelta(days=2),
            end=around.replace(tzinfo=OSLO) + timedelta(days=40),
            owner_id=h.user_id,
        )
    return sorted(
        (i.occurrence.start_local if i.occurrence else i.activity.start_local, i.activity.subject)
        for i in listed
    )


async def google_view(h: Harness) -> list[tuple[datetime, str]]:
    """What Google Calendar shows (instances expanded, cancelled ones left out)."""
    return sorted((local(e), e.summary or "") for e in await instances(h))


async def test_series_moved_in_google_takes_its_exceptions_along(h: Harness) -> None:
    """Google drops a series' exceptions when its start moves; calsync drops the CRM's too,
    except what the user said besides a time (a title, a cancellation): that goes to the same
    occurrence of the moved series, on both sides."""
    start = at(3, 10)
    sid = await series(h, "Weekly", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=4")
    assert (await h.sync()).ok
    gid = google_event_id(sid)
    week = [start + timedelta(days=7 * i) for i in range(4)]
    await h.gpatch(f"{gid}_{suffix(week[1])}", {"summary": "Weekly (customer)"})
    later = week[2] + timedelta(hours=2)
    await h.gpatch(
        f"{gid}_{suffix(week[2])}",
        {
            "start": {"dateTime": later.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (later + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        },
    )
    await h.gdelete(f"{gid}_{suffix(week[3])}")
    assert (await h.sync()).ok
    assert len(await exceptions_of(h, sid)) == 3
    # the whole series moves to 11:00 in Google
    moved = start + timedelta(hours=1)
    await h.gpatch(
        gid,
        {
            "start": {"dateTime": moved.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (moved + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        },
    )
    result = await h.sync()
    assert result.ok and result.counts.get("issues", 0) == 0, result
    new = [moved + timedelta(days=7 * i) for i in range(4)]
    expected = [(new[0], "Weekly"), (new[1], "Weekly (customer)"), (new[2], "Weekly")]
    assert await google_view(h) == expected
    assert await crm_view(h, start) == expected
    excs = {e.original_start_local: e for e in await exceptions_of(h, sid)}
    assert set(excs) == {new[1], new[3]}  # no exception left at a 10:00 original start
    assert excs[new[1]].subject == "Weekly (customer)" and excs[new[1]].start_local == new[1]
    assert excs[new[3]].status == "cancelled"
    again = await h.sync()
    assert again.ok and again.counts.get("pushed", 0) == 0 and not again.counts.get("updated")
    assert await google_view(h) == expected and h.emails() == []


async def test_series_moved_in_crm_takes_its_exceptions_along(h: Harness) -> None:
    start = at(3, 10)
    sid = await series(h, "Weekly", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=4")
    week = [start + timedelta(days=7 * i) for i in range(4)]
    renamed = await exception(h, sid, week[1])
    await h.edit(renamed, subject="Weekly (customer)", description="bring the contract")
    await exception(h, sid, week[2], start=week[2] + timedelta(hours=2))
    await exception(h, sid, week[3], status="cancelled")
    assert (await h.sync()).ok
    # Google has one Google-made exception too: a renamed first occurrence
    await h.gpatch(f"{google_event_id(sid)}_{suffix(week[0])}", {"summary": "Kick-off"})
    assert (await h.sync()).ok
    # the whole series moves a day later and to 11:00 in the CRM
    moved = start + timedelta(days=1, hours=1)
    await h.edit(sid, start=moved, end=moved + timedelta(hours=1))
    result = await h.sync()
    assert result.ok and result.counts.get("issues", 0) == 0, result
    new = [moved + timedelta(days=7 * i) for i in range(4)]
    expected = [(new[0], "Kick-off"), (new[1], "Weekly (customer)"), (new[2], "Weekly")]
    assert await crm_view(h, start) == expected
    assert await google_view(h) == expected
    by_start = {local(e): e for e in await instances(h)}
    assert by_start[new[1]].description == "bring the contract"
    excs = {e.original_start_local: e for e in await exceptions_of(h, sid)}
    assert set(excs) == {new[0], new[1], new[3]}
    assert (await h.get(renamed)).original_start_local == new[1]  # the same activity moved
    again = await h.sync()
    assert again.ok and again.counts.get("pushed", 0) == 0 and not again.counts.get("updated")
    assert await google_view(h) == expected and h.emails() == []


async def test_this_and_following_split_in_crm_becomes_two_google_series(h: Harness) -> None:
    start = at(1, 9)
    sid = await series(h, "Review", start, start + timedelta(hours=1), "RRULE:FREQ=DAILY;COUNT=10")
    before = await exception(h, sid, start + timedelta(days=2))
    await h.edit(before, subject="Review (board)")
    after = await exception(h, sid, start + timedelta(days=7))
    await h.edit(after, subject="Review (old part)")
    assert (await h.sync()).ok
    # what a CRM client does for "this and following": the old series ends before the split...
    split = start + timedelta(days=5)
    until = (split - timedelta(seconds=1)).replace(tzinfo=OSLO).astimezone(UTC)
    rule = f"RRULE:FREQ=DAILY;UNTIL={until:%Y%m%dT%H%M%SZ}"
    async with h.db.session() as s:
        old = await activities.get(s, h.tenant_id, sid)
        assert old is not None
        values = validate(
            ActivityDraft(
                start=old.start_local,
                end=old.end_local,
                subject=old.subject,
                time_zone=old.time_zone,
                recurrence=[rule],
            )
        )
        await activities.update(s, old, values)
        await s.commit()
    # ...and a new series starts at the split (here two hours later)
    later = split + timedelta(hours=2)
    new_id = await series(
        h, "Review", later, later + timedelta(hours=1), "RRULE:FREQ=DAILY;COUNT=5"
    )
    result = await h.sync()
    assert result.ok and result.counts.get("issues", 0) == 0, result
    masters = {e.id: e for e in await h.events() if e.recurrence}
    assert set(masters) == {google_event_id(sid), google_event_id(new_id)}
    assert masters[google_event_id(sid)].recurrence == [rule]
    expected = [(start + timedelta(days=d), "Review") for d in range(5) if d != 2]
    expected += [(start + timedelta(days=2), "Review (board)")]
    expected += [(later + timedelta(days=d), "Review") for d in range(5)]
    assert await google_view(h) == sorted(expected)
    assert await crm_view(h, start) == sorted(expected)
    # the exception after the split went with the old series' end (as in Google), none is
    # left at an occurrence the old series no longer has
    assert [e.id for e in await exceptions_of(h, sid)] == [before]
    assert (await h.get(after)).deleted_at is not None
    again = await h.sync()
    assert again.ok and again.counts.get("pushed", 0) == 0 and not again.counts.get("updated")
    assert again.counts.get("created", 0) == 0


async def test_exception_deleted_in_crm_cancels_only_that_google_instance(h: Harness) -> None:
    start = at(2, 13)
    sid = await series(
        h, "Coaching", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3"
    )
    assert (await h.sync()).ok
    second = start + timedelta(days=7)
    instance = f"{google_event_id(sid)}_{suffix(second)}"
    moved = second + timedelta(hours=3)
    await h.gpatch(
        instance,
        {
            "summary": "Coaching (moved)",
            "start": {"dateTime": moved.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (moved + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        },
    )
    assert (await h.sync()).ok
    (exc,) = await exceptions_of(h, sid)
    assert exc.start_local == moved
    # the user deletes that (moved) occurrence in the CRM: gone there at once
    await h.delete(exc.id)
    assert await crm_view(h, start) == [
        (start, "Coaching"),
        (start + timedelta(days=14), "Coaching"),
    ]
    mark = h.mark()
    result = await h.sync()
    assert result.ok and result.counts.get("issues", 0) == 0, result
    writes = [r for r in h.requests_since(mark) if r["method"] in ("PATCH", "PUT", "DELETE")]
    assert [w["path"].rsplit("/", 1)[1] for w in writes] == [instance]
    assert all("sendUpdates=none" in w["query"] for w in writes)
    cancelled = await h.person.get_event(h.calendar_id, instance)
    assert cancelled.status == "cancelled"
    expected = [(start, "Coaching"), (start + timedelta(days=14), "Coaching")]
    assert await google_view(h) == expected  # the series keeps its other occurrences
    assert await crm_view(h, start) == expected  # and the CRM does not get it back
    for _ in range(2):
        again = await h.sync()
        assert again.ok and again.counts.get("pushed", 0) == 0, again
        assert not again.counts.get("created") and not again.counts.get("updated")
    assert await crm_view(h, start) == expected
    assert (await h.get(exc.id)).deleted_at is not None  # the user's delete stays a delete
    assert h.emails() == []


async def test_cancelled_exception_deleted_in_crm_stays_cancelled(h: Harness) -> None:
    """Deleting the exception that cancels an occurrence is no way to bring it back (that is
    an edit of its status): nothing changes on either side and nothing is written."""
    start = at(2, 15)
    sid = await series(h, "Gym", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    last = start + timedelta(days=14)
    cancelled = await exception(h, sid, last, status="cancelled")
    assert (await h.sync()).ok
    link = await h.link(cancelled)
    assert link is not None and link.google_event_id == f"{google_event_id(sid)}_{suffix(last)}"
    await h.delete(cancelled)
    mark = h.mark()
    for _ in range(2):
        result = await h.sync()
        assert result.ok and result.counts.get("issues", 0) == 0, result
        assert not result.counts.get("pushed")
    assert [r["method"] for r in h.requests_since(mark)] == ["GET", "GET"]
    expected = [(start, "Gym"), (start + timedelta(days=7), "Gym")]
    assert await google_view(h) == expected
    assert await crm_view(h, start) == expected
    (still,) = await exceptions_of(h, sid)
    assert still.id == cancelled and still.status == "cancelled" and still.deleted_at is None
    # bringing it back is an edit of the status
    await h.edit(cancelled, status="confirmed")
    assert (await h.sync()).ok
    everything = [*expected, (last, "Gym")]
    assert await google_view(h) == everything and await crm_view(h, start) == everything


async def test_google_exception_follows_a_series_the_crm_moved_meanwhile(h: Harness) -> None:
    start = at(3, 10)
    sid = await series(h, "Weekly", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    assert (await h.sync()).ok
    gid = google_event_id(sid)
    second, third = start + timedelta(days=7), start + timedelta(days=14)
    moved = start + timedelta(hours=2)
    await h.edit(sid, start=moved, end=moved + timedelta(hours=1))  # not synced yet...
    await h.gpatch(f"{gid}_{suffix(second)}", {"summary": "Weekly (customer)"})  # ...meanwhile
    await h.gdelete(f"{gid}_{suffix(third)}")
    result = await h.sync()
    assert result.ok and result.counts.get("issues", 0) == 0, result
    new = [moved + timedelta(days=7 * i) for i in range(3)]
    expected = [(new[0], "Weekly"), (new[1], "Weekly (customer)")]
    assert await google_view(h) == expected
    assert await crm_view(h, start) == expected
    again = await h.sync()
    assert again.ok and again.counts.get("pushed", 0) == 0 and not again.counts.get("updated")


async def test_series_moved_and_moved_back_before_a_sync_cancels_nothing(h: Harness) -> None:
    """The CRM drops a time-only exception when its series moves; if the series moves back
    before the next sync (a quick undo, or a day waiting for a reconnect), Google must not
    lose that occurrence: a dropped exception is not a user's delete."""
    start = at(3, 10)
    sid = await series(h, "Weekly", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    week = [start + timedelta(days=7 * i) for i in range(3)]
    await exception(h, sid, week[1], start=week[1] + timedelta(hours=2))  # a time of its own
    assert (await h.sync()).ok
    moved = start + timedelta(days=1)
    await h.edit(sid, start=moved, end=moved + timedelta(hours=1))
    await h.edit(sid, start=start, end=start + timedelta(hours=1))  # and back
    result = await h.sync()
    assert result.ok and result.counts.get("issues", 0) == 0, result
    # the exception the move dropped is back, as Google still holds it: 12:00 in week 2
    expected = [(week[0], "Weekly"), (week[1] + timedelta(hours=2), "Weekly"), (week[2], "Weekly")]
    assert await google_view(h) == expected
    assert await crm_view(h, start) == expected
    assert result.counts.get("restored") == 1
    again = await h.sync()
    assert again.ok and not again.counts.get("pushed") and not again.counts.get("created")
    assert await crm_view(h, start) == await google_view(h) == expected
    assert h.emails() == []


async def test_series_deleted_in_crm_beats_a_later_google_edit_of_one_occurrence(
    h: Harness,
) -> None:
    """An edit beats a deletion of the same entry; an occurrence is not its series. Deleting
    the series in the CRM removes it in Google even if someone renamed one occurrence there
    meanwhile — an exception without its series cannot live on in the CRM."""
    start = at(1, 14)
    sid = await series(h, "Retro", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    assert (await h.sync()).ok
    instance = f"{google_event_id(sid)}_{suffix(start + timedelta(days=7))}"
    await h.gpatch(instance, {"summary": "Retro (customer)"})
    assert (await h.sync()).ok
    assert len(await exceptions_of(h, sid)) == 1
    await h.delete(sid)
    await h.gpatch(instance, {"summary": "Retro (customer, moved)"})
    for _ in range(2):
        result = await h.sync()
        assert result.ok and result.counts.get("issues", 0) == 0, result
    assert await h.events() == []
    assert await h.live_activities() == []
    async with h.db.session() as s:
        left = await s.scalars(select(EventLink).where(EventLink.binding_id == h.binding_id))
        assert list(left) == []
    assert h.emails() == []


async def _synced_series_with_exceptions(
    h: Harness,
) -> tuple[uuid.UUID, datetime, list[tuple[datetime, str]]]:
    """A weekly series of three synced with two exceptions (the second occurrence two hours
    later, the third cancelled): its id, first start and the (start, subject) both sides show."""
    start = at(1, 14)
    sid = await series(h, "Retro", start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY;COUNT=3")
    week = [start + timedelta(days=7 * i) for i in range(3)]
    await exception(h, sid, week[1], start=week[1] + timedelta(hours=2))
    await exception(h, sid, week[2], status="cancelled")
    assert (await h.sync()).ok
    return sid, start, [(week[0], "Retro"), (week[1] + timedelta(hours=2), "Retro")]


async def test_series_deleted_in_crm_and_edited_in_google_comes_back_with_its_exceptions(
    h: Harness,
) -> None:
    """An edit of a series in Google beats its deletion in the CRM: the series comes back,
    and with it the exceptions its delete took along (a cancelled occurrence, one at a time
    of its own) — not the bare rule, which would show in the CRM an occurrence Google keeps
    cancelled. Found by tests/sync/test_stateful.py: the edit lands between the pull and the
    push's delete (412), and the push had already forgotten the exceptions' links."""
    sid, start, expected = await _synced_series_with_exceptions(h)
    assert await google_view(h) == await crm_view(h, start) == expected
    await h.delete(sid)

    async def edit_in_google(*_: Any) -> None:  # after the pull: the push's delete meets a 412
        await h.gpatch(google_event_id(sid), {"location": "Room 2"})

    result = await h.sync(hooks=Hooks(after_pull=edit_in_google))
    assert result.ok and result.counts.get("issues", 0) == 0, result
    for _ in range(2):
        assert (await h.sync()).ok
    assert await google_view(h) == expected
    assert await crm_view(h, start) == expected
    exceptions = await exceptions_of(h, sid)
    assert sorted(e.status for e in exceptions) == ["cancelled", "confirmed"]
    async with h.db.session() as s:
        linked = {
            link.activity_id: link.state
            for link in await s.scalars(
                select(EventLink).where(EventLink.binding_id == h.binding_id)
            )
        }
    assert {e.id for e in exceptions} <= set(linked), "each exception on its instance again"
    assert set(linked.values()) == {"linked"}
    again = await h.sync()
    assert again.ok and not again.counts.get("pushed") and not again.counts.get("created")
    assert h.emails() == []


async def test_a_restored_series_places_its_exceptions_after_a_crash(h: Harness) -> None:
    """The process dies right after Google answered the series' delete with a 412, and again
    right after the next run's pull restored the series: the run after still puts every
    exception on its instance — one copy each, nothing lost, no e-mail."""
    sid, start, expected = await _synced_series_with_exceptions(h)
    await h.delete(sid)

    async def edit_in_google(*_: Any) -> None:
        await h.gpatch(google_event_id(sid), {"location": "Room 2"})

    async def crash(*_: Any) -> None:
        raise RuntimeError("the process dies")

    with pytest.raises(RuntimeError):  # the delete met a 412; dead right after the answer
        await h.sync(hooks=Hooks(after_pull=edit_in_google, after_google_write=crash))
    with pytest.raises(RuntimeError):  # the next run's pull restores the series, then dies
        await h.sync(hooks=Hooks(after_pull=crash))
    assert await crm_view(h, start) == expected  # the CRM shows the series whole already
    for _ in range(2):
        result = await h.sync()
        assert result.ok and result.counts.get("issues", 0) == 0, result
    assert await google_view(h) == await crm_view(h, start) == expected
    async with h.db.session() as s:
        linked = {
            link.activity_id: link.state
            for link in await s.scalars(
                select(EventLink).where(EventLink.binding_id == h.binding_id)
            )
        }
    assert {e.id for e in await exceptions_of(h, sid)} <= set(linked)
    assert set(linked.values()) == {"linked"}
    assert h.emails() == []


async def test_a_bad_rule_stored_before_validation_does_not_fail_the_run(h: Harness) -> None:
    """Issue 13: a row whose rule was stored before rules were checked (INTERVAL=0 looped
    forever, a 30 February walked to the year 9999) stays out of Google with an issue; the
    rest of the run goes on."""
    start = at(2, 9)
    good = await series(h, "Daily", start, start + timedelta(hours=1), "RRULE:FREQ=DAILY;COUNT=3")
    bad = {
        rule: await series(h, rule, start, start + timedelta(hours=1), "RRULE:FREQ=WEEKLY")
        for rule in ("RRULE:FREQ=DAILY;INTERVAL=0", "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30")
    }
    async with h.db.session() as s:
        for rule, ident in bad.items():
            row = await s.get(Activity, ident)
            assert row is not None
            row.recurrence = [rule]
        await s.commit()
    single = await h.activity("Plain", at(3, 9))
    result = await h.sync()
    assert result.ok, result
    assert (await h.link(good)) is not None and (await h.link(single)) is not None
    assert {e.summary for e in await h.events()} == {"Daily", "Plain"}
    async with h.db.session() as s:
        issues = await runs.open_issues(s, h.binding_id)
    assert issues, "the rows that could not be exported are reported"
    assert (await h.sync()).ok  # and the next run is not stuck on them either
