"""The pure sync rules: normalisation, hashes, the three-way merge, matching, ids, decisions."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calsync.domain import fields as f
from calsync.domain.decide import Action, State, decide
from calsync.domain.ids import activity_id_from_event_id, google_event_id, is_valid_client_id
from calsync.domain.matching import match
from calsync.domain.merge import Policy, Side, merge

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=OSLO)
EARLY = datetime(2026, 1, 1, tzinfo=UTC)
LATE = EARLY + timedelta(hours=1)


def entry(
    summary: str = "Demo", start: datetime = T0, minutes: int = 60, **kw: object
) -> f.SyncFields:
    return f.make(
        summary=summary,
        description=kw.get("description"),  # type: ignore[arg-type]
        location=kw.get("location"),  # type: ignore[arg-type]
        start=start,
        end=start + timedelta(minutes=minutes),
        time_zone="Europe/Oslo",
        recurrence=kw.get("recurrence"),  # type: ignore[arg-type]
    )


# -- normalisation and hashes ------------------------------------------------------------------


def test_equal_content_hashes_equal_whatever_the_representation() -> None:
    a = f.make(
        summary="Demo ",
        description="line 1\r\nline 2  ",
        location=None,
        start=T0,
        end=T0 + timedelta(hours=1),
        time_zone="Europe/Oslo",
        visibility=None,
        transparency="opaque",
        recurrence=["RRULE:BYDAY=MO;FREQ=WEEKLY"],
    )
    b = f.make(
        summary="Demo",
        description="line 1\nline 2",
        location="",
        start=T0.astimezone(UTC),
        end=(T0 + timedelta(hours=1)).astimezone(UTC),
        time_zone="Europe/Oslo",
        visibility="default",
        transparency=None,
        recurrence=["rrule:FREQ=WEEKLY;BYDAY=MO"],
    )
    assert a == b
    assert f.content_hash(a) == f.content_hash(b)


def test_any_mapped_change_changes_the_hash() -> None:
    base = entry()
    for other in (
        entry("Other"),
        entry(start=T0 + timedelta(minutes=30)),
        entry(minutes=90),
        entry(location="Oslo"),
        entry(description="x"),
        entry(recurrence=["RRULE:FREQ=DAILY"]),
    ):
        assert f.content_hash(other) != f.content_hash(base)


def test_all_day_entries_stay_dates() -> None:
    v = f.make(
        summary="Holiday",
        description=None,
        location=None,
        start=date(2026, 5, 17),
        end=date(2026, 5, 18),
        time_zone="Pacific/Kiritimati",
    )
    assert (v.start, v.end, v.all_day) == ("2026-05-17", "2026-05-18", True)


def test_mixed_or_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        f.make(
            summary="x",
            description=None,
            location=None,
            start=date(2026, 1, 1),
            end=T0,
            time_zone="UTC",
        )
    with pytest.raises(ValueError, match="aware"):
        f.make(
            summary="x",
            description=None,
            location=None,
            start=datetime(2026, 1, 1),
            end=datetime(2026, 1, 2),
            time_zone="UTC",
        )


@given(st.text(alphabet=st.sampled_from("ab \t\r\n\u2028\x0b\x1c\u00a0é"), max_size=12))
def test_text_normalises_as_line_by_line_did(value: str) -> None:
    """fields.text takes shortcuts for one-line values and values without CR; the text must
    be what normalising every line always gave (hashes stored at earlier syncs depend on it),
    and normalising twice changes nothing (the bulk import relies on that)."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    expected = "\n".join(line.rstrip() for line in lines).strip()
    assert f.text(value) == expected
    assert f.text(f.text(value)) == f.text(value)


@given(
    st.text(max_size=6),
    st.sampled_from(["", "Room é", 'a"b\\']),
    st.booleans(),
    st.lists(st.sampled_from(["RRULE:FREQ=DAILY;COUNT=2", "EXDATE:20260310T080000Z"])),
)
def test_hashes_are_the_sha256_of_sorted_compact_json(
    summary: str, location: str, cancelled: bool, recurrence: list[str]
) -> None:
    """Links store these hashes: however content_hash writes its JSON, it must stay the text
    json.dumps(sort_keys=True, separators=(",", ":")) gave, or every link would look changed."""
    values = entry(summary, location=location, recurrence=recurrence)
    values = dataclasses.replace(values, cancelled=cancelled)
    text = json.dumps(values.to_json(), sort_keys=True, separators=(",", ":"))
    assert f.content_hash(values) == hashlib.sha256(text.encode("utf-8")).hexdigest()


