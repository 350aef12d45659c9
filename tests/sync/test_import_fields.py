"""The bulk import's shortcuts compute what the full path computes: the CRM side's canonical
fields of a new activity (one `make` per event instead of two)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import assume, given
from hypothesis import strategies as st

from calsync.domain.activity import ActivityInvalid, validate
from calsync.domain.fields import SyncFields, content_hash, make
from calsync.sync import mapping

ZONES = ("UTC", "Europe/Oslo", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
TEXTS = st.none() | st.text(alphabet=st.sampled_from("ab \t\r\n\u2028é"), max_size=8)
RECURRENCE = st.sampled_from(
    [None, [], ["RRULE:FREQ=WEEKLY;COUNT=3"], ["rrule:count=2;freq=daily", "EXDATE:20300101"]]
)


@st.composite
def google_fields(draw: st.DrawFn) -> SyncFields:
    """Canonical fields of a Google event: timed in a zone (DST gaps and folds included, to
    the microsecond) or all-day, any texts, visibility, transparency and recurrence."""
    zone = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        day = draw(st.dates(date(1899, 12, 25), date(3000, 1, 5)))
        start: date | datetime = day
        end: date | datetime = day + timedelta(days=draw(st.integers(-1, 3)))
        zone = ""
    else:
        local = draw(st.datetimes(datetime(1899, 12, 31), datetime(3000, 1, 1)))
        at = local.replace(tzinfo=ZoneInfo(zone), fold=draw(st.integers(0, 1)))
        start = at
        end = at + timedelta(minutes=draw(st.integers(-30, 24 * 60)))
        if draw(st.booleans()):
            start, end = start.astimezone(UTC), end.astimezone(UTC)
    return make(
        summary=draw(TEXTS),
        description=draw(TEXTS),
        location=draw(TEXTS),
        start=start,
        end=end,
        time_zone=zone,
        visibility=draw(st.sampled_from([None, "default", "public", "private", "secret"])),
        transparency=draw(st.sampled_from([None, "opaque", "transparent", "clear"])),
        recurrence=draw(RECURRENCE),
    )


@given(google_fields(), st.sampled_from((None, *ZONES)))
def test_imported_fields_are_the_stored_activitys(g: SyncFields, calendar_zone: str | None) -> None:
    try:
        values = validate(mapping.draft(g, None, calendar_zone))
    except (ActivityInvalid, ValueError):
        assume(False)
        return
    full = mapping.values_fields(values)
    assert mapping.imported_fields(g, values) == full
    assert content_hash(mapping.imported_fields(g, values)) == content_hash(full)


def test_what_validation_changes_comes_from_the_validated_values() -> None:
    """A series' UNTIL is stored as validation normalised it (UTC for timed series, a date for
    all-day ones): the CRM side's fields are then not Google's, and the shortcut sees it."""
    oslo = ZoneInfo("Europe/Oslo")
    timed = make(
        summary="Stand-up",
        description=None,
        location=None,
        start=datetime(2030, 1, 1, 9, tzinfo=oslo),
        end=datetime(2030, 1, 1, 9, 15, tzinfo=oslo),
        time_zone="Europe/Oslo",
        recurrence=["RRULE:FREQ=DAILY;UNTIL=20300105"],
    )
    all_day = make(
        summary="Leave",
        description=None,
        location=None,
        start=date(2030, 1, 1),
        end=date(2030, 1, 2),
        time_zone="",
        recurrence=["RRULE:FREQ=DAILY;UNTIL=20300105T120000Z"],
    )
    for g in (timed, all_day):
        values = validate(mapping.draft(g, None, "Europe/Oslo"))
        full = mapping.values_fields(values)
        assert full.recurrence != g.recurrence
        assert mapping.imported_fields(g, values) == full
