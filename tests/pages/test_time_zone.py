"""The user's time zone: the primary Google calendar's zone by default, chosen in settings,
used by the week grid and every time on the pages; the CRM API keeps zone-aware times."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from calsync.store import users
from calsync.web.pages import calendar
from tests.pages.conftest import Pages

ALICE = "alice@example.com"
OSLO = "Europe/Oslo"
HELSINKI = "Europe/Helsinki"


def _monday(day: date) -> str:
    return (day - timedelta(days=day.weekday())).isoformat()


async def _stored_zone(pages: Pages, email: str) -> str | None:
    async with pages.db.session() as s:
        user = await users.by_email(s, pages.api.world.tenant_id, email)
        assert user is not None
        return user.time_zone


async def _activity(pages: Pages, owner: str, subject: str, start: datetime) -> None:
    resp = await pages.api.call(
        "POST",
        "/api/v1/activities",
        json={
            "owner_id": owner,
            "subject": subject,
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "time_zone": OSLO,
        },
    )
    assert resp.status_code == 201, resp.text
    # the API answers in zone-aware times, as before
    assert resp.json()["start"].endswith(("+01:00", "+02:00")), resp.json()["start"]


async def test_week_view_defaults_to_the_primary_calendars_zone(pages: Pages) -> None:
    pages.api.emu.control("POST", "/accounts", {"email": ALICE, "timeZone": OSLO})
    user_id, _, browser = await pages.person(ALICE)
    before = await browser.get("/calendar")
    assert "(UTC)" not in before.text and "UTC" in before.text  # not connected yet: UTC
    await pages.connect(browser, ALICE)
    # 08:00 UTC in January is 09:00 in Oslo
    start = datetime(2027, 1, 12, 8, 0, tzinfo=UTC)
    await _activity(pages, str(user_id), "Customer call", start)
    page = await browser.get(f"/calendar?week={_monday(start.date())}")
    assert page.status_code == 200
    assert OSLO in page.text and await _stored_zone(pages, ALICE) is None
    entry = re.search(
        r'<li style="grid-column: (\d+); grid-row: (\d+) / span (\d+)[^"]*"', page.text
    )
    assert entry, page.text
    # Tuesday is column 3; 09:00 is row 3 + 4 quarters after the grid's 08:00; one hour = 4 rows
    assert entry.groups() == ("3", "7", "4")
    assert "9:00" in page.text and "8:00 AM–9:00 AM" not in page.text
    # the settings page shows times in Oslo too (the sync history)
    settings = await browser.get("/settings/google")
    assert f"shown in {OSLO}" in settings.text


async def test_user_chooses_a_time_zone_and_bad_input_changes_nothing(pages: Pages) -> None:
    pages.api.emu.control("POST", "/accounts", {"email": ALICE, "timeZone": OSLO})
    user_id, _, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    start = datetime(2027, 1, 12, 8, 0, tzinfo=UTC)
    await _activity(pages, str(user_id), "Customer call", start)
    token = await browser.token("/settings/google")

    bad = await browser.post(
        "/settings/time-zone", {"time_zone": "Mars/Olympus", "next": "/calendar"}, csrf=token
    )
    assert bad.status_code == 422
    assert "Unknown time zone" in bad.text and "Mars/Olympus" in bad.text
    assert await _stored_zone(pages, ALICE) is None

    forged = await browser.post("/settings/time-zone", {"time_zone": HELSINKI}, csrf="x" * 40)
    assert forged.status_code == 403 and await _stored_zone(pages, ALICE) is None

    resp = await browser.post(
        "/settings/time-zone", {"time_zone": HELSINKI, "next": "/calendar"}, csrf=token
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/calendar"
    assert await _stored_zone(pages, ALICE) == HELSINKI
    page = await browser.get(f"/calendar?week={_monday(start.date())}")
    assert f"Times are now shown in {HELSINKI}." in page.text
    assert HELSINKI in page.text and "10:00" in page.text  # 08:00 UTC in Helsinki
    settings = await browser.get("/settings/google")
    assert f"<option selected>{HELSINKI}</option>" in settings.text

    # the API still answers in the activity's own zone
    listed = await pages.api.activities(user_id)
    assert listed[0]["start"].endswith("+01:00")

    back = await browser.post("/settings/time-zone", {"time_zone": ""}, csrf=token)
    assert back.status_code == 303 and await _stored_zone(pages, ALICE) is None
    page = await browser.get(f"/calendar?week={_monday(start.date())}")
    assert OSLO in page.text


def _entry(start: datetime, hours: float) -> calendar.Entry:
    return calendar.Entry(
        subject="x",
        location=None,
        start=start,
        end=start + timedelta(hours=hours),
        all_day=False,
        source="crm",
        private=False,
        recurring=False,
        cancelled=False,
    )


def test_grid_places_entries_in_rows_and_overlaps_side_by_side() -> None:
    zone = ZoneInfo(OSLO)
    day = date(2027, 3, 2)
    at = lambda h, m=0: datetime(2027, 3, 2, h, m, tzinfo=zone)  # noqa: E731
    a, b, c, d = _entry(at(9), 2), _entry(at(10), 1), _entry(at(10, 30), 1), _entry(at(13), 0.5)
    placed = calendar._lanes([calendar._place(e, day, 8) for e in (a, b, c, d)])
    lanes = {p.entry.start.strftime("%H:%M"): (p.row, p.span, p.lane, p.lanes) for p in placed}
    assert lanes == {
        "09:00": (4, 8, 0, 3),
        "10:00": (8, 4, 1, 3),
        "10:30": (10, 4, 2, 3),
        "13:00": (20, 2, 0, 1),
    }
    # past midnight: the part after midnight starts at the top of the next day
    late = _entry(at(23), 2)
    assert calendar._place(late, date(2027, 3, 3), 0).row == 0
    assert calendar._place(late, day, 0).span == 4
    assert calendar._end_hour(late, day) == 24
