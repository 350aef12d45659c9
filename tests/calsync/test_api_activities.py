"""/api/v1/activities: CRUD, validation of every field, If-Match, tombstones, expansion."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .conftest import World

A = "/api/v1/activities"


async def new(world: World, key: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {
        "subject": "Kickoff",
        "start": "2025-06-02T09:00:00",
        "end": "2025-06-02T10:00:00",
        "time_zone": "Europe/Oslo",
        **fields,
    }
    resp = await world.call("POST", A, key, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@pytest.fixture
async def owner(world: World) -> str:
    user_id, _ = await world.user("ann@acme.test")
    return str(user_id)


async def test_create_returns_everything_and_location(world: World, owner: str) -> None:
    resp = await world.call(
        "POST",
        A,
        json={
            "type": "call",
            "owner_id": owner,
            "subject": "Call with Ola",
            "description": "Agenda: ø æ å",
            "location": "Oslo",
            "start": "2025-06-02T09:00:00+02:00",
            "end": "2025-06-02T09:30:00+02:00",
            "time_zone": "Europe/Oslo",
            "visibility": "private",
            "transparency": "transparent",
            "status": "tentative",
            "attendees": [
                {
                    "email": "Ola@Example.com",
                    "display_name": "Ola",
                    "response_status": "accepted",
                    "optional": True,
                }
            ],
        },
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert resp.headers["Location"] == f"{A}/{body['id']}"
    assert resp.headers["ETag"] == '"1"'
    assert body | {"id": None, "created_at": None, "updated_at": None} == {
        "id": None,
        "type": "call",
        "owner_id": owner,
        "subject": "Call with Ola",
        "description": "Agenda: ø æ å",
        "location": "Oslo",
        "all_day": False,
        "time_zone": "Europe/Oslo",
        "start": "2025-06-02T09:00:00+02:00",
        "end": "2025-06-02T09:30:00+02:00",
        "visibility": "private",
        "transparency": "transparent",
        "status": "tentative",
        "attendees": [
            {
                "email": "ola@example.com",
                "display_name": "Ola",
                "response_status": "accepted",
                "optional": True,
            }
        ],
        "recurrence": None,
        "recurring_parent_id": None,
        "original_start": None,
        "organizer_email": None,
        "occurrence": False,
        "read_only": None,
        "problem": None,
        "version": 1,
        "created_at": None,
        "updated_at": None,
        "deleted_at": None,
    }
    got = await world.call("GET", f"{A}/{body['id']}")
    assert got.status_code == 200 and got.json() == body


async def test_utc_input_is_shown_in_the_entry_zone(world: World, owner: str) -> None:
    body = await new(
        world,
        owner_id=owner,
        start="2025-01-15T08:00:00Z",
        end="2025-01-15T09:00:00Z",
        time_zone="America/New_York",
    )
    assert (body["start"], body["end"]) == (
        "2025-01-15T03:00:00-05:00",
        "2025-01-15T04:00:00-05:00",
    )


async def test_all_day_entries_are_dates_and_never_shift(world: World, owner: str) -> None:
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Oslo", "America/New_York"):
        body = await new(
            world, owner_id=owner, start="2025-03-30", end="2025-03-31", time_zone=zone
        )
        assert (body["all_day"], body["start"], body["end"]) == (True, "2025-03-30", "2025-03-31")
        listed = await world.call(
            "GET",
            A,
            params={"from": "2025-03-30T00:00:00Z", "to": "2025-03-31T00:00:00Z", "expand": "true"},
        )
        assert listed.status_code == 200
        patched = await world.call("PATCH", f"{A}/{body['id']}", json={"subject": "moved?"})
        assert (patched.json()["start"], patched.json()["end"]) == ("2025-03-30", "2025-03-31")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"end": "2025-06-02T09:00:00"}, "end"),
        ({"end": "2025-06-02T08:00:00"}, "end"),
        ({"start": "2025-06-02", "end": "2025-06-02"}, "end"),
        ({"start": "2025-06-02", "end": "2025-06-03T00:00:00"}, "start"),
        ({"all_day": True}, "start"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": ""}, "time_zone"),
        ({"subject": "x" * 1025}, "subject"),
        ({"location": "x" * 1025}, "location"),
        ({"description": "x" * 8193}, "description"),
        ({"visibility": "secret"}, "visibility"),
        ({"transparency": "clear"}, "transparency"),
        ({"status": "maybe"}, "status"),
        ({"attendees": [{"email": f"p{i}@x.io"} for i in range(201)]}, "attendees"),
        ({"attendees": [{"email": "nope"}]}, "attendees.0.email"),
        (
            {"attendees": [{"email": "a@x.io", "response_status": "maybe"}]},
            "attendees.0.response_status",
        ),
        ({"recurrence": ["RRULE:FREQ=FORTNIGHTLY"]}, "recurrence"),
        ({"recurrence": ["EXDATE:yesterday"]}, "recurrence"),
        ({"type": "no_such_type"}, "type"),
        ({"type": "Not A Key"}, "type"),
        ({"start": "not a time"}, "start"),
        ({"start": "1066-10-14T09:00:00"}, "start"),
        ({"subject": "nul\u0000byte"}, "subject"),
        ({"colour": "red"}, "colour"),
        ({"original_start": "2025-06-02T09:00:00"}, None),
    ],
)
async def test_invalid_fields_answer_422_naming_the_field(
    world: World, owner: str, fields: dict[str, Any], field: str | None
) -> None:
    body = {
        "owner_id": owner,
        "subject": "x",
        "start": "2025-06-02T09:00:00",
        "end": "2025-06-02T10:00:00",
        **fields,
    }
    resp = await world.call("POST", A, json=body)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] and error["message"] and error["remedy"]
    if field is not None:
        assert field in {f["field"] for f in error["fields"]}, error


async def test_limits_are_inclusive(world: World, owner: str) -> None:
    body = await new(
        world,
        owner_id=owner,
        subject="s" * 1024,
        location="l" * 1024,
        description="d" * 8192,
        attendees=[{"email": f"p{i}@x.io"} for i in range(200)],
    )
    assert len(body["attendees"]) == 200 and len(body["subject"]) == 1024


async def test_admin_must_name_an_owner_of_its_tenant(world: World, other_world: World) -> None:
    resp = await world.call(
        "POST", A, json={"start": "2025-06-02T09:00:00", "end": "2025-06-02T10:00:00"}
    )
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "owner_required"
    stranger, _ = await other_world.user("eve@evil.test")
    resp = await world.call(
        "POST",
        A,
        json={
            "owner_id": str(stranger),
            "start": "2025-06-02T09:00:00",
            "end": "2025-06-02T10:00:00",
        },
    )
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_owner"


async def test_patch_changes_only_what_is_sent(world: World, owner: str) -> None:
    body = await new(world, owner_id=owner, description="keep me", location="Room 1")
    resp = await world.call(
        "PATCH", f"{A}/{body['id']}", json={"subject": "Renamed", "location": None}
    )
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    assert patched["subject"] == "Renamed" and patched["location"] is None
    assert patched["description"] == "keep me" and patched["start"] == body["start"]
    assert patched["version"] == 2 and resp.headers["ETag"] == '"2"'
    # change the time zone: the wall clock stays, the instant moves
    moved = (
        await world.call("PATCH", f"{A}/{body['id']}", json={"time_zone": "America/New_York"})
    ).json()
    assert moved["start"] == "2025-06-02T09:00:00-04:00"
    # switch to all-day by sending dates
    all_day = (
        await world.call(
            "PATCH", f"{A}/{body['id']}", json={"start": "2025-06-03", "end": "2025-06-04"}
        )
    ).json()
    assert all_day["all_day"] is True and all_day["start"] == "2025-06-03"
    for bad in (
        {"subject": None},
        {"start": None},
        {"end": "2025-06-01"},
        {"type": "nope"},
        {"visibility": "x"},
    ):
        resp = await world.call("PATCH", f"{A}/{body['id']}", json=bad)
        assert resp.status_code == 422, (bad, resp.text)


async def test_patch_attendees_and_type(world: World, owner: str) -> None:
    body = await new(world, owner_id=owner, attendees=[{"email": "a@x.io"}, {"email": "b@x.io"}])
    resp = await world.call(
        "PATCH",
        f"{A}/{body['id']}",
        json={
            "type": "personal",
            "attendees": [{"email": "b@x.io", "response_status": "declined"}, {"email": "c@x.io"}],
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "personal"
    assert [(a["email"], a["response_status"]) for a in resp.json()["attendees"]] == [
        ("b@x.io", "declined"),
        ("c@x.io", "needsAction"),
    ]


async def test_if_match(world: World, owner: str) -> None:
    body = await new(world, owner_id=owner)
    url = f"{A}/{body['id']}"
    ok = await world.call("PATCH", url, json={"subject": "v2"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = await world.call("PATCH", url, json={"subject": "lost"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "version_mismatch" and stale.json()["error"]["remedy"]
    for form in ("{}", 'W/"{}"', "*"):
        version = (await world.call("GET", url)).json()["version"]
        header = form.format(version)
        resp = await world.call(
            "PATCH", url, json={"subject": f"with {header}"}, headers={"If-Match": header}
        )
        assert resp.status_code == 200, header
    current = (await world.call("GET", url)).json()["version"]
    assert (
        await world.call("PATCH", url, json={"subject": "x"}, headers={"If-Match": "garbage"})
    ).status_code == 412
    assert (
        await world.call("DELETE", url, headers={"If-Match": str(current - 1)})
    ).status_code == 412
    assert (await world.call("GET", url)).json()["subject"] != "lost"
    assert (await world.call("DELETE", url, headers={"If-Match": str(current)})).status_code == 204


async def test_soft_delete_leaves_a_tombstone(world: World, owner: str) -> None:
    body = await new(world, owner_id=owner)
    url = f"{A}/{body['id']}"
    assert (await world.call("DELETE", url)).status_code == 204
    tomb = (await world.call("GET", url)).json()
    assert tomb["deleted_at"] is not None and tomb["version"] == 2
    assert (await world.call("PATCH", url, json={"subject": "zombie"})).status_code == 410
    assert (await world.call("DELETE", url)).status_code == 204  # idempotent
    listed = (await world.call("GET", A)).json()["activities"]
    assert body["id"] not in {a["id"] for a in listed}
    with_deleted = (await world.call("GET", A, params={"include_deleted": "true"})).json()[
        "activities"
    ]
    assert body["id"] in {a["id"] for a in with_deleted}


async def test_unknown_and_malformed_ids_are_404(world: World) -> None:
    for ident in (str(uuid.uuid4()), "not-a-uuid", "123"):
        resp = await world.call("GET", f"{A}/{ident}")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


async def test_list_filters(world: World, owner: str) -> None:
    other, _ = await world.user("bob@acme.test")
    a = await new(
        world,
        owner_id=owner,
        type="call",
        time_zone="UTC",
        start="2025-06-02T09:00:00",
        end="2025-06-02T10:00:00",
    )
    b = await new(
        world,
        owner_id=str(other),
        type="meeting",
        time_zone="UTC",
        start="2025-06-03T09:00:00",
        end="2025-06-03T10:00:00",
    )
    c = await new(
        world,
        owner_id=owner,
        type="meeting",
        time_zone="UTC",
        start="2025-07-01T09:00:00",
        end="2025-07-01T10:00:00",
    )

    async def ids(**params: str) -> list[str]:
        resp = await world.call("GET", A, params=params)
        assert resp.status_code == 200, resp.text
        return [x["id"] for x in resp.json()["activities"]]

    assert await ids() == [a["id"], b["id"], c["id"]]
    assert await ids(owner=owner) == [a["id"], c["id"]]
    assert await ids(type="meeting") == [b["id"], c["id"]]
    assert await ids(**{"from": "2025-06-02T08:00:00Z", "to": "2025-06-30T00:00:00Z"}) == [
        a["id"],
        b["id"],
    ]
    assert await ids(**{"from": "2025-06-02T09:30:00Z"}) == [a["id"], b["id"], c["id"]]  # overlaps
    assert await ids(**{"from": "2025-06-02T10:00:00Z"}) == [b["id"], c["id"]]  # a ends then
    assert await ids(**{"to": "2025-06-03T09:00:00Z"}) == [a["id"]]  # b starts then
    assert await ids(
        **{"from": "2025-06-02T11:00:00+02:00", "to": "2025-06-02T11:30:00+02:00"}
    ) == [a["id"]]
    assert await ids(limit="1", offset="1") == [b["id"]]
    bad = await world.call(
        "GET", A, params={"from": "2025-06-02T00:00:00Z", "to": "2025-06-01T00:00:00Z"}
    )
    assert bad.status_code == 422


async def series_and_list(
    world: World, owner: str, zone: str, frm: str, to: str, **fields: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    master = await new(world, owner_id=owner, time_zone=zone, **fields)
    resp = await world.call("GET", A, params={"from": frm, "to": to, "expand": "true"})
    assert resp.status_code == 200, resp.text
    return master, resp.json()["activities"]


async def test_expand_weekly_across_dst_in_oslo(world: World, owner: str) -> None:
    master, items = await series_and_list(
        world,
        owner,
        "Europe/Oslo",
        "2025-03-20T00:00:00Z",
        "2025-04-10T00:00:00Z",
        start="2025-03-24T09:00:00",
        end="2025-03-24T10:00:00",
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=10"],
    )
    assert [i["start"] for i in items] == [
        "2025-03-24T09:00:00+01:00",
        "2025-03-31T09:00:00+02:00",
        "2025-04-07T09:00:00+02:00",
    ]
    assert all(i["occurrence"] and i["recurring_parent_id"] == master["id"] for i in items)
    assert [i["id"] for i in items] == [
        f"{master['id']}_20250324T080000Z",
        f"{master['id']}_20250331T070000Z",
        f"{master['id']}_20250407T070000Z",
    ]
    assert items[1]["original_start"] == "2025-03-31T09:00:00+02:00"


async def test_expand_across_dst_in_new_york(world: World, owner: str) -> None:
    _, items = await series_and_list(
        world,
        owner,
        "America/New_York",
        "2025-10-25T00:00:00Z",
        "2025-11-12T00:00:00Z",
        start="2025-10-27T17:30:00",
        end="2025-10-27T18:00:00",
        recurrence=["RRULE:FREQ=WEEKLY"],
    )
    assert [i["start"] for i in items] == [
        "2025-10-27T17:30:00-04:00",
        "2025-11-03T17:30:00-05:00",
        "2025-11-10T17:30:00-05:00",
    ]


async def test_expand_all_day_series_keeps_dates(world: World, owner: str) -> None:
    _, items = await series_and_list(
        world,
        owner,
        "Pacific/Auckland",
        "2025-04-01T00:00:00Z",
        "2025-04-20T00:00:00Z",
        start="2025-04-03",
        end="2025-04-04",
        recurrence=["RRULE:FREQ=WEEKLY;BYDAY=TH"],
    )
    assert [(i["start"], i["end"]) for i in items] == [
        ("2025-04-03", "2025-04-04"),
        ("2025-04-10", "2025-04-11"),
        ("2025-04-17", "2025-04-18"),
    ]
    assert items[0]["id"].endswith("_20250403")


async def test_exceptions_move_and_cancel_occurrences(world: World, owner: str) -> None:
    master = await new(
        world,
        owner_id=owner,
        subject="Standup",
        start="2025-01-06T09:00:00",
        end="2025-01-06T09:15:00",
        recurrence=["RRULE:FREQ=DAILY;COUNT=5"],
    )
    moved = await world.call(
        "POST",
        A,
        json={
            "recurring_parent_id": master["id"],
            "original_start": "2025-01-07T09:00:00",
            "start": "2025-01-07T13:00:00",
            "end": "2025-01-07T13:15:00",
            "subject": "Standup (late)",
        },
    )
    assert moved.status_code == 201, moved.text
    assert (
        moved.json()["owner_id"] == owner
        and moved.json()["original_start"] == "2025-01-07T09:00:00+01:00"
    )
    cancelled = await world.call(
        "POST",
        A,
        json={
            "recurring_parent_id": master["id"],
            "original_start": "2025-01-08T09:00:00+01:00",
            "status": "cancelled",
        },
    )
    assert cancelled.status_code == 201, cancelled.text
    assert cancelled.json()["start"] == "2025-01-08T09:00:00+01:00"  # copied from the occurrence
    again = await world.call(
        "POST",
        A,
        json={
            "recurring_parent_id": master["id"],
            "original_start": "2025-01-08T09:00:00",
            "status": "cancelled",
        },
    )
    assert again.status_code == 409
    not_one = await world.call(
        "POST",
        A,
        json={
            "recurring_parent_id": master["id"],
            "original_start": "2025-01-08T10:00:00",
            "status": "cancelled",
        },
    )
    assert not_one.status_code == 422
    items = (
        await world.call(
            "GET",
            A,
            params={"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z", "expand": "true"},
        )
    ).json()["activities"]
    assert [(i["subject"], i["start"]) for i in items] == [
        ("Standup", "2025-01-06T09:00:00+01:00"),
        ("Standup (late)", "2025-01-07T13:00:00+01:00"),
        ("Standup", "2025-01-09T09:00:00+01:00"),
        ("Standup", "2025-01-10T09:00:00+01:00"),
    ]
    assert items[1]["id"] == moved.json()["id"] and not items[1]["occurrence"]
    # patching the exception keeps it tied to its occurrence
    patched = await world.call(
        "PATCH",
        f"{A}/{moved.json()['id']}",
        json={"start": "2025-01-07T14:00:00", "end": "2025-01-07T14:15:00"},
    )
    assert patched.status_code == 200, patched.text
    # deleting the series tombstones its exceptions too
    assert (await world.call("DELETE", f"{A}/{master['id']}")).status_code == 204
    assert (await world.call("GET", f"{A}/{moved.json()['id']}")).json()["deleted_at"] is not None
    left = (
        await world.call(
            "GET",
            A,
            params={"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z", "expand": "true"},
        )
    ).json()
    assert left["activities"] == []


async def test_expand_needs_a_range_and_a_sane_one(world: World, owner: str) -> None:
    assert (await world.call("GET", A, params={"expand": "true"})).status_code == 422
    await new(
        world,
        owner_id=owner,
        start="2025-01-06T09:00:00",
        end="2025-01-06T09:15:00",
        recurrence=["RRULE:FREQ=DAILY"],
    )
    resp = await world.call(
        "GET",
        A,
        params={"from": "2025-01-01T00:00:00Z", "to": "2045-01-01T00:00:00Z", "expand": "true"},
    )
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "range_too_large"


async def test_deleting_an_exception_cancels_its_occurrence(world: World, owner: str) -> None:
    """As deleting an instance does in Google: the occurrence is gone at once, it does not
    come back at the series' time (with or without a Google connection)."""
    master = await new(
        world,
        owner_id=owner,
        subject="Standup",
        start="2025-01-06T09:00:00",
        end="2025-01-06T09:15:00",
        recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
    )
    moved = await world.call(
        "POST",
        A,
        json={
            "recurring_parent_id": master["id"],
            "original_start": "2025-01-07T09:00:00",
            "start": "2025-01-07T13:00:00",
            "end": "2025-01-07T13:15:00",
            "subject": "Standup (late)",
        },
    )
    assert moved.status_code == 201, moved.text
    gone = await world.call("DELETE", f"{A}/{moved.json()['id']}")
    assert gone.status_code == 204, gone.text
    week = {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}
    items = (await world.call("GET", A, params={**week, "expand": "true"})).json()["activities"]
    assert [i["start"] for i in items] == [
        "2025-01-06T09:00:00+01:00",
        "2025-01-08T09:00:00+01:00",
    ]
    # a cancelled exception holds the occurrence, at the series' time
    rows = (await world.call("GET", A, params=week)).json()["activities"]
    (cancelled,) = [r for r in rows if r["recurring_parent_id"] == master["id"]]
    assert cancelled["status"] == "cancelled" and cancelled["subject"] == "Standup (late)"
    assert cancelled["original_start"] == cancelled["start"] == "2025-01-07T09:00:00+01:00"
    assert (await world.call("GET", f"{A}/{moved.json()['id']}")).json()["deleted_at"]

    # deleting the cancellation changes nothing: the occurrence stays cancelled (PATCH its
    # status to confirmed to bring it back)
    again = await world.call("DELETE", f"{A}/{cancelled['id']}")
    assert again.status_code == 204
    still = (await world.call("GET", f"{A}/{cancelled['id']}")).json()
    assert still["deleted_at"] is None and still["status"] == "cancelled"
    back = await world.call("PATCH", f"{A}/{cancelled['id']}", json={"status": "confirmed"})
    assert back.status_code == 200, back.text
    items = (await world.call("GET", A, params={**week, "expand": "true"})).json()["activities"]
    assert len(items) == 3


async def test_an_exception_the_series_no_longer_has_leaves_no_cancellation(
    world: World, owner: str
) -> None:
    master = await new(
        world,
        owner_id=owner,
        subject="Standup",
        start="2025-01-06T09:00:00",
        end="2025-01-06T09:15:00",
        recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
    )
    moved = await world.call(
        "POST",
        A,
        json={
            "recurring_parent_id": master["id"],
            "original_start": "2025-01-08T09:00:00",
            "subject": "Last one",
        },
    )
    assert moved.status_code == 201, moved.text
    shorter = await world.call(
        "PATCH", f"{A}/{master['id']}", json={"recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]}
    )
    assert shorter.status_code == 200, shorter.text
    # the series lost that occurrence: its exception went with it, and no cancellation remains
    live = await world.call("GET", f"{A}/{moved.json()['id']}")
    assert live.json()["deleted_at"] is not None
    assert (await world.call("DELETE", f"{A}/{moved.json()['id']}")).status_code == 204
    rows = (
        await world.call(
            "GET", A, params={"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}
        )
    ).json()["activities"]
    assert [r for r in rows if r["recurring_parent_id"] == master["id"]] == []