sync_fields = st.builds(
    f.SyncFields,
    summary=st.text(max_size=8),
    description=st.text(max_size=8),
    location=st.sampled_from(["", "Room é", 'a"b\\']),
    start=st.sampled_from(["2026-03-02", "2026-03-02T08:00:00Z"]),
    end=st.sampled_from(["2026-03-03", "2026-03-02T09:00:00Z"]),
    all_day=st.booleans(),
    time_zone=st.sampled_from(["", "Europe/Oslo"]),
    visibility=st.sampled_from(["default", "private"]),
    transparency=st.sampled_from(["opaque", "transparent"]),
    recurrence=st.lists(st.sampled_from(["RRULE:FREQ=DAILY", "EXDATE:20260310T080000Z"])).map(
        tuple
    ),
    cancelled=st.booleans(),
)


@given(sync_fields)
def test_to_json_is_every_field_recurrence_as_a_list_and_cancelled_only_when_set(
    values: f.SyncFields,
) -> None:
    """to_json is spelled out field by field (a first import calls it per event): it must be
    the dataclass's fields as they are, as every stored snapshot and hash has them."""
    expected = dataclasses.asdict(values) | {"recurrence": list(values.recurrence)}
    if not values.cancelled:
        del expected["cancelled"]
    assert values.to_json() == expected
    assert list(values.to_json()) == list(expected)  # the same order too
    assert f.SyncFields.from_json(values.to_json()) == values


@given(st.dictionaries(st.text(max_size=4), st.text(max_size=4) | st.none() | st.booleans()))
def test_canonical_json_and_its_hash_do_not_depend_on_key_order(data: dict[str, object]) -> None:
    reversed_order = dict(reversed(list(data.items())))
    assert f.canonical_json(data) == f.canonical_json(reversed_order)
    assert f.canonical_json(data) == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert f.hash_of(reversed_order) == f.hash_of(data) == f.digest(f.canonical_json(data))
    assert json.loads(f.canonical_json(data)) == data


@given(sync_fields)
def test_content_hash_is_the_hash_of_the_fields_json(values: f.SyncFields) -> None:
    assert f.content_hash(values) == f.hash_of(values.to_json())
    assert f.content_hash(values) == f.digest(f.canonical_json(values.to_json()))


def test_json_round_trip() -> None:
    v = entry(recurrence=["RRULE:FREQ=WEEKLY", "EXDATE;TZID=Europe/Oslo:20260309T090000"])
    assert f.SyncFields.from_json(v.to_json()) == v


# -- three-way merge ---------------------------------------------------------------------------


def test_title_in_crm_and_time_in_google_both_survive() -> None:
    base = entry()
    crm = entry("Renamed")
    google = entry(start=T0 + timedelta(hours=2))
    m = merge(base, crm, google, policy=Policy.LATEST_WINS, crm_updated=EARLY, google_updated=LATE)
    assert m.values.summary == "Renamed"
    assert m.values.start == google.start and m.values.end == google.end
    assert m.to_google == {"summary"} and m.to_crm == {"schedule"}
    assert m.conflicts == ()


