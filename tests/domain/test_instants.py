"""The canonical instant text is what every link's hash is made of: the fast formatting and
parsing the bulk import uses must give exactly the text and values strftime/strptime did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

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
