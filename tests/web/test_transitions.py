"""Changing a setting after the first sync (docs/sync.md, "When you change a setting"), tried
as a user would: the settings API, the CRM's REST API and Google's own API on the emulator.
After every change and sync: one Google copy per CRM entry, one CRM entry per Google event,
nothing lost, no guest e-mail, every run's outcome explained. Each test is one numbered
defect of issue 12 or one transition's rule, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from .conftest import Api

ALICE = "alice@example.com"


class Alice:
    """Alice connected to primary; she owns "CRM" and "Family" calendars."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.user_id = uuid.UUID(int=0)
        self.key = ""
        self.crm = ""
        self.family = ""

    async def connect(self) -> Alice:
        api = self.api
        api.emu.account(ALICE, "Alice")
        self.crm = self._calendar("CRM")
        self.family = self._calendar("Family")
        self.user_id, self.key = await api.user(ALICE)
        await api.connect(self.user_id, ALICE, self.key)
        return self

    def _calendar(self, summary: str) -> str:
        made = self.api.emu.control("POST", f"/accounts/{ALICE}/calendars", {"summary": summary})
        return str(made.json()["id"])

    async def settings(self, **body: Any) -> dict[str, Any]:
        resp = await self.api.call(
            "PATCH", f"/api/v1/users/{self.user_id}/google/settings", self.key, json=body
        )
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        return out

    async def sync(self, rounds: int = 3) -> list[dict[str, Any]]:
        """Sync now (waiting) a few times, so moves, withdrawals and relinks settle; every run
        explained: `partial` or worse only with an error that says why."""
        outcomes = []
        for _ in range(rounds):
            resp = await self.api.sync(self.user_id, self.key)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            for run in body["runs"]:
                assert run["outcome"] in ("ok", "skipped"), run
            outcomes.append(body)
        return outcomes

    async def activity(self, subject: str, days: int = 3, **extra: Any) -> str:
        activity_id = await self.api.activity(self.user_id, subject, days)
        if extra:
            await self.patch(activity_id, **extra)
        return activity_id

    async def patch(self, activity_id: str, **body: Any) -> dict[str, Any]:
        resp = await self.api.call("PATCH", f"/api/v1/activities/{activity_id}", json=body)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        return out

    async def crm_subjects(self) -> Counter[str]:
        return Counter(a["subject"] for a in await self.api.activities(self.user_id))

    async def crm_entry(self, subject: str) -> dict[str, Any]:
        rows = [a for a in await self.api.activities(self.user_id) if a["subject"] == subject]
        assert len(rows) == 1, rows
        return rows[0]

    def google(self, calendar: str = "") -> Counter[str]:
        events = self.api.events(ALICE, calendar or ALICE)
        return Counter(e.get("summary", "") for e in events if e.get("status") != "cancelled")

    def event(self, subject: str, calendar: str = "") -> dict[str, Any]:
        found = [
            e
            for e in self.api.events(ALICE, calendar or ALICE)
            if e.get("summary") == subject and e.get("status") != "cancelled"
        ]
        assert len(found) == 1, found
        return found[0]

    def no_guest_mail(self) -> None:
        sent = self.api.emu.control("GET", "/emails?after=0").json()["items"]
        assert sent == [], sent


async def test_untick_all_then_new_export_calendar_copies_nothing_made_in_google(
    api: Api,
) -> None:
    """Defect 1: Google-made entries of primary were copied into the new "CRM" calendar."""
    alice = await Alice(api).connect()
    made_in_google = [f"Google {n}" for n in range(4)]
    for subject in made_in_google:
        api.insert_event(ALICE, subject)
    await alice.activity("From the CRM")
    await alice.sync()
    assert alice.google() == Counter([*made_in_google, "From the CRM"])

    await alice.settings(import_calendar_ids=[], export_calendar_id=None)
    resp = await api.sync(alice.user_id, alice.key)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "nothing_to_sync"
    await alice.settings(import_calendar_ids=[ALICE, alice.family], export_calendar_id=alice.crm)
    await alice.sync()

    assert alice.google(alice.crm) == Counter(["From the CRM"])
    assert alice.google() == Counter(made_in_google)
    assert await alice.crm_subjects() == Counter([*made_in_google, "From the CRM"])
    alice.no_guest_mail()