@pytest.mark.parametrize(
    ("policy", "crm_updated", "google_updated", "expected"),
    [
        (Policy.LATEST_WINS, LATE, EARLY, Side.CRM),
        (Policy.LATEST_WINS, EARLY, LATE, Side.GOOGLE),
        (Policy.LATEST_WINS, EARLY, EARLY, Side.GOOGLE),
        (Policy.CRM_WINS, EARLY, LATE, Side.CRM),
        (Policy.GOOGLE_WINS, LATE, EARLY, Side.GOOGLE),
    ],
)
def test_both_sides_changed_follows_policy_and_is_recorded(
    policy: Policy, crm_updated: datetime, google_updated: datetime, expected: Side
) -> None:
    base, crm, google = entry(), entry("CRM title"), entry("Google title")
    m = merge(
        base, crm, google, policy=policy, crm_updated=crm_updated, google_updated=google_updated
    )
    assert len(m.conflicts) == 1
    c = m.conflicts[0]
    assert (c.unit, c.winner, c.base, c.crm, c.google) == (
        "summary",
        expected,
        ("Demo",),
        ("CRM title",),
        ("Google title",),
    )
    assert m.values.summary == ("CRM title" if expected is Side.CRM else "Google title")


def test_same_change_on_both_sides_is_no_conflict() -> None:
    m = merge(
        entry(),
        entry("Same"),
        entry("Same"),
        policy=Policy.LATEST_WINS,
        crm_updated=EARLY,
        google_updated=LATE,
    )
    assert (m.to_google, m.to_crm, m.conflicts) == (frozenset(), frozenset(), ())


def test_first_link_without_base_reports_no_conflict() -> None:
    m = merge(
        None,
        entry(description="crm notes"),
        entry(description="google notes"),
        policy=Policy.CRM_WINS,
        crm_updated=EARLY,
        google_updated=LATE,
    )
    assert m.conflicts == () and m.to_google == {"description"}


units = st.sampled_from(sorted(f.UNITS))
summaries = st.sampled_from(["A", "B", "C"])
shifts = st.integers(min_value=0, max_value=3)


@st.composite
def versions(draw: st.DrawFn) -> f.SyncFields:
    return entry(
        draw(summaries),
        start=T0 + timedelta(hours=draw(shifts)),
        location=draw(st.sampled_from(["", "Oslo", "Bergen"])),
    )


@given(
    base=versions(),
    crm=versions(),
    google=versions(),
    policy=st.sampled_from(list(Policy)),
    crm_later=st.booleans(),
)
def test_merge_properties(
    base: f.SyncFields, crm: f.SyncFields, google: f.SyncFields, policy: Policy, crm_later: bool
) -> None:
    m = merge(
        base,
        crm,
        google,
        policy=policy,
        crm_updated=LATE if crm_later else EARLY,
        google_updated=EARLY if crm_later else LATE,
    )
    for name in f.UNITS:
        b, c, g, r = base.unit(name), crm.unit(name), google.unit(name), m.values.unit(name)
        assert r in (c, g)  # never invents a value
        if c == b:
            assert r == g  # an untouched unit takes the other side's edit
        if g == b:
            assert r == c
        # whatever a side lacks of the result is exactly what gets written to it
        assert (name in m.to_google) == (r != g)
        assert (name in m.to_crm) == (r != c)
    conflicted = {c.unit for c in m.conflicts}
    assert conflicted == {
        n for n in f.UNITS if len({base.unit(n), crm.unit(n), google.unit(n)}) == 3
    }


# -- matching ----------------------------------------------------------------------------------


def test_matching_links_equal_entries_once_and_reports_ambiguity() -> None:
    google = [
        ("g1", entry("Demo ")),
        ("g2", entry("Lunch")),
        ("g3", entry("Lunch")),
        ("g4", entry("Only in Google")),
    ]
    crm = [("c1", entry("demo")), ("c2", entry("Lunch")), ("c3", entry("Only in CRM"))]
    result = match(google, crm)
    assert result.pairs == (("g1", "c1"),)
    assert len(result.ambiguous) == 1
    assert result.ambiguous[0].google == ("g2", "g3") and result.ambiguous[0].crm == ("c2",)


def test_matching_compares_time_and_recurrence() -> None:
    result = match(
        [("g", entry(recurrence=["RRULE:FREQ=WEEKLY"]))],
        [("c", entry()), ("d", entry(start=T0 + timedelta(minutes=1)))],
    )
    assert result.pairs == () and result.ambiguous == ()


# -- ids ---------------------------------------------------------------------------------------


@given(st.uuids())
def test_google_ids_are_valid_and_reversible(value: uuid.UUID) -> None:
    event_id = google_event_id(value)
    assert is_valid_client_id(event_id) and len(event_id) == 26
    assert activity_id_from_event_id(event_id) == value
    assert google_event_id(value) == event_id  # deterministic


