"""Issue 13 items 1 and 6 through the REST API: a recurrence or date Google would refuse gets a
clear 422 and leaves what is stored as it was; a bad rule already in the database (stored
before validation) neither hangs an expanded listing nor hides the rest of it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import update

from calsync.store.models import Activity

from .conftest import World

A = "/api/v1/activities"
WINDOW = {"expand": "true", "from": "2026-03-01T00:00:00Z", "to": "2026-03-08T00:00:00Z"}


async def series(world: World, owner: str, rule: str = "RRULE:FREQ=DAILY") -> dict[str, Any]:
    resp = await world.call(
        "POST",
        A,
        json={
            "owner_id": owner,
            "subject": "Standup",
            "start": "2026-01-05T09:00:00",
            "end": "2026-01-05T09:15:00",
            "time_zone": "Europe/Oslo",
            "recurrence": [rule],
        },
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture
async def owner(world: World) -> str:
    user_id, _ = await world.user(f"owner-{uuid.uuid4().hex[:8]}@example.com")
    return str(user_id)


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("RRULE:FREQ=DAILY;INTERVAL=0", "INTERVAL must be a whole number from 1"),
        ("RRULE:FREQ=DAILY;COUNT=-1", "COUNT must be a whole number from 1"),
        ("RRULE:FREQ=MINUTELY", "FREQ must be one of DAILY, WEEKLY, MONTHLY, YEARLY"),
        (
            "RRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12;BYMINUTE=0,1,2;BYSECOND=0,1",
            "BYHOUR takes one value",
        ),
        ("RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "generates no occurrence within reach"),
    ],
)
async def test_a_rule_google_refuses_is_422_and_the_stored_series_stays(
    world: World, owner: str, rule: str, says: str
) -> None:
    kept = await series(world, owner)
    resp = await world.call("POST", A, json={**_body(owner), "recurrence": [rule]})
    assert resp.status_code == 422, resp.text
    problems = resp.json()["error"]["fields"]
    assert any(p["field"] == "recurrence" and says in p["message"] for p in problems), problems
    resp = await world.call(
        "PATCH", f"{A}/{kept['id']}", headers={"If-Match": '"1"'}, json={"recurrence": [rule]}
    )
    assert resp.status_code == 422, resp.text
    after = (await world.call("GET", f"{A}/{kept['id']}")).json()
    assert after["recurrence"] == ["RRULE:FREQ=DAILY"] and after["version"] == 1


def _body(owner: str) -> dict[str, Any]:
    return {
        "owner_id": owner,
        "subject": "x",
        "start": "2026-01-05T09:00:00",
        "end": "2026-01-05T10:00:00",
        "time_zone": "Europe/Oslo",
    }


@pytest.mark.parametrize("zone", ["localtime", "Factory", "right/UTC", "posix/Europe/Oslo"])
async def test_a_time_zone_that_is_not_canonical_iana_is_422(
    world: World, owner: str, zone: str
) -> None:
    kept = await series(world, owner)
    resp = await world.call("POST", A, json={**_body(owner), "time_zone": zone})
    assert resp.status_code == 422, resp.text
    assert any(p["field"] == "time_zone" for p in resp.json()["error"]["fields"])
    resp = await world.call(
        "PATCH", f"{A}/{kept['id']}", headers={"If-Match": '"1"'}, json={"time_zone": zone}
    )
    assert resp.status_code == 422, resp.text
    after = (await world.call("GET", f"{A}/{kept['id']}")).json()
    assert after["time_zone"] == "Europe/Oslo" and after["version"] == 1


async def test_utc_and_canonical_zones_are_accepted(world: World, owner: str) -> None:
    for zone in ("UTC", "America/Argentina/Buenos_Aires", "Europe/Oslo"):
        resp = await world.call("POST", A, json={**_body(owner), "time_zone": zone})
        assert resp.status_code == 201, (zone, resp.text)


@pytest.mark.parametrize(
    "original", ["9999-12-31T23:00:00", "9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"]
)
async def test_an_exception_far_outside_the_years_is_422_not_500(
    world: World, owner: str, original: str
) -> None:
    master = await series(world, owner)
    resp = await world.call(
        "POST",
        A,
        json={"recurring_parent_id": master["id"], "original_start": original, "subject": "x"},
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["fields"][0]["field"] == "original_start"
    resp = await world.call("GET", A, params={**WINDOW, "owner": owner})
    assert resp.status_code == 200 and len(resp.json()["activities"]) == 7


@pytest.mark.parametrize(
    "rule",
    [
        "RRULE:FREQ=DAILY;INTERVAL=0",
        "RRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23;"
        "BYMINUTE=0,10,20,30,40,50;BYSECOND=0,15,30,45",
        "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "RRULE:FREQ=SECONDLY",
    ],
)
async def test_a_bad_rule_already_stored_is_listed_with_a_problem_not_looped_on(
    world: World, owner: str, rule: str
) -> None:
    good = await series(world, owner)
    bad = await series(world, owner, "RRULE:FREQ=WEEKLY")
    async with world.db.session() as s:  # as if stored before the rules were checked
        await s.execute(
            update(Activity).where(Activity.id == uuid.UUID(bad["id"])).values(recurrence=[rule])
        )
        await s.commit()
    resp = await world.call("GET", A, params={**WINDOW, "owner": owner})
    assert resp.status_code == 200, resp.text
    listed = resp.json()["activities"]
    assert len([a for a in listed if a["recurring_parent_id"] == good["id"]]) == 7
    flagged = [a for a in listed if a["id"] == bad["id"]]
    assert len(flagged) == 1 and "cannot be expanded" in flagged[0]["problem"]
    assert all(a["problem"] is None for a in listed if a["id"] != bad["id"])
    # the stored row is still there, unchanged, for someone to fix
    assert (await world.call("GET", f"{A}/{bad['id']}")).json()["recurrence"] == [rule]


async def test_switching_to_service_account_mode_without_a_key_is_422(world: World) -> None:
    resp = await world.call(
        "PATCH", "/api/v1/tenant/settings", json={"auth_mode": "service_account"}
    )
    assert resp.status_code == 422, resp.text
    problem = resp.json()["error"]["fields"][0]
    assert problem["code"] == "no_service_account_key" and "upload" in problem["message"]
    resp = await world.call("GET", "/api/v1/tenant/settings")
    assert resp.json()["auth_mode"] == "oauth"