async def test_retyped_to_project_task_leaves_google_and_is_never_written_again(
    api: Api,
) -> None:
    """Defect 3: a synced entry made a project task kept sending its title and notes."""
    alice = await Alice(api).connect()
    kept = await alice.activity("Stays a meeting")
    secret = await alice.activity("Pricing talk")
    await alice.sync()
    assert alice.google() == Counter(["Stays a meeting", "Pricing talk"])

    await alice.patch(secret, type="project_task")
    await alice.sync()
    assert alice.google() == Counter(["Stays a meeting"])
    await alice.patch(secret, subject="Pricing talk v2", description="internal: 20 % discount")
    await alice.sync()
    assert alice.google() == Counter(["Stays a meeting"])
    # the CRM keeps the entry as the user left it
    entry = await alice.crm_entry("Pricing talk v2")
    assert entry["type"] == "project_task" and entry["description"] == "internal: 20 % discount"

    # a type that is exported again: back in Google, once
    await alice.patch(secret, type="meeting")
    await alice.sync()
    assert alice.google() == Counter(["Stays a meeting", "Pricing talk v2"])
    assert (await alice.crm_subjects())["Stays a meeting"] == 1
    assert kept


async def test_type_no_longer_exported_leaves_google_and_runs_stay_ok(api: Api) -> None:
    """Defects 3 and 4: after the company stops exporting a type, entries of that type leave
    Google, later CRM edits of them are not written, and every run stays `ok` (nothing is
    deferred for good)."""
    alice = await Alice(api).connect()
    await alice.activity("Client call", type="call")
    await alice.activity("Meeting")
    await alice.sync()
    assert alice.google() == Counter(["Client call", "Meeting"])

    resp = await api.call(
        "PATCH", "/api/v1/tenant/settings", json={"exported_activity_types": ["meeting"]}
    )
    assert resp.status_code == 200, resp.text
    await alice.sync()
    assert alice.google() == Counter(["Meeting"])

    call = await alice.crm_entry("Client call")
    await alice.patch(call["id"], subject="Client call (moved)")
    await alice.activity("Another call", type="call")
    runs = await alice.sync(2)
    assert all(r["outcome"] == "ok" for r in runs)
    assert alice.google() == Counter(["Meeting"])
    assert await alice.crm_subjects() == Counter(["Client call (moved)", "Meeting", "Another call"])


async def test_import_only_calendar_runs_are_ok_not_partial(api: Api) -> None:
    """Defect 4: on an import-only calendar every run after a CRM change was `partial`."""
    alice = await Alice(api).connect()
    await alice.settings(import_calendar_ids=[ALICE], export_calendar_id=None)
    await alice.activity("Only in the CRM")
    runs = await alice.sync(2)
    assert [r["outcome"] for r in runs] == ["ok", "ok"]
    assert alice.google() == Counter()


async def test_private_policy_never_touches_the_crms_own_entries(api: Api) -> None:
    """Defect 7: a private CRM entry became "Busy", was deleted on "skip", and its event was
    deleted on the way back to "import"."""
    alice = await Alice(api).connect()
    mine = await alice.activity("Salary talk", visibility="private")
    api.insert_event(ALICE, "Google private")  # made public below
    await alice.sync()
    event = alice.event("Google private")
    with api.google(ALICE) as g:
        resp = g.patch(f"/calendars/{ALICE}/events/{event['id']}", json={"visibility": "private"})
        assert resp.status_code == 200, resp.text
    await alice.sync()

    for policy in ("busy", "skip", "import"):
        await alice.settings(private_events=policy)
        await alice.sync()
        entry = await alice.crm_entry("Salary talk")
        assert entry["id"] == mine and entry["visibility"] == "private"
        assert alice.google()["Salary talk"] == 1, policy
        subjects = await alice.crm_subjects()
        if policy == "busy":
            assert "Google private" not in subjects and subjects["Busy"] == 1
        elif policy == "skip":
            assert "Google private" not in subjects and "Busy" not in subjects
        else:
            assert subjects["Google private"] == 1 and "Busy" not in subjects
    assert alice.google() == Counter(["Salary talk", "Google private"])


