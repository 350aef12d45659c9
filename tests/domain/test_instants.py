"""The canonical instant text is what every link's hash is made of: the fast formatting and
parsing the bulk import uses must give exactly the text and values strftime/strptime did, and
validate's shortcut for UTC times the values of the round trip through the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from calsync.domain.activity import _local, _placed
from calsync.domain.fields import instant
from calsync.sync.mapping import _utc_instant


def aware(first_year: int) -> st.SearchStrategy[datetime]:
    offsets = st.integers(min_value=-14 * 60, max_value=14 * 60)
    return st.datetimes(
        min_value=datetime(first_year, 1, 2), max_value=datetime(9999, 12, 30)
    ).flatmap(lambda d: offsets.map(lambda m: d.replace(tzinfo=timezone(timedelta(minutes=m)))))


@given(aware(1))
def test_instant_text_is_strftime_s(value: datetime) -> None:
    utc = value.astimezone(UTC).replace(microsecond=0)
    assert instant(value) == utc.strftime("%Y-%m-%dT%H:%M:%SZ")


@given(aware(1000))  # strptime never read shorter years back either
def test_instant_text_reads_back_as_strptime_did(value: datetime) -> None:
    text = instant(value)
    expected = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert _utc_instant(text) == expected
    assert _utc_instant(text).tzinfo is not None


@given(aware(1000))
def test_instants_read_back_in_utc_itself(value: datetime) -> None:
    """The bulk import's UTC columns take the fast path for datetime.UTC's own tzinfo."""
    assert _utc_instant(instant(value)).tzinfo is UTC


ZONES = ("Europe/Oslo", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC")


@given(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2999, 12, 30)),
    st.sampled_from(ZONES),
    st.booleans(),
    st.sampled_from([UTC, timezone(timedelta(hours=2)), None]),
)
def test_placed_times_are_the_wall_clock_round_trip(
    value: datetime, zone_name: str, whole_second: bool, tz: timezone | None
) -> None:
    """validate's shortcut for UTC times (a sync import's) gives the wall clock and instant the
    round trip through the wall clock gave, ambiguous wall clocks (fold 1) included: their
    instant is the one they were read from, as before."""
    zone = ZoneInfo(zone_name)
    if whole_second:
        value = value.replace(microsecond=0)
    value = value.replace(tzinfo=tz)
    local = _local(value, zone)
    assert _placed(value, zone) == (local, local.replace(tzinfo=zone).astimezone(UTC))


def test_placed_keeps_which_of_a_repeated_hour() -> None:
    zone = ZoneInfo("Europe/Oslo")
    for utc, fold in (
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), 0),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), 1),
    ):
        local, instant_ = _placed(utc, zone)
        assert (local, local.fold) == (datetime(2026, 10, 25, 2, 30), fold)
        assert instant_ is utc  # the shortcut: no conversion back
        assert local.replace(tzinfo=zone).astimezone(UTC) == utc
