"""Reconnecting with a different Google account (issue 12 item 8, DESIGN rule 10): the old
account's links are dropped, nothing imported from the old account is written into the new one,
the CRM keeps everything, and the page says what happened."""

from __future__ import annotations

import html
import uuid
from collections import Counter

from sqlalchemy import select

from calsync.jobs.port import Reason
from calsync.store import activities, connections
from calsync.store.models import Activity, CalendarBinding, EventLink
from tests.web.test_connect_starts_sync import Recorder

from .conftest import Pages

ALICE = "alice@example.com"
PAGE = "/settings/google"
CRM_MADE = ["Customer meeting", "Quarterly review"]


async def test_reconnect_as_another_account_exports_only_the_crms_own_entries(
    pages: Pages,
) -> None:
    personal = f"alice-{uuid.uuid4().hex[:6]}@example.com"  # account A: the first one
    work = ALICE  # account B: the one she switches to
    pages.api.emu.account(personal)
    pages.api.emu.account(work)
    await pages.api.account_policy(domains=["example.com"])
    user_id, key, browser = await pages.person(ALICE)

    # connected to A and synced: the dentist comes in from Google, the CRM's entries go out
    await pages.connect(browser, personal)
    pages.api.insert_event(personal, "Private dentist")
    for subject in CRM_MADE:
        await pages.api.activity(user_id, subject)
    first = (await pages.api.sync(user_id, key)).json()
    assert first["outcome"] == "ok", first
    assert sorted(e["summary"] for e in pages.api.events(personal)) == sorted(
        ["Private dentist", *CRM_MADE]
    )
    crm = {a["subject"]: a for a in await pages.api.activities(user_id)}
    assert sorted(crm) == sorted(["Private dentist", *CRM_MADE])
    async with pages.db.session() as s:
        dentist = await s.get(Activity, uuid.UUID(crm["Private dentist"]["id"]))
        assert dentist is not None
        source = activities.source_of(dentist)
        assert source is not None and source.account == personal
        conn = await connections.for_user(s, user_id)
        assert conn is not None
        old_bindings = [
            b.id
            for b in await s.scalars(
                select(CalendarBinding).where(CalendarBinding.connection_id == conn.id)
            )
        ]
        await s.commit()

    def live_channels(account: str) -> list[str]:
        items = pages.api.emu.control("GET", "/channels").json()["items"]
        return [c["kind"] for c in items if c["account"] == account and not c["stopped"]]

    # the calendar's two channels (the first and its twin) and the calendar list's
    assert sorted(live_channels(personal)) == ["calendarList", "events", "events"]

    # reconnect as B from the settings page: told what happened
    await pages.connect(browser, work)
    page = html.unescape((await browser.get(PAGE)).text)
    assert f"Google Calendar is now connected to {work}." in page
    assert f"This is a different Google account than before ({personal})" in page
    assert f"never copied to {work}" in page
    status = await pages.api.status(user_id, key)
    assert status["google_email"] == work
    assert status["import_calendar_ids"] == [work] and status["export_calendar_id"] == work
    # A's push channels are stopped and calsync's grant there revoked; B's are made
    assert live_channels(personal) == []
    revoked = pages.api.emu.control("POST", f"/accounts/{personal}/revoke-grants").json()
    assert revoked["revoked_grants"] == 0
    assert sorted(live_channels(work)) == ["calendarList", "events", "events"]
    # the old account's links are gone with its calendars
    async with pages.db.session() as s:
        left = await s.scalars(select(EventLink).where(EventLink.binding_id.in_(old_bindings)))
        assert list(left) == []
        await s.commit()

    # the sync into B: exactly the CRM's own entries, once; never the dentist
    for _ in range(2):  # and again: nothing doubles
        result = (await pages.api.sync(user_id, key)).json()
        assert result["outcome"] == "ok", result
        in_b = Counter(e["summary"] for e in pages.api.events(work))
        assert in_b == Counter(CRM_MADE), in_b
    # the CRM keeps the dentist (and everything else), once each
    subjects = Counter(a["subject"] for a in await pages.api.activities(user_id))
    assert subjects == Counter(["Private dentist", *CRM_MADE])
    # A is left as it was: calsync no longer writes there
    assert sorted(e["summary"] for e in pages.api.events(personal)) == sorted(
        ["Private dentist", *CRM_MADE]
    )


async def test_the_pages_queue_a_sync_on_connect_and_on_save(pages: Pages) -> None:
    """Issue 12.5 through the settings page: Connect and Save with calendars use the app's
    runner, like Sync now."""
    jobs = Recorder()
    pages.api.app.state.jobs = jobs
    pages.api.emu.account(ALICE)
    _, _, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    asked = jobs.take()
    assert [reason for _, reason in asked] == [Reason.INITIAL]
    resp = await browser.post(
        PAGE,
        {"enabled": "on", "calendars": "shown", "import": [ALICE], "export": ALICE},
        csrf=await browser.token(PAGE),
    )
    assert resp.status_code == 303
    assert jobs.take() == asked