@given(
    st.text(alphabet="0123456789abcdefghijklmnopqrstuv", min_size=26, max_size=26)
    | st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyzV_-", min_size=24, max_size=28)
)
def test_ids_read_back_as_base64_decodes_them(event_id: str) -> None:
    """activity_id_from_event_id reads the id with int(..., 32): the same UUID as base64's
    base32hex decoder for every id (padding bits set or not), None for the same ones."""
    expected = None
    if len(event_id) == 26 and is_valid_client_id(event_id):
        expected = uuid.UUID(bytes=base64.b32hexdecode(event_id.upper() + "======"))
    assert activity_id_from_event_id(event_id) == expected


BASE32HEX = "0123456789abcdefghijklmnopqrstuv"


@given(
    st.text(alphabet=BASE32HEX, min_size=3, max_size=30)
    | st.text(alphabet=BASE32HEX + "wzAV_-+ \n\t.é", min_size=3, max_size=30)
    | st.text(alphabet=BASE32HEX, min_size=25, max_size=25).map(lambda s: s + "\n")
)
def test_id_checks_accept_exactly_base32hex_characters(event_id: str) -> None:
    """The id checks are patterns: they must accept exactly what a set of the id's characters
    within base32hex accepted — not int()'s extras (upper case, "_", signs, white space) nor a
    final newline."""
    ours = set(event_id) <= set(BASE32HEX)
    assert is_valid_client_id(event_id) == (ours and 5 <= len(event_id) <= 1024)
    expected = None
    if ours and len(event_id) == 26:
        expected = uuid.UUID(bytes=base64.b32hexdecode(event_id.upper() + "======"))
    assert activity_id_from_event_id(event_id) == expected


def test_client_ids_up_to_1024_characters() -> None:
    assert is_valid_client_id("a" * 1024) and not is_valid_client_id("a" * 1025)
    assert not is_valid_client_id("abcd")


def test_foreign_ids_are_not_ours() -> None:
    assert activity_id_from_event_id("4q2hb0hbmmkdl1ofd9n4ngaqjq_20260302T080000Z") is None
    assert activity_id_from_event_id("xyz") is None


# -- decisions ---------------------------------------------------------------------------------


def test_every_state_pair_has_one_action() -> None:
    for crm in State:
        for google in State:
            assert isinstance(decide(crm, google), Action)


def test_an_edit_is_never_lost_to_a_deletion() -> None:
    assert decide(State.DELETED, State.CHANGED) is Action.RESTORE_CRM
    assert decide(State.CHANGED, State.DELETED) is Action.RESTORE_GOOGLE
    assert decide(State.UNCHANGED, State.DELETED) is Action.DELETE_CRM
    assert decide(State.DELETED, State.UNCHANGED) is Action.DELETE_GOOGLE


def test_exceptions_follow_a_moved_series_to_the_same_occurrence() -> None:
    from calsync.domain.recurrence import Series, follow

    monday = datetime(2026, 3, 23, 10, 0)  # the week before the DST change in Oslo

    def weekly(start: datetime, rule: str = "RRULE:FREQ=WEEKLY;COUNT=4") -> Series:
        return Series(False, OSLO, start, start + timedelta(hours=1), (rule,))

    old = weekly(monday)
    second = monday + timedelta(days=7)  # after the change to summer time
    # only the end moved: every occurrence stays where it was
    longer = Series(False, OSLO, monday, monday + timedelta(hours=2), old.recurrence)
    assert follow(old, longer, second) == second
    # Monday 10:00 → Tuesday 11:00: the same occurrence, on the wall clock across DST
    assert follow(old, weekly(monday + timedelta(days=1, hours=1)), second) == datetime(
        2026, 3, 31, 11, 0
    )
    # an UNTIL before it ("this and following" split): the occurrence is gone
    cut = weekly(monday, "RRULE:FREQ=WEEKLY;UNTIL=20260325T000000Z")
    assert follow(old, cut, second) is None
    assert follow(old, cut, monday) == monday