async def test_untick_and_retick_an_import_calendar(api: Api) -> None:
    """Defect 9: unticking an import calendar copied its entries into the export calendar;
    re-ticking it left each entry twice in the CRM. Rule: unticked, its entries stay in the
    CRM (no longer synced), nothing is copied; re-ticked, they are relinked, once."""
    alice = await Alice(api).connect()
    await alice.settings(import_calendar_ids=[ALICE, alice.family], export_calendar_id=ALICE)
    api.insert_event(ALICE, "Family dinner", calendar=alice.family)
    api.insert_event(ALICE, "School play", calendar=alice.family)
    await alice.sync()
    before = await alice.crm_subjects()
    assert before == Counter(["Family dinner", "School play"])
    ids = {a["subject"]: a["id"] for a in await api.activities(alice.user_id)}

    await alice.settings(import_calendar_ids=[ALICE], export_calendar_id=ALICE)
    await alice.sync()
    assert alice.google() == Counter()  # nothing copied into primary
    assert await alice.crm_subjects() == before  # the user's history stays
    status = await api.status(alice.user_id, alice.key)
    family = next(c for c in status["calendars"] if c["id"] == alice.family)
    assert family["import"] is False

    # meanwhile in Google: one more in Family (not synced while unticked); in the CRM: an edit
    api.insert_event(ALICE, "Birthday", calendar=alice.family)
    await alice.patch(ids["School play"], subject="School play (gym)")
    await alice.sync()
    assert alice.google(alice.family) == Counter(["Family dinner", "School play", "Birthday"])
    await alice.settings(import_calendar_ids=[ALICE, alice.family], export_calendar_id=ALICE)
    await alice.sync()
    assert await alice.crm_subjects() == Counter(["Family dinner", "School play (gym)", "Birthday"])
    after = {a["subject"]: a["id"] for a in await api.activities(alice.user_id)}
    assert after["Family dinner"] == ids["Family dinner"]  # relinked, the same activity
    assert after["School play (gym)"] == ids["School play"]
    # the CRM's edit made while unticked went to Google with the re-tick
    assert alice.google(alice.family) == Counter(["Family dinner", "School play (gym)", "Birthday"])
    assert alice.google() == Counter()
    alice.no_guest_mail()


async def test_new_export_calendar_moves_the_crms_entries(api: Api) -> None:
    """Defect 10: after switching the export calendar, entries made before stayed in the old
    one. Rule: CRM-made entries move (events.move: same event, nobody e-mailed); Google-made
    entries of the old calendar stay where they are, imported once."""
    alice = await Alice(api).connect()
    first = await alice.activity("Quarterly review", attendees=[{"email": "customer@example.org"}])
    await alice.activity("Demo", days=5)
    api.insert_event(ALICE, "Dentist")
    await alice.sync()
    moved_event = alice.event("Quarterly review")

    await alice.settings(import_calendar_ids=[ALICE], export_calendar_id=alice.crm)
    await alice.sync()
    assert alice.google(alice.crm) == Counter(["Quarterly review", "Demo"])
    assert alice.google() == Counter(["Dentist"])
    moved = alice.event("Quarterly review", alice.crm)
    assert moved["id"] == moved_event["id"]
    assert [a["email"] for a in moved.get("attendees", [])] == ["customer@example.org"]
    assert await alice.crm_subjects() == Counter(["Quarterly review", "Demo", "Dentist"])

    # the moved entry keeps syncing, in the new calendar
    await alice.patch(first, subject="Quarterly review (room 2)")
    await alice.sync()
    assert alice.google(alice.crm) == Counter(["Quarterly review (room 2)", "Demo"])
    assert alice.google() == Counter(["Dentist"])
    alice.no_guest_mail()


async def test_direction_one_way_and_back_delivers_what_waited(api: Api) -> None:
    """Rule: while one-way, the other side's changes wait; back on two-way they arrive once."""
    alice = await Alice(api).connect()
    crm_made = await alice.activity("Made in the CRM")
    api.insert_event(ALICE, "Made in Google")
    await alice.sync()

    await alice.settings(direction="crm_to_google")
    event = alice.event("Made in Google")
    with api.google(ALICE) as g:
        resp = g.patch(
            f"/calendars/{ALICE}/events/{event['id']}", json={"summary": "Edited in Google"}
        )
        assert resp.status_code == 200, resp.text
    await alice.sync()
    assert "Edited in Google" not in await alice.crm_subjects()

    await alice.settings(direction="google_to_crm")
    await alice.patch(crm_made, subject="Edited in the CRM")
    await alice.sync()
    assert alice.google()["Edited in the CRM"] == 0
    assert (await alice.crm_subjects())["Edited in Google"] == 1

    await alice.settings(direction="two_way")
    await alice.sync()
    assert alice.google() == Counter(["Edited in the CRM", "Edited in Google"])
    assert await alice.crm_subjects() == Counter(["Edited in the CRM", "Edited in Google"])


async def test_sync_off_and_on_delivers_both_sides_once(api: Api) -> None:
    alice = await Alice(api).connect()
    await alice.activity("Before")
    await alice.sync()
    await alice.settings(enabled=False)
    await alice.activity("While off, CRM")
    api.insert_event(ALICE, "While off, Google")
    await alice.settings(enabled=True)
    await alice.sync()
    both = Counter(["Before", "While off, CRM", "While off, Google"])
    assert alice.google() == both
    assert await alice.crm_subjects() == both
