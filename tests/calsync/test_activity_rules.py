"""Validation of every activity field, without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from calsync.domain.activity import ActivityDraft, ActivityInvalid, Attendee, validate

START, END = datetime(2025, 6, 2, 9), datetime(2025, 6, 2, 10)


def errors(**fields: object) -> list[tuple[str, str]]:
    draft = ActivityDraft(**{"start": START, "end": END, **fields})  # type: ignore[arg-type]
    with pytest.raises(ActivityInvalid) as info:
        validate(draft)
    return [(e.field, e.code) for e in info.value.errors]


def test_minimal_timed_entry_defaults() -> None:
    v = validate(ActivityDraft(start=START, end=END))
    assert v.timing.time_zone == "UTC" and not v.timing.all_day
    assert (v.visibility, v.transparency, v.status) == ("default", "opaque", "confirmed")
    assert v.range_start_utc == START.replace(tzinfo=UTC) and v.range_end_utc == END.replace(
        tzinfo=UTC
    )


def test_aware_times_are_converted_into_the_zone() -> None:
    v = validate(
        ActivityDraft(
            start=datetime(2025, 6, 2, 7, tzinfo=UTC),
            end=datetime(2025, 6, 2, 10, tzinfo=timezone(timedelta(hours=2))),
            time_zone="Europe/Oslo",
        )
    )
    assert (v.timing.start_local, v.timing.end_local) == (
        datetime(2025, 6, 2, 9),
        datetime(2025, 6, 2, 10),
    )
    assert v.timing.start_utc == datetime(2025, 6, 2, 7, tzinfo=UTC)


def test_end_after_start() -> None:
    assert errors(end=START) == [("end", "end_before_start")]
    assert errors(end=START - timedelta(minutes=1)) == [("end", "end_before_start")]


def test_all_day_entries_are_dates_with_exclusive_end() -> None:
    v = validate(
        ActivityDraft(start=date(2025, 6, 2), end=date(2025, 6, 3), time_zone="Pacific/Kiritimati")
    )
    assert v.timing.all_day and v.timing.start_local == datetime(2025, 6, 2)
    assert errors(start=date(2025, 6, 2), end=date(2025, 6, 2)) == [("end", "end_before_start")]
    assert errors(start=date(2025, 6, 2), end=datetime(2025, 6, 3)) == [("start", "date_expected")]
    assert errors(all_day=True) == [("start", "date_expected")]
    assert errors(start=date(2025, 6, 2), end=date(2025, 6, 3), all_day=False) == [
        ("start", "datetime_expected")
    ]


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../etc/passwd", "/etc/localtime", "Europe/Oslo ", "EST5EDTX"]
)
def test_time_zone_must_be_iana(zone: str) -> None:
    assert errors(time_zone=zone) == [("time_zone", "invalid")]


def test_missing_times() -> None:
    draft = ActivityDraft(start=None, end=None)
    with pytest.raises(ActivityInvalid) as info:
        validate(draft)
    assert {e.field for e in info.value.errors} == {"start", "end"}


def test_years_out_of_range() -> None:
    assert errors(start=datetime(1800, 1, 1), end=END) == [("start", "out_of_range")]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("subject", "x" * 1025, "too_long"),
        ("location", "x" * 1025, "too_long"),
        ("description", "ø" * 4097, "too_long"),  # 8,194 bytes in UTF-8
        ("visibility", "secret", "invalid"),
        ("transparency", "see-through", "invalid"),
        ("status", "maybe", "invalid"),
    ],
)
def test_field_limits(field: str, value: str, code: str) -> None:
    assert errors(**{field: value}) == [(field, code)]


def test_sizes_at_the_limit_pass() -> None:
    v = validate(
        ActivityDraft(
            start=START,
            end=END,
            subject="x" * 1024,
            location="y" * 1024,
            description="z" * 8192,
            attendees=[Attendee(f"p{i}@example.com") for i in range(200)],
        )
    )
    assert len(v.attendees) == 200


@pytest.mark.parametrize("value", ["default", "public", "private", "confidential"])
def test_every_visibility(value: str) -> None:
    assert validate(ActivityDraft(start=START, end=END, visibility=value)).visibility == value


def test_attendees() -> None:
    assert errors(attendees=[Attendee(f"p{i}@example.com") for i in range(201)]) == [
        ("attendees", "too_many")
    ]
    assert errors(attendees=[Attendee("not-an-email")]) == [("attendees[0].email", "invalid")]
    assert errors(attendees=[Attendee("a@x.io"), Attendee("A@X.io")]) == [
        ("attendees[1].email", "duplicate")
    ]
    assert errors(attendees=[Attendee("a@x.io", response_status="maybe")]) == [
        ("attendees[0].response_status", "invalid")
    ]
    v = validate(
        ActivityDraft(
            start=START, end=END, attendees=[Attendee(" Bob@Example.COM ", "Bob", "accepted", True)]
        )
    )
    assert v.attendees == (Attendee("bob@example.com", "Bob", "accepted", True),)


def test_recurrence_is_validated_and_normalised() -> None:
    v = validate(
        ActivityDraft(
            start=START, end=END, time_zone="Europe/Oslo", recurrence=["rrule:FREQ=WEEKLY;COUNT=2"]
        )
    )
    assert v.recurrence == ("RRULE:FREQ=WEEKLY;COUNT=2",)
    assert v.range_end_utc == datetime(2025, 6, 9, 8, tzinfo=UTC)
    assert errors(recurrence=["RRULE:FREQ=NEVER"]) == [("recurrence", "invalid")]
    assert errors(recurrence=["EXDATE:2025"]) == [("recurrence", "invalid")]


def test_several_problems_are_reported_together() -> None:
    fields = {f for f, _ in errors(subject="x" * 2000, visibility="nope", end=START)}
    assert fields == {"subject", "visibility", "end"}
