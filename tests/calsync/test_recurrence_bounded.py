"""Recurrence is bounded by construction (issue 13 item 1): what Google refuses is refused with
a message, and validation plus expansion of any rule spends a bounded number of work units,
counted inside dateutil by the Budget (never by the wall clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from calsync.domain import recurrence as rec

OSLO = ZoneInfo("Europe/Oslo")
START = datetime(2020, 1, 6, 9, 0)


def check(line: str) -> tuple[str, ...]:
    return rec.normalise([line], all_day=False, zone=OSLO, start_local=START)


def stored(*lines: str) -> rec.Series:
    """A series as a database row may hold it: never validated."""
    return rec.Series(False, OSLO, START, START + timedelta(hours=1), lines)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("RRULE:FREQ=DAILY;INTERVAL=0", "INTERVAL must be a whole number from 1"),
        ("RRULE:FREQ=DAILY;INTERVAL=-2", "INTERVAL must be a whole number from 1"),
        ("RRULE:FREQ=DAILY;INTERVAL=1000000000", "INTERVAL must be a whole number from 1"),
        ("RRULE:FREQ=DAILY;COUNT=-1", "COUNT must be a whole number from 1"),
        ("RRULE:FREQ=DAILY;COUNT=0", "COUNT must be a whole number from 1"),
        ("RRULE:FREQ=SECONDLY", "FREQ must be one of DAILY, WEEKLY, MONTHLY, YEARLY"),
        ("RRULE:FREQ=MINUTELY", "FREQ must be one of"),
        ("RRULE:FREQ=HOURLY;INTERVAL=1", "FREQ must be one of"),
        ("RRULE:INTERVAL=2", "FREQ must be one of"),
        (
            "RRULE:FREQ=DAILY;BYHOUR=0,1,2,3;BYMINUTE=0,1,2;BYSECOND=0,1",
            "BYHOUR takes one value",
        ),
        ("RRULE:FREQ=DAILY;BYHOUR=24", "BYHOUR values must be from 0 to 23"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY values must be from 1 to 31"),
        ("RRULE:FREQ=YEARLY;BYMONTH=13", "BYMONTH values must be from 1 to 12"),
        ("RRULE:FREQ=WEEKLY;BYDAY=XX", "BYDAY values are weekdays"),
        ("RRULE:FREQ=WEEKLY;BYDAY=2MO", "needs FREQ=MONTHLY or YEARLY"),
        ("RRULE:FREQ=MONTHLY;BYDAY=6MO", "the number must be 1 to 5"),
        ("RRULE:FREQ=DAILY;BYEASTER=0", "BYEASTER is not supported"),
        ("RRULE:FREQ=DAILY;COUNT=2;COUNT=3", "COUNT is given twice"),
        ("RRULE:FREQ=DAILY;COUNT=2;UNTIL=20300101T000000Z", "give COUNT or UNTIL, not both"),
        ("RRULE:FREQ=DAILY;BYWEEKNO=1", "BYWEEKNO needs FREQ=YEARLY"),
        ("RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "generates no occurrence within reach"),
        ("RRULE:FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31", "generates no occurrence within reach"),
    ],
)
def test_what_google_refuses_is_refused_with_a_message(line: str, says: str) -> None:
    with pytest.raises(rec.RecurrenceError, match=says):
        check(line)


@pytest.mark.parametrize(
    "line",
    [
        "RRULE:FREQ=DAILY;INTERVAL=2",
        "RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR;WKST=MO",
        "RRULE:FREQ=MONTHLY;BYDAY=-1FR",
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=31",
        "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",  # leap days: a match every four years
        "RRULE:FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO",
        "RRULE:FREQ=DAILY;COUNT=100000",
    ],
)
def test_what_google_accepts_is_accepted(line: str) -> None:
    assert check(line) == (line,)


def test_a_stored_interval_zero_is_refused_by_expansion_not_looped_on() -> None:
    with pytest.raises(rec.RecurrenceError, match="INTERVAL"):
        rec.expand(
            stored("RRULE:FREQ=DAILY;INTERVAL=0"),
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 2, 1, tzinfo=UTC),
        )


def test_a_stored_rule_that_matches_nothing_runs_out_of_budget() -> None:
    """dateutil walks year by year to 9999 looking for a 30 February: the budget stops it
    (this fails if a dateutil release stops reading `_byweekno` once a year)."""
    budget = rec.Budget(rec.SERIES_UNITS)
    with pytest.raises(rec.WorkLimitExceeded):
        rec.expand(
            stored("RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"),
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 2, 1, tzinfo=UTC),
            budget=budget,
        )
    assert rec.SERIES_UNITS < budget.spent <= rec.SERIES_UNITS + 366


def test_every_generated_instant_is_paid_for() -> None:
    """An instant dateutil generates before the window costs a unit too (this fails if a
    dateutil release stops reading `_dtstart` once per instant)."""
    budget = rec.Budget(10**9)
    series = stored("RRULE:FREQ=MONTHLY;COUNT=1000")  # COUNT: no jump, walks from the start
    found = rec.expand(
        series, datetime(2040, 1, 1, tzinfo=UTC), datetime(2040, 2, 1, tzinfo=UTC), budget=budget
    )
    assert len(found) == 1
    assert budget.spent >= 240  # 2020 to 2040 monthly


def test_a_daily_series_listed_far_from_its_start_starts_near_the_window() -> None:
    budget = rec.Budget(10**9)
    series = stored("RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH")
    window = datetime(2190, 1, 1, tzinfo=UTC), datetime(2190, 3, 1, tzinfo=UTC)
    found = rec.expand(series, *window, budget=budget)
    assert budget.spent < 300  # not the 170 years' walk from 2020
    # the same instants as dateutil's own walk from the series' start
    walked = rrulestr("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", dtstart=START.replace(tzinfo=OSLO))
    expected = walked.between(window[0], window[1])
    assert [o.start_local for o in found] == [e.replace(tzinfo=None) for e in expected]
    assert len(found) == 8
    mondays = [o.start_local for o in found if o.start_local.weekday() == 0]
    assert rec.is_occurrence(series, mondays[0])
    assert not rec.is_occurrence(series, mondays[0] + timedelta(days=7))


def test_the_dense_rule_of_the_issue_is_refused_and_stored_it_stays_bounded() -> None:
    line = "RRULE:FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24)))
    line += ";BYMINUTE=" + ",".join(map(str, range(60)))
    line += ";BYSECOND=" + ",".join(map(str, range(60)))
    with pytest.raises(rec.RecurrenceError, match="one value"):
        check(line)
    with pytest.raises(rec.RecurrenceError, match="one value"):
        rec.expand(stored(line), datetime(2090, 1, 1, tzinfo=UTC), datetime(2090, 1, 2, tzinfo=UTC))


# fuzzing: any RRULE string, valid or not, costs a bounded number of work units

_INTS = st.one_of(st.integers(min_value=1, max_value=31), st.integers(-400, 400)).map(str)
_DAYS = st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU", "1MO", "-1FR", "5SU", "53TH"])
_FREQ = st.one_of(
    st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]),
    st.sampled_from(["SECONDLY", "MINUTELY", "HOURLY", "X"]),
).map(lambda v: f"FREQ={v}")
_PARTS = st.one_of(
    _FREQ,
    st.one_of(st.integers(1, 5), st.integers(-3, 2_000_000)).map(lambda v: f"INTERVAL={v}"),
    st.one_of(st.integers(1, 50), st.integers(-3, 200_000)).map(lambda v: f"COUNT={v}"),
    st.sampled_from(["20200101", "20300615T120000Z", "19000101T000000Z", "99991231"]).map(
        lambda v: f"UNTIL={v}"
    ),
    st.tuples(
        st.sampled_from(
            "BYMONTH BYMONTHDAY BYYEARDAY BYWEEKNO BYSETPOS BYHOUR BYMINUTE BYSECOND BYEASTER".split()
        ),
        st.lists(_INTS, min_size=1, max_size=6),
    ).map(lambda kv: f"{kv[0]}={','.join(kv[1])}"),
    st.lists(_DAYS, min_size=1, max_size=4).map(lambda v: "BYDAY=" + ",".join(v)),
    st.sampled_from(["WKST=MO", "WKST=SU", "WKST=XX"]),
    st.text(alphabet="FREQ=DAILY;,0123456789-", max_size=12),
)
#: a FREQ first (as most rules have), then up to four other parts, any of them broken
RULES = st.tuples(_FREQ, st.lists(_PARTS, max_size=4)).map(
    lambda fp: "RRULE:" + ";".join([fp[0], *fp[1]])
)
WINDOWS = st.tuples(
    st.integers(min_value=1900, max_value=2190), st.integers(min_value=1, max_value=400)
).map(
    lambda yd: (
        datetime(yd[0], 1, 1, tzinfo=UTC),
        datetime(yd[0], 1, 1, tzinfo=UTC) + timedelta(days=yd[1]),
    )
)
STARTS = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2190, 1, 1))
#: the most one validation (three checks on their own budgets) plus one expansion may spend:
#: a budget stops at its limit plus one year of a daily rule's periods
BOUND = 4 * (rec.VALIDATION_UNITS + 366) + rec.SERIES_UNITS + 366

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(line=RULES, start=STARTS, window=WINDOWS)
def test_validation_then_expansion_spends_bounded_work(
    line: str, start: datetime, window: tuple[datetime, datetime]
) -> None:
    measured = rec.Budget(10**12)
    accepted = False
    try:
        lines = rec.normalise([line], all_day=False, zone=OSLO, start_local=start, budget=measured)
        series = rec.Series(False, OSLO, start, start + timedelta(hours=1), lines)
        accepted = True
        rec.bounds(series, measured)
        rec.expand(series, *window, budget=measured.child(rec.SERIES_UNITS))
    except (rec.RecurrenceError, rec.TooManyOccurrences):
        pass
    target(float(measured.spent), label="work units")
    event("accepted" if accepted else "refused")
    assert measured.spent <= BOUND


@FUZZ
@given(line=RULES, start=STARTS, window=WINDOWS)
def test_expanding_a_stored_unvalidated_rule_spends_bounded_work(
    line: str, start: datetime, window: tuple[datetime, datetime]
) -> None:
    measured = rec.Budget(10**12)
    series = rec.Series(False, OSLO, start, start + timedelta(hours=1), (line,))
    try:
        rec.expand(series, *window, budget=measured.child(rec.SERIES_UNITS))
        rec.is_occurrence(series, window[0].replace(tzinfo=None), measured.child(rec.SERIES_UNITS))
    except (rec.RecurrenceError, rec.TooManyOccurrences):
        pass
    target(float(measured.spent), label="work units")
    assert measured.spent <= 2 * (rec.SERIES_UNITS + 366)
