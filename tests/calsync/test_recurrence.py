"""Series expansion: wall clock kept across DST, all-day dates never shift, exceptions apply."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calsync.domain import recurrence as rec
from calsync.domain.activity import ActivityDraft, ActivityInvalid, series_of, validate

OSLO, NEW_YORK = ZoneInfo("Europe/Oslo"), ZoneInfo("America/New_York")


def series(
    start: datetime, end: datetime, zone: ZoneInfo, *lines: str, all_day: bool = False
) -> rec.Series:
    normal = rec.normalise(lines, all_day=all_day, zone=zone, start_local=start)
    return rec.Series(all_day, zone, start, end, normal)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekly_oslo_keeps_0900_across_spring_forward() -> None:
    # DST starts in Oslo on 2025-03-30 (02:00 -> 03:00)
    s = series(
        datetime(2025, 3, 24, 9), datetime(2025, 3, 24, 10), OSLO, "RRULE:FREQ=WEEKLY;COUNT=3"
    )
    got = rec.expand(s, utc(2025, 3, 1), utc(2025, 5, 1))
    assert [o.start_local for o in got] == [datetime(2025, 3, d, 9) for d in (24, 31)] + [
        datetime(2025, 4, 7, 9)
    ]
    assert [o.start_utc.hour for o in got] == [8, 7, 7]
    assert all(o.end_utc - o.start_utc == timedelta(hours=1) for o in got)


def test_daily_oslo_across_autumn_fallback() -> None:
    # DST ends in Oslo on 2025-10-26 (03:00 -> 02:00)
    s = series(
        datetime(2025, 10, 24, 18), datetime(2025, 10, 24, 19), OSLO, "RRULE:FREQ=DAILY;COUNT=4"
    )
    got = rec.expand(s, utc(2025, 10, 1), utc(2025, 11, 1))
    assert [o.start_local.time() for o in got] == [time(18)] * 4
    assert [o.start_utc.hour for o in got] == [16, 16, 17, 17]


def test_new_york_weekly_across_both_changes() -> None:
    # 2025: DST starts 9 March, ends 2 November in New York
    s = series(
        datetime(2025, 3, 3, 8, 30),
        datetime(2025, 3, 3, 9),
        NEW_YORK,
        "RRULE:FREQ=WEEKLY;UNTIL=20251110T235959Z",
    )
    got = rec.expand(s, utc(2025, 1, 1), utc(2026, 1, 1))
    assert all(o.start_local.time() == time(8, 30) for o in got)
    offsets = {o.start_local.date(): o.start_utc.hour for o in got}
    assert offsets[date(2025, 3, 3)] == 13  # EST, UTC-5
    assert offsets[date(2025, 3, 10)] == 12  # EDT, UTC-4
    assert offsets[date(2025, 10, 27)] == 12
    assert offsets[date(2025, 11, 3)] == 13
    assert max(offsets) == date(2025, 11, 10)


def test_time_in_the_spring_gap_moves_forward_like_rfc5545() -> None:
    s = series(
        datetime(2025, 3, 29, 2, 30), datetime(2025, 3, 29, 3, 30), OSLO, "RRULE:FREQ=DAILY;COUNT=2"
    )
    got = rec.expand(s, utc(2025, 3, 1), utc(2025, 4, 1))
    # 02:30 does not exist on 30 March; the offset before the gap applies (= 03:30 CEST)
    assert got[1].start_utc == utc(2025, 3, 30, 1, 30)


def test_all_day_series_never_shift_a_day() -> None:
    s = series(
        datetime(2025, 3, 28),
        datetime(2025, 3, 29),
        NEW_YORK,
        "RRULE:FREQ=DAILY;COUNT=5",
        all_day=True,
    )
    got = rec.expand(s, utc(2025, 3, 1), utc(2025, 4, 30))
    assert [o.start_local for o in got] == [datetime(2025, 3, d) for d in range(28, 33 - 1)] + [
        datetime(2025, 4, 1)
    ]
    assert all(
        o.start_local.time() == time() and o.end_local - o.start_local == timedelta(days=1)
        for o in got
    )


def test_exdate_with_tzid_utc_and_date_values() -> None:
    s = series(
        datetime(2025, 3, 24, 9),
        datetime(2025, 3, 24, 10),
        OSLO,
        "RRULE:FREQ=DAILY;COUNT=6",
        "EXDATE;TZID=Europe/Oslo:20250325T090000",
        "EXDATE:20250326T080000Z",  # 09:00 Oslo (CET)
        "EXDATE;TZID=America/New_York:20250327T040000",  # 09:00 Oslo
    )
    days = [o.start_local.day for o in rec.expand(s, utc(2025, 3, 1), utc(2025, 4, 30))]
    assert days == [24, 28, 29]


def test_rdate_adds_and_dtstart_always_counts() -> None:
    s = series(
        datetime(2025, 3, 25, 9),
        datetime(2025, 3, 25, 10),
        OSLO,
        "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=2",
        "RDATE;TZID=Europe/Oslo:20250401T150000",
    )
    starts = [o.start_local for o in rec.expand(s, utc(2025, 3, 1), utc(2025, 5, 1))]
    assert starts == [
        datetime(2025, 3, 25, 9),
        datetime(2025, 3, 31, 9),
        datetime(2025, 4, 1, 15),
        datetime(2025, 4, 7, 9),
    ]


def test_skip_removes_overridden_occurrences() -> None:
    s = series(datetime(2025, 1, 6, 9), datetime(2025, 1, 6, 10), OSLO, "RRULE:FREQ=WEEKLY;COUNT=3")
    got = rec.expand(s, utc(2025, 1, 1), utc(2025, 2, 1), skip={datetime(2025, 1, 13, 9)})
    assert [o.start_local.day for o in got] == [6, 20]


def test_window_is_half_open_and_overlap_counts() -> None:
    s = series(
        datetime(2025, 1, 6, 9), datetime(2025, 1, 6, 10), ZoneInfo("UTC"), "RRULE:FREQ=DAILY"
    )
    got = rec.expand(s, utc(2025, 1, 7, 9, 30), utc(2025, 1, 9, 9))
    assert [o.start_local.day for o in got] == [7, 8]  # 7th overlaps; 9th starts at the end


def test_until_normalised_to_utc_for_timed_and_date_for_all_day() -> None:
    timed = rec.normalise(
        ["RRULE:FREQ=DAILY;UNTIL=20250401T090000"],
        all_day=False,
        zone=OSLO,
        start_local=datetime(2025, 3, 1, 9),
    )
    assert timed == ("RRULE:FREQ=DAILY;UNTIL=20250401T070000Z",)
    all_day = rec.normalise(
        ["rrule:FREQ=DAILY;UNTIL=20250401T000000Z"],
        all_day=True,
        zone=OSLO,
        start_local=datetime(2025, 3, 1),
    )
    assert all_day == ("RRULE:FREQ=DAILY;UNTIL=20250401",)


def test_bounds_finite_and_open() -> None:
    finite = series(
        datetime(2025, 1, 6, 9), datetime(2025, 1, 6, 10), OSLO, "RRULE:FREQ=WEEKLY;COUNT=3"
    )
    assert rec.bounds(finite) == (utc(2025, 1, 6, 8), utc(2025, 1, 20, 9))
    open_ended = series(
        datetime(2025, 1, 6, 9), datetime(2025, 1, 6, 10), OSLO, "RRULE:FREQ=WEEKLY"
    )
    assert rec.bounds(open_ended) == (utc(2025, 1, 6, 8), None)


@pytest.mark.parametrize(
    "line",
    [
        "RRULE:FREQ=SOMETIMES",
        "RRULE:FREQ=SECONDLY",
        "RRULE:FREQ=MINUTELY;COUNT=3",
        "RRULE:FREQ=DAILY;BYDAY=XX",
        "RRULE:FREQ=DAILY;COUNT=x",
        "EXDATE:notadate",
        "RDATE;VALUE=PERIOD:20250101T090000Z/PT1H",
        "EXDATE;TZID=Not/AZone:20250101T090000",
        "DTSTART:20250101T090000",
        "FREQ=DAILY",
        "",
    ],
)
def test_invalid_lines_are_refused(line: str) -> None:
    with pytest.raises(rec.RecurrenceError):
        rec.normalise([line], all_day=False, zone=OSLO, start_local=datetime(2025, 1, 1, 9))


def test_too_many_occurrences() -> None:
    s = series(datetime(2025, 1, 1, 9), datetime(2025, 1, 1, 10), OSLO, "RRULE:FREQ=DAILY")
    with pytest.raises(rec.TooManyOccurrences):
        rec.expand(s, utc(2025, 1, 1), utc(2030, 1, 1), limit=100)


def test_instance_suffix_like_google() -> None:
    assert (
        rec.instance_suffix(False, utc(2025, 3, 31, 7), datetime(2025, 3, 31, 9))
        == "20250331T070000Z"
    )
    assert rec.instance_suffix(True, utc(2025, 3, 31), datetime(2025, 3, 31)) == "20250331"


ZONES = st.sampled_from(
    [
        "Europe/Oslo",
        "America/New_York",
        "Australia/Sydney",
        "Asia/Kolkata",
        "America/Santiago",
        "UTC",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    zone=ZONES,
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 1, 1)),
    hour=st.integers(0, 23),
    freq=st.sampled_from(["DAILY", "WEEKLY", "MONTHLY"]),
)
def test_wall_clock_is_kept_for_every_zone(zone: str, day: date, hour: int, freq: str) -> None:
    start = datetime.combine(day, time(hour, 15))
    s = series(start, start + timedelta(minutes=45), ZoneInfo(zone), f"RRULE:FREQ={freq};COUNT=30")
    got = rec.expand(s, utc(1999, 1, 1), utc(2045, 1, 1))
    assert got and all(o.start_local.time() == time(hour, 15) for o in got)
    for o in got:  # the UTC instant is the wall clock in the zone
        assert o.start_utc == o.start_local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


@settings(max_examples=60, deadline=None)
@given(
    zone=ZONES,
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 1, 1)),
    days=st.integers(1, 5),
)
def test_all_day_entries_stay_dates(zone: str, day: date, days: int) -> None:
    values = validate(
        ActivityDraft(
            start=day,
            end=day + timedelta(days=days),
            time_zone=zone,
            recurrence=["RRULE:FREQ=WEEKLY;COUNT=10"],
        )
    )
    got = rec.expand(series_of(values), utc(1999, 1, 1), utc(2045, 1, 1))
    assert [o.start_local.date() for o in got] == [day + timedelta(weeks=n) for n in range(10)]
    assert all(
        o.start_local.time() == time() and (o.end_local - o.start_local).days == days for o in got
    )


def test_exception_original_start_must_be_an_occurrence() -> None:
    s = series(datetime(2025, 1, 6, 9), datetime(2025, 1, 6, 10), OSLO, "RRULE:FREQ=WEEKLY;COUNT=3")
    ok = validate(
        ActivityDraft(
            start=datetime(2025, 1, 14, 11),
            end=datetime(2025, 1, 14, 12),
            original_start=datetime(2025, 1, 13, 9),
        ),
        parent=s,
    )
    assert (
        ok.original_start_local == datetime(2025, 1, 13, 9) and ok.timing.time_zone == "Europe/Oslo"
    )
    with pytest.raises(ActivityInvalid) as info:
        validate(
            ActivityDraft(
                start=datetime(2025, 1, 14, 11),
                end=datetime(2025, 1, 14, 12),
                original_start=datetime(2025, 1, 14, 9),
            ),
            parent=s,
        )
    assert info.value.errors[0].code == "not_an_occurrence"
