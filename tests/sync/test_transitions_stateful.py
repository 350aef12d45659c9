"""Settings changed between edits and syncs (issue 12): a hypothesis state machine that does
what a user does — through calsync's REST API (activities, Settings → Google Calendar, tenant
settings, Sync now, connect and disconnect) and, as the person, through Google's own client
against the emulator — and, between CRM edits, Google edits, syncs and injected faults, changes:

- the calendar that receives CRM entries (the export calendar; also to an import calendar, and
  to none), which calendars are ticked (also none at all), direction (two-way, CRM → Google,
  Google → CRM), sync on/off;
- which activity types are exported, and an activity's type (also to the project-task type);
- the private-appointments policy (import / busy / skip);
- the connection: disconnect, reconnect the same account, connect another account.

The account has three calendars: primary (P), "CRM" (C) and "Family" (F); a second account
(bob) has its primary only.

After each sync to quiescence (Sync now until a run changes nothing, at most `ROUNDS` runs;
the faults are cleared first) these rules hold (`TransitionMachine.check`):

1. **No guest e-mail**: the emulator sent nobody an invitation, update or cancellation (CRM
   entries carry a guest, so any write without sendUpdates=none would mail them).
2. **Nothing lost**: an entry made in the CRM is live in the CRM unless the user deleted it in
   the CRM or deleted its Google copy; an event made in Google is live in its calendar unless
   the person deleted it, or the user deleted its CRM entry (a ticked calendar, import-only
   too, carries its entries' CRM deletes to Google).
   No setting change, disconnect or account change deletes anything on either side.
3. **Google-made events are never copied**: every event in any calendar of either account is
   either one the person made there, or a copy calsync wrote (tagged) of an entry made in
   the CRM — never a copy of an entry imported from Google (defects 1, 8, 9).
4. **One Google copy per CRM entry**, counted over the connected account's calendars that
   calsync has had a binding for (also under an earlier connection of the same account): at
   most one, always. When CRM entries reach Google (connected, sync on, an export calendar,
   direction not Google → CRM): a live entry of an
   exported type has exactly one copy, in the export calendar, with the entry's title
   (defect 10); an entry of a type not exported (or a project task) and an entry deleted in
   the CRM have none (defect 3 — the rule chosen: an entry that stops being exported is
   withdrawn from Google).
5. **One CRM entry per Google event** of a ticked calendar that flows into the CRM (sync on,
   direction not CRM → Google): exactly one live CRM entry linked to it, and no second live
   entry with its title or linked to it by another calendar (defect 9) — none when it is
   private and the policy is "skip"; at most one when the user deleted its CRM entry (the
   event stays until its calendar's sync carries the delete). On a calendar synced both
   ways, the entry has the event's title ("Busy" for a private event under "busy") — unless
   it is detached (an imported entry made a project task: neither side is written).
6. **The private policy is only about entries from Google** (defect 7): an entry made in the
   CRM is never renamed "Busy" nor deleted by a policy change.
7. **Every run's outcome is explained**: `partial` only with an issue counted, `failed` (and
   every other unsuccessful outcome) only with an error; a fault-free Sync now ends `ok` or
   `partial`.

Rules chosen where the issue leaves a choice (asserted as such):

- A calendar unticked keeps its entries in the CRM (history); re-ticked, it relinks them — no
  duplicate. A Google-made entry deleted in the CRM while its calendar was unticked is
  deleted in Google when the calendar is ticked again, and not brought back into the CRM
  (docs/sync.md, "Tick it again"; `test_defect_9_entry_deleted_in_crm_while_unticked`).
- An entry whose type stops being exported is withdrawn from Google (rule 4), even when the
  export calendar changed at the same time.
- After a change of Google account, calendars of the previous account are no longer counted
  for rule 4 (calsync cannot write there); rules 2 and 3 still cover them. Coming back to an
  account used before counts its calendars again: "written to the new account once"
  (docs/sync.md) means one copy in that account, not one more.

Examples: `CALSYNC_TRANSITIONS_EXAMPLES` (default 10) of `CALSYNC_TRANSITIONS_STEPS` steps
(default 10), derandomized and without an example database, so CI runs the same examples every
time; SQLite only (the named scenarios below run on PostgreSQL too). Failures are not shrunk
unless `CALSYNC_TRANSITIONS_SHRINK=1` (shrinking takes minutes). An example costs about
2.5 s of CPU (a tenant, an OAuth connect, a first sync, ~10 steps with 2–3 Sync now runs per
settle), and the scenarios about 3 s each: with 10 examples the file stays near a minute.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from sqlalchemy import select

from calsync.domain.ids import google_event_id
from calsync.google import errors as google_errors
from calsync.google.calendar import CalendarClient
from calsync.google.models import Event
from calsync.store import activities, bindings, connections, crypto
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import Activity, CalendarBinding, EventLink
from calsync.store.statuses import BindingRole
from calsync.sync import engine, mapping
from calsync.sync.google_services import GoogleServices
from tests.calsync.conftest import World, make_world
from tests.calsync.google.conftest import ControlTokens
from tests.conftest import Emulator
from tests.web.conftest import Api, build_app, register_client, settings_for

from .conftest import ZONE, at, emulator_settings, retry_policy

T = TypeVar("T")
EXAMPLES = int(os.environ.get("CALSYNC_TRANSITIONS_EXAMPLES", "10"))
STEPS = int(os.environ.get("CALSYNC_TRANSITIONS_STEPS", "10"))
# shrinking a failure can take hypothesis's full five minutes here (every step syncs): on for a
# hunt (CALSYNC_TRANSITIONS_SHRINK=1), off by default so a failing run fails fast
SHRINK = os.environ.get("CALSYNC_TRANSITIONS_SHRINK") == "1"
ROUNDS = 6  # Sync now runs to reach quiescence
GUEST = "guest@example.org"
TYPES = ("meeting", "call", "task", "project_task")
EXPORTABLE = ("meeting", "call", "task")
DIRECTIONS = ("two_way", "crm_to_google", "google_to_crm")
POLICIES = ("import", "busy", "skip")
CALENDARS = ("P", "C", "F")
FAULTS = ("503", "503x9", "429")
PULLS = ("two_way", "google_to_crm")
PUSHES = ("two_way", "crm_to_google")

GKey = tuple[str, str, str]  # (account, calendar id, event id)


class TransitionMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    emulator: Emulator
    db: Database
    keyring: crypto.Keyring
    app: FastAPI  # one app for all examples: each example is a tenant of its own
    client: httpx.AsyncClient

    def __init__(self) -> None:
        super().__init__()
        self.serial = 0
        self.api: Api | None = None
        self.people: dict[str, CalendarClient] = {}
        self.cals: dict[str, dict[str, str]] = {}
        # the model: what the user did
        self.crm_made: dict[str, dict[str, Any]] = {}  # activity id -> type, private, gone
        self.google_made: dict[GKey, dict[str, Any]] = {}  # -> private, gone, crm_deleted
        self.account: str | None = None  # the connected account, None while disconnected
        self.known: dict[str, set[str]] = {}  # calendars calsync has bound, per account

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    # -- set-up -----------------------------------------------------------------------------

    @initialize()
    def setup(self) -> None:
        self.emulator.control("POST", "/reset")
        register_client(self.emulator)
        tag = uuid.uuid4().hex[:8]
        self.alice, self.bob = f"alice-{tag}@example.com", f"bob-{tag}@example.com"
        self.emulator.account(self.alice, "Alice")
        self.emulator.account(self.bob, "Bob")
        crm = self._add_calendar(self.alice, "CRM")
        family = self._add_calendar(self.alice, "Family")
        self.cals = {
            self.alice: {"P": self.alice, "C": crm, "F": family},
            self.bob: {"P": self.bob},
        }
        person_settings = emulator_settings(self.emulator)
        for email in (self.alice, self.bob):
            self.people[email] = CalendarClient(
                ControlTokens(self.emulator, email),
                settings=person_settings,
                retry=retry_policy(),
                rate_limiter=None,
            )
        world: World = self.run(make_world(self.db, self.client))
        self.api = Api(world, self.app, self.emulator)
        self.user_id, self.key = self.run(world.user(self.alice))
        # both accounts are the company's (the default policy: own e-mail or company domain)
        self.run(self.api.account_policy(domains=[self.alice.split("@")[1]]))
        self.connect_account(0)
        # a synced start: entries on both sides
        self.crm_create(0, False, True, 1, 9)
        self.crm_create(1, True, False, 2, 10)
        self.google_create(0, False, 1, 12)
        self.google_create(2, True, 2, 14)
        # one Sync now (no confirming round: the first settle of the steps confirms it)
        assert self.sync_now().json()["outcome"] == "ok"
        self.check()

    def _add_calendar(self, email: str, summary: str) -> str:
        resp = self.emulator.control(
            "POST", f"/accounts/{email}/calendars", {"summary": summary, "timeZone": ZONE}
        )
        return str(resp.json()["id"])

    def teardown(self) -> None:
        if self.api is None:
            return
        try:
            self.emulator.control("DELETE", "/faults")
            self.settle()
        finally:
            self.run(self._close())

    async def _close(self) -> None:
        for person in self.people.values():
            await person.aclose()

    # -- REST helpers -----------------------------------------------------------------------

    def call(self, method: str, path: str, *, admin: bool = False, **kw: Any) -> httpx.Response:
        assert self.api is not None
        key = None if admin else self.key
        return self.run(self.api.call(method, path, key, **kw))

    def expect_refusal(self, resp: httpx.Response) -> None:
        """A refused request says why: 4xx with a code and a message."""
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
        error = resp.json()["error"]
        assert error["code"] and error["message"], resp.text

    def patch_settings(self, **body: Any) -> httpx.Response:
        resp = self.call("PATCH", f"/api/v1/users/{self.user_id}/google/settings", json=body)
        if resp.status_code != 200:
            self.expect_refusal(resp)
        return resp

    def status(self) -> dict[str, Any]:
        resp = self.call("GET", f"/api/v1/users/{self.user_id}/google")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def tenant_settings(self) -> dict[str, Any]:
        resp = self.call("GET", "/api/v1/tenant/settings", admin=True)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def _title(self, side: str) -> str:
        self.serial += 1
        return f"{side}{self.serial} {('alpha', 'beta', 'gamma')[self.serial % 3]}"

    # -- the CRM ------------------------------------------------------------------------------

    @rule(
        type_=st.integers(0, 3),
        private=st.booleans(),
        guest=st.booleans(),
        day=st.integers(1, 3),
        hour=st.integers(8, 16),
    )
    def crm_create(self, type_: int, private: bool, guest: bool, day: int, hour: int) -> None:
        start = at(day, hour).replace(tzinfo=ZoneInfo(ZONE))
        body = {
            "owner_id": str(self.user_id),
            "type": TYPES[type_],
            "subject": self._title("C"),
            "description": "internal notes",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "time_zone": ZONE,
            "visibility": "private" if private else "default",
            "attendees": [{"email": GUEST}] if guest else [],
        }
        resp = self.call("POST", "/api/v1/activities", json=body)
        assert resp.status_code == 201, resp.text
        aid = resp.json()["id"]
        self.crm_made[aid] = {"private": private, "gone": False}

    def _live(self) -> list[Activity]:
        async def load() -> list[Activity]:
            async with self.db.session() as s:
                rows = await activities.list_(
                    s, self.tenant_id, owner_id=self.user_id, limit=10_000
                )
            return list(rows)

        return self.run(load())

    @property
    def tenant_id(self) -> uuid.UUID:
        assert self.api is not None
        return self.api.world.tenant_id

    def _pick_activity(self, pick: int) -> Activity | None:
        live = sorted(self._live(), key=lambda a: (a.created_at, str(a.id)))
        live = [a for a in live if a.recurring_parent_id is None]
        return live[pick % len(live)] if live else None

    @rule(pick=st.integers(0, 50))
    def crm_edit(self, pick: int) -> None:
        activity = self._pick_activity(pick)
        if activity is None:
            return
        resp = self.call(
            "PATCH", f"/api/v1/activities/{activity.id}", json={"subject": self._title("C")}
        )
        if resp.status_code != 200:
            self.expect_refusal(resp)  # a read-only entry (busy block, someone else's)

    @rule(pick=st.integers(0, 50), type_=st.integers(0, 3))
    def crm_change_type(self, pick: int, type_: int) -> None:
        activity = self._pick_activity(pick)
        if activity is None:
            return
        resp = self.call("PATCH", f"/api/v1/activities/{activity.id}", json={"type": TYPES[type_]})
        if resp.status_code != 200:
            self.expect_refusal(resp)

    @rule(pick=st.integers(0, 50))
    def crm_delete(self, pick: int) -> None:
        activity = self._pick_activity(pick)
        if activity is None:
            return
        resp = self.call("DELETE", f"/api/v1/activities/{activity.id}")
        if resp.status_code != 204:
            self.expect_refusal(resp)
            return
        aid = str(activity.id)
        if aid in self.crm_made:
            self.crm_made[aid]["gone"] = True
            return
        for key in self._google_keys_of(activity.id):
            self.google_made[key]["crm_deleted"] = True

    def _google_keys_of(self, activity_id: uuid.UUID) -> list[GKey]:
        """The Google-made events an imported activity is linked to (any binding, any state)."""

        async def load() -> set[tuple[str, str]]:
            async with self.db.session() as s:
                rows = (
                    await s.execute(
                        select(CalendarBinding.google_calendar_id, EventLink.google_event_id)
                        .join(CalendarBinding, CalendarBinding.id == EventLink.binding_id)
                        .where(EventLink.activity_id == activity_id)
                    )
                ).all()
            return {(r[0], r[1]) for r in rows}

        linked = self.run(load())
        return [key for key in self.google_made if (key[1], key[2]) in linked]

    # -- Google, as the person -------------------------------------------------------------

    def _person_account(self) -> str:
        return self.account or self.alice

    @rule(
        cal=st.integers(0, 2), private=st.booleans(), day=st.integers(1, 3), hour=st.integers(8, 16)
    )
    def google_create(self, cal: int, private: bool, day: int, hour: int) -> None:
        account = self._person_account()
        calendars = self.cals[account]
        calendar_id = (
            calendars[CALENDARS[cal % len(calendars)]]
            if account == self.alice
            else (calendars["P"])
        )
        start = at(day, hour)
        body: dict[str, Any] = {
            "summary": self._title("G"),
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        }
        if private:
            body["visibility"] = "private"
        event = self.run(self.people[account].insert_event(calendar_id, body))
        key = (account, calendar_id, event.id or "")
        self.google_made[key] = {"private": private, "gone": False, "crm_deleted": False}

    def _google_events(self, account: str) -> list[tuple[str, Event]]:
        async def load() -> list[tuple[str, Event]]:
            out: list[tuple[str, Event]] = []
            for calendar_id in self.cals[account].values():
                async for page in self.people[account].list_events(calendar_id):
                    out.extend((calendar_id, e) for e in page.items if not e.cancelled)
            return out

        return self.run(load())

    def _pick_event(self, pick: int) -> tuple[str, Event] | None:
        events = sorted(
            self._google_events(self._person_account()), key=lambda ce: (ce[0], ce[1].id or "")
        )
        events = [ce for ce in events if not ce[1].recurring_event_id]
        return events[pick % len(events)] if events else None

    @rule(pick=st.integers(0, 50))
    def google_edit(self, pick: int) -> None:
        chosen = self._pick_event(pick)
        if chosen is None:
            return
        calendar_id, event = chosen
        account = self._person_account()
        self.run(
            self.people[account].patch_event(
                calendar_id, event.id or "", {"summary": self._title("G")}
            )
        )

    @rule(pick=st.integers(0, 50))
    def google_delete(self, pick: int) -> None:
        chosen = self._pick_event(pick)
        if chosen is None:
            return
        calendar_id, event = chosen
        account = self._person_account()
        try:
            self.run(self.people[account].delete_event(calendar_id, event.id or ""))
        except google_errors.Deleted:
            return
        key = (account, calendar_id, event.id or "")
        if key in self.google_made:
            self.google_made[key]["gone"] = True
        tagged = mapping.tagged_activity_id(event, self.tenant_id)
        if tagged is not None and str(tagged) in self.crm_made:
            self.crm_made[str(tagged)]["google_deleted"] = True

    # -- the transitions (Settings → Google Calendar, tenant settings) ---------------------

    @rule(imports=st.integers(0, 7), export=st.integers(0, 3))
    def choose_calendars(self, imports: int, export: int) -> None:
        """Tick calendars (a bit mask over P, C, F; 0 unticks all) and choose the export
        calendar (none, P, C, F) — Save in Settings → Google Calendar."""
        account = self._person_account()
        calendars = self.cals[account]
        ids = [calendars[n] for i, n in enumerate(CALENDARS) if imports >> i & 1 and n in calendars]
        export_id = None if export == 0 else calendars.get(CALENDARS[export - 1])
        resp = self.patch_settings(import_calendar_ids=ids, export_calendar_id=export_id)
        if self.account is None:
            assert resp.status_code == 409, resp.text  # not connected: refused, nothing changes
            return
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert sorted(body["import_calendar_ids"]) == sorted(ids), body
        assert body["export_calendar_id"] == export_id, body
        self.known.setdefault(account, set()).update(ids + ([export_id] if export_id else []))

    @rule(direction=st.integers(0, 2))
    def set_direction(self, direction: int) -> None:
        resp = self.patch_settings(direction=DIRECTIONS[direction])
        assert resp.status_code == 200, resp.text

    @rule(enabled=st.booleans())
    def set_enabled(self, enabled: bool) -> None:
        resp = self.patch_settings(enabled=enabled)
        assert resp.status_code == 200, resp.text

    @rule(policy=st.integers(0, 2))
    def set_private_policy(self, policy: int) -> None:
        resp = self.patch_settings(private_events=POLICIES[policy])
        assert resp.status_code == 200, resp.text

    @rule(types=st.integers(0, 7))
    def set_exported_types(self, types: int) -> None:
        chosen = [t for i, t in enumerate(EXPORTABLE) if types >> i & 1]
        resp = self.call(
            "PATCH", "/api/v1/tenant/settings", admin=True, json={"exported_activity_types": chosen}
        )
        assert resp.status_code == 200, resp.text

    @rule()
    def disconnect(self) -> None:
        resp = self.call("DELETE", f"/api/v1/users/{self.user_id}/google")
        assert resp.status_code == 200, resp.text
        self.account = None

    @rule(which=st.integers(0, 1))
    def connect_account(self, which: int) -> None:
        """Connect (or reconnect) Alice's account, or Bob's instead."""
        assert self.api is not None
        account = (self.alice, self.bob)[which]
        self.run(self.api.connect(self.user_id, account, self.key))
        body = self.status()
        assert body["google_email"] == account, body
        self.account = account
        self.known.setdefault(account, set())
        self.known[account] |= set(body["import_calendar_ids"])
        if body["export_calendar_id"]:
            self.known[account].add(body["export_calendar_id"])

    # -- syncing ------------------------------------------------------------------------------

    def sync_now(self) -> httpx.Response:
        resp = self.call("POST", f"/api/v1/users/{self.user_id}/google/sync", json={"wait": True})
        if resp.status_code != 200:
            self.expect_refusal(resp)  # not connected, or nothing switched on
            return resp
        body = resp.json()
        for run in body["runs"]:
            self._explained(run)
        return resp

    def _explained(self, run: dict[str, Any]) -> None:
        outcome = run["outcome"]
        if outcome == "partial":
            assert run["counts"]["issues"] > 0, ("partial without an issue", run)
        elif outcome not in ("ok", "skipped"):
            assert run["error"] is not None, (f"{outcome} without an error", run)

    @rule(fault=st.sampled_from(FAULTS))
    def sync_with_fault(self, fault: str) -> None:
        path = "^/(calendar|batch)/"
        if fault == "503":
            body: dict[str, Any] = {"path_regex": path, "status": 503, "count": 1}
        elif fault == "503x9":
            body = {"path_regex": path, "status": 503, "count": 9}
        else:
            body = {"path_regex": path, "status": 429, "count": 2, "retry_after": 0}
        self.emulator.control("POST", "/faults", body)
        try:
            self.sync_now()
        finally:
            self.emulator.control("DELETE", "/faults")

    @rule()
    def settle(self) -> None:
        """Sync now until a run changes nothing, then check every rule."""
        for _ in range(ROUNDS):
            resp = self.sync_now()
            if resp.status_code != 200:
                break
            body = resp.json()
            assert body["outcome"] in ("ok", "partial"), ("fault-free Sync now", body)
            counts = {k: v for k, v in body["counts"].items() if k not in ("linked", "issues")}
            if not any(counts.values()):
                break
        else:
            raise AssertionError(f"no quiescence after {ROUNDS} runs: {body['counts']}")
        self.check()

    # -- the rules ------------------------------------------------------------------------

    def check(self) -> None:
        assert self.api is not None
        # 1. no guest e-mail
        emails = self.emulator.control("GET", "/emails?after=0").json()["items"]
        assert emails == [], ("guest e-mailed", emails)
        # 7. every run explained
        resp = self.call("GET", f"/api/v1/users/{self.user_id}/google/runs?limit=500")
        assert resp.status_code == 200, resp.text
        for run in resp.json()["runs"]:
            self._explained(run)
        live = {str(a.id): a for a in self._live()}
        # Bob's calendar can only hold what the person or calsync put there once connected
        events = {acc: self._google_events(acc) if acc in self.known else [] for acc in self.cals}
        # 2. nothing lost
        for aid, info in self.crm_made.items():
            if not info["gone"] and not info.get("google_deleted"):
                assert aid in live, ("CRM entry lost", aid, info)
                # 6. the private policy never touches the CRM's own entries
                assert live[aid].subject != "Busy", ("CRM entry made a busy block", aid)
        alive = {(acc, cal, e.id or "") for acc, items in events.items() for cal, e in items}
        for key, ginfo in self.google_made.items():
            if not ginfo["gone"] and not ginfo["crm_deleted"]:
                assert key in alive, ("Google event lost", key, ginfo)
        # 3. Google-made events are never copied
        sources = self._sources()
        for acc, items in events.items():
            for cal, event in items:
                tagged = mapping.tagged_activity_id(event, self.tenant_id)
                if tagged is None:
                    assert (acc, cal, event.id) in self.google_made, (
                        "an event nobody made",
                        acc,
                        cal,
                        event.summary,
                    )
                else:
                    assert sources.get(str(tagged)) == "crm", (
                        "a Google-made entry copied to Google",
                        acc,
                        cal,
                        event.summary,
                        sources.get(str(tagged)),
                    )
        if self.account is None:
            return
        status = self.status()
        tenant = self.tenant_settings()
        exported = set(tenant["exported_activity_types"]) - {"project_task"}
        account = self.account
        bound = self._bindings()
        known = self.known[account] | {b.google_calendar_id for b in bound}
        export_id = status["export_calendar_id"]
        on = status["enabled"]
        pushes = on and export_id is not None and status["direction"] in PUSHES
        # 4. one Google copy per CRM entry
        copies: dict[str, list[tuple[str, Event]]] = {}
        for cal, event in events[account]:
            tagged = mapping.tagged_activity_id(event, self.tenant_id)
            if tagged is not None and cal in known:
                copies.setdefault(str(tagged), []).append((cal, event))
        for aid, found in copies.items():
            assert len(found) <= 1, ("two Google copies", aid, [(c, e.summary) for c, e in found])
        if pushes:
            for aid, info in self.crm_made.items():
                found = copies.get(aid, [])
                activity = live.get(aid)
                if activity is None or activity.type_key not in exported:
                    assert not found, (
                        "a copy of an entry deleted or not exported",
                        aid,
                        activity.type_key if activity else "deleted",
                        [(c, e.summary) for c, e in found],
                    )
                elif not info.get("google_deleted"):
                    assert len(found) == 1, ("CRM entry not in Google", aid, activity.subject)
                    cal, event = found[0]
                    assert cal == export_id, ("copy outside the export calendar", aid, cal)
                    # CRM → Google only: a Google edit of the copy waits for a direction that
                    # pulls (docs/sync.md, Direction) — the CRM's title or a Google edit's
                    waiting = status["direction"] == "crm_to_google" and (
                        event.summary or ""
                    ).startswith("G")
                    assert event.summary == activity.subject or waiting, (
                        aid,
                        event.summary,
                        activity.subject,
                    )
        # 5. one CRM entry per Google event of a ticked calendar that flows into the CRM
        pulls = on and status["direction"] in PULLS
        policy = status["private_events"]
        links, detached = self._links()
        by_title: dict[str, int] = {}
        for a in live.values():
            by_title[a.subject] = by_title.get(a.subject, 0) + 1
        for b in bound:
            if not pulls or b.role not in (BindingRole.IMPORT, BindingRole.BOTH):
                continue
            for cal, event in events[account]:
                key = (account, cal, event.id or "")
                if cal != b.google_calendar_id or key not in self.google_made:
                    continue
                ginfo = self.google_made[key]
                mine = [
                    aid
                    for (bid, eid), aid in links.items()
                    if eid == event.id and aid in live and bid == b.id
                ]
                elsewhere = [
                    aid
                    for (bid, eid), aid in links.items()
                    if eid == event.id and aid in live and bid != b.id
                ]
                private = event.visibility == "private"
                if private and policy == "skip":
                    assert not mine, ("a skipped private event in the CRM", event.summary)
                    continue
                if ginfo["crm_deleted"]:
                    assert len(mine) <= 1, ("Google event twice in the CRM", event.summary)
                else:
                    assert len(mine) == 1, ("Google event not once in the CRM", event.summary, mine)
                assert not elsewhere, ("Google event linked twice", event.summary, elsewhere)
                if event.summary and not (private and policy == "busy"):
                    assert by_title.get(event.summary, 0) <= 1, (
                        "Google event twice in the CRM (by title)",
                        event.summary,
                    )
                both_ways = b.role == BindingRole.BOTH and status["direction"] == "two_way"
                if mine and both_ways and mine[0] not in detached:
                    expected = "Busy" if private and policy == "busy" else event.summary
                    assert live[mine[0]].subject == expected, (
                        "CRM entry differs from its event",
                        live[mine[0]].subject,
                        event.summary,
                    )

    def _sources(self) -> dict[str, str]:
        async def load() -> dict[str, str]:
            async with self.db.session() as s:
                rows = (
                    await s.execute(
                        select(Activity.id, Activity.source).where(
                            Activity.tenant_id == self.tenant_id
                        )
                    )
                ).all()
            return {str(r[0]): r[1] for r in rows}

        return self.run(load())

    def _bindings(self) -> list[CalendarBinding]:
        async def load() -> list[CalendarBinding]:
            async with self.db.session() as s:
                conn = await connections.for_user(s, self.user_id)
                assert conn is not None
                return list(await bindings.for_connection(s, conn.id))

        return self.run(load())

    def _links(self) -> tuple[dict[tuple[uuid.UUID, str], str], set[str]]:
        """(binding, event id) → activity id of every link, and the detached activities."""
        bound = [b.id for b in self._bindings()]

        async def load() -> tuple[dict[tuple[uuid.UUID, str], str], set[str]]:
            async with self.db.session() as s:
                rows = (
                    await s.scalars(select(EventLink).where(EventLink.binding_id.in_(bound)))
                ).all()
            return {
                (r.binding_id, r.google_event_id): str(r.activity_id)
                for r in rows
                if r.activity_id is not None
            }, {str(r.activity_id) for r in rows if r.state == "detached"}

        return self.run(load())


def _migrated(url: str) -> None:
    async def migrate() -> None:
        db = Database(url, pooled=False)
        await upgrade(db)
        await db.dispose()

    asyncio.run(migrate())


@pytest.fixture
def transitions_db(tmp_path_factory: pytest.TempPathFactory, keyring: crypto.Keyring) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('transitions') / 'calsync.db'}"
    _migrated(url)
    return url


@contextmanager
def _bound(emulator: Emulator, url: str, keyring: crypto.Keyring) -> Iterator[None]:
    """The machine's loop, database and calsync app (one for all examples)."""
    loop = asyncio.new_event_loop()
    crypto.install(keyring)
    db = Database(url)
    app = build_app(settings_for(emulator), db, keyring)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calsync.test"
    )
    machine = TransitionMachine
    machine.loop, machine.emulator, machine.db = loop, emulator, db
    machine.keyring, machine.app, machine.client = keyring, app, client
    try:
        yield
    finally:
        services: GoogleServices = app.state.google
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(services.aclose())
        loop.run_until_complete(db.dispose())
        loop.close()


@pytest.mark.slow
@pytest.mark.timeout(max(900, 30 * EXAMPLES))  # a long run (1,000 examples) gets its time
def test_transitions_keep_one_copy_and_lose_nothing(
    emulator: Emulator, transitions_db: str, keyring: crypto.Keyring
) -> None:
    with _bound(emulator, transitions_db, keyring):
        machine = settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            phases=list(Phase) if SHRINK else [p for p in Phase if p is not Phase.shrink],
            report_multiple_bugs=SHRINK,
            suppress_health_check=list(HealthCheck),
        )(TransitionMachine)
        machine.TestCase().runTest()


# -- the numbered defects of issue 12, each walked once (SQLite and PostgreSQL) ----------------


@pytest.fixture
def scene(emulator: Emulator, db_url: str, keyring: crypto.Keyring) -> Iterator[TransitionMachine]:
    """A connected user (primary calendar, both ways) with two CRM entries (one private, one
    with a guest) and two Google entries (one private, in Family — not yet ticked), synced."""
    with _bound(emulator, db_url, keyring):
        machine = TransitionMachine()
        try:
            machine.setup()
            yield machine
        finally:
            machine.run(machine._close())


def _crm_copies(m: TransitionMachine, aid: str) -> list[tuple[str, str | None]]:
    """Where the CRM entry has a copy in Alice's calendars: (calendar, title)."""
    return [
        (cal, e.summary)
        for cal, e in m._google_events(m.alice)
        if str(mapping.tagged_activity_id(e, m.tenant_id)) == aid
    ]


def _first_crm(m: TransitionMachine) -> str:
    return next(iter(m.crm_made))


def _index(m: TransitionMachine, activity_id: object) -> int:
    """The `pick` that chooses this activity in the CRM rules."""
    live = sorted(m._live(), key=lambda a: (a.created_at, str(a.id)))
    return [str(a.id) for a in live if a.recurring_parent_id is None].index(str(activity_id))


def test_defect_1_untick_all_then_new_export_calendar_copies_nothing(
    scene: TransitionMachine,
) -> None:
    """Untick every calendar, Save; tick primary + Family with "CRM" receiving CRM entries,
    Save: the events made in Google stay where they are, once."""
    m = scene
    m.google_create(0, False, 3, 9)  # in primary
    m.settle()
    m.choose_calendars(0, 0)
    m.settle()
    m.choose_calendars(0b101, 2)
    m.settle()
    crm_calendar = m.cals[m.alice]["C"]
    titles = [e.summary for cal, e in m._google_events(m.alice) if cal == crm_calendar]
    assert all(t and t.startswith("C") for t in titles), titles  # CRM entries only


def test_defect_3_type_changed_to_project_task_or_not_exported_leaves_google(
    scene: TransitionMachine,
) -> None:
    m = scene
    first = _first_crm(m)  # a meeting with a guest, in primary
    assert len(_crm_copies(m, first)) == 1
    m.crm_change_type(0, TYPES.index("project_task"))
    m.settle()
    assert _crm_copies(m, first) == []
    m.crm_create(1, False, False, 2, 11)  # a call
    call = list(m.crm_made)[-1]
    m.settle()
    assert len(_crm_copies(m, call)) == 1
    m.set_exported_types(0b001)  # meetings only
    m.settle()
    assert _crm_copies(m, call) == []
    m.crm_edit(_index(m, call))  # edited after it stopped being exported
    m.settle()
    assert _crm_copies(m, call) == []


def test_defect_7_private_policy_never_touches_crm_entries(scene: TransitionMachine) -> None:
    m = scene
    private = list(m.crm_made)[1]  # a private call made in the CRM
    assert len(_crm_copies(m, private)) == 1
    for policy in ("busy", "skip", "import"):
        m.set_private_policy(POLICIES.index(policy))
        m.settle()
        copies = _crm_copies(m, private)
        assert len(copies) == 1 and copies[0][1] != "Busy", (policy, copies)


def test_defect_8_other_account_gets_no_google_made_entries(scene: TransitionMachine) -> None:
    """Disconnect, connect another account (the machine also connects one directly)."""
    m = scene
    m.google_create(0, True, 1, 8)  # "Private dentist", in Alice's primary
    m.settle()
    m.disconnect()
    m.connect_account(1)
    m.settle()
    bob = [e.summary for _, e in m._google_events(m.bob)]
    assert all(t and t.startswith("C") for t in bob), bob
    m.connect_account(0)  # and back: Alice's entries once, Bob's not in Alice's calendars
    m.settle()


def test_defect_9_untick_and_retick_copies_nothing_and_relinks(scene: TransitionMachine) -> None:
    m = scene
    m.choose_calendars(0b101, 2)  # import primary + Family, CRM entries to "CRM"
    m.google_create(2, False, 2, 15)  # in Family
    m.settle()
    m.choose_calendars(0b001, 2)  # untick Family
    m.settle()
    m.crm_edit(0)
    m.settle()
    m.choose_calendars(0b101, 2)  # tick it again
    m.settle()
    family = m.cals[m.alice]["F"]
    before = len(m._live())
    m.settle()
    assert len(m._live()) == before
    tagged = [e.summary for cal, e in m._google_events(m.alice) if cal == family]
    assert all(t and t.startswith("G") for t in tagged), tagged


def test_defect_10_new_export_calendar_moves_crm_entries(scene: TransitionMachine) -> None:
    m = scene
    made = list(m.crm_made)
    m.choose_calendars(0b001, 2)  # primary stays ticked, CRM entries now go to "CRM"
    m.settle()
    crm_calendar = m.cals[m.alice]["C"]
    for aid in made:
        copies = _crm_copies(m, aid)
        assert [cal for cal, _ in copies] == [crm_calendar], (aid, copies)
    m.choose_calendars(0b001, 1)  # and back to primary
    m.settle()
    for aid in made:
        assert [cal for cal, _ in _crm_copies(m, aid)] == [m.alice]


def test_defect_9_entry_deleted_in_crm_while_unticked(scene: TransitionMachine) -> None:
    """The rule chosen: an import calendar's entries stay linked while it is unticked, so a
    Google-made entry deleted in the CRM meanwhile is deleted in Google when the calendar is
    ticked again — as it would have been had the calendar stayed ticked (an import calendar
    syncs its entries' changes both ways) — and is not brought back into the CRM."""
    m = scene
    m.choose_calendars(0b101, 2)
    m.google_create(2, False, 2, 15)
    m.settle()
    m.choose_calendars(0b001, 2)
    m.settle()
    family = m.cals[m.alice]["F"]
    key = next(k for k in m.google_made if k[1] == family)
    target = next(a for a in m._live() if key in m._google_keys_of(a.id))
    m.crm_delete(_index(m, target.id))
    assert m.google_made[key]["crm_deleted"]
    m.settle()
    alive = {(m.alice, cal, e.id) for cal, e in m._google_events(m.alice)}
    assert key in alive  # unticked: nothing is written to Google
    m.choose_calendars(0b101, 2)
    m.settle()
    alive = {(m.alice, cal, e.id) for cal, e in m._google_events(m.alice)}
    assert key not in alive
    assert str(target.id) not in {str(a.id) for a in m._live()}


# -- further scenarios the machine found worth pinning ----------------------------------------


def test_export_calendar_and_exported_types_changed_in_one_go(scene: TransitionMachine) -> None:
    """The export calendar changes and the entry's type stops being exported before the next
    sync: the entry leaves Google (it is not moved, and not left behind in the old one)."""
    m = scene
    first = _first_crm(m)  # a meeting, in primary
    m.choose_calendars(0b001, 2)  # CRM entries now go to "CRM"
    m.set_exported_types(0b010)  # calls only
    m.settle()
    assert _crm_copies(m, first) == []


def test_account_switched_away_and_back(scene: TransitionMachine) -> None:
    """Alice (CRM entries to "CRM"), then Bob, then Alice again: each CRM entry has one copy
    in Alice's calendars, not one in "CRM" from before and another in primary."""
    m = scene
    m.choose_calendars(0b001, 2)
    m.settle()
    m.connect_account(1)
    m.settle()
    m.connect_account(0)
    m.settle()
    for aid in m.crm_made:
        assert len(_crm_copies(m, aid)) == 1, (aid, _crm_copies(m, aid))


def test_back_to_an_account_survives_a_crash_right_after_the_moves(
    scene: TransitionMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, and the first run in Alice's account again dies right after it gathered the
    old export calendar's events (before its pull): the next run ends with one copy each."""
    m = scene
    m.choose_calendars(0b001, 2)
    m.settle()
    m.connect_account(1)
    m.settle()
    pull = engine.pull
    died: list[bool] = []

    async def dies_after_the_moves(ctx: Any) -> None:
        monkeypatch.setattr(engine, "pull", pull)
        died.append(True)
        raise google_errors.BackendError("killed right after the moves")

    monkeypatch.setattr(engine, "pull", dies_after_the_moves)
    m.connect_account(0)
    m.sync_now()
    assert died == [True]
    # the run acted on the old export calendar before it died: nothing is left there (the ids
    # were used in primary before, so Google refuses the move and the old copies are removed
    # for the push to restore the events in primary, as any move back does)
    for aid in m.crm_made:
        assert m.cals[m.alice]["C"] not in [c for c, _ in _crm_copies(m, aid)]
    m.settle()
    for aid in m.crm_made:
        assert len(_crm_copies(m, aid)) == 1, (aid, _crm_copies(m, aid))


# each walk: rule calls in order (picks count the CRM's entries in creation order: 0 and 1 are
# made in the CRM, 2 is imported from primary); `settle` checks every rule of the docstring
WALKS: dict[str, list[tuple[str, tuple[Any, ...]]]] = {
    "imported_entry_detached_and_attached": [
        ("crm_change_type", (2, TYPES.index("project_task"))),
        ("settle", ()),
        ("google_edit", (0,)),
        ("crm_edit", (2,)),
        ("settle", ()),
        ("crm_change_type", (2, 0)),
        ("settle", ()),
    ],
    "edits_while_disconnected_then_everything_changed_while_off": [
        ("disconnect", ()),
        ("crm_delete", (0,)),
        ("crm_edit", (1,)),
        ("google_edit", (1,)),
        ("crm_create", (0, False, True, 3, 11)),
        ("connect_account", (0,)),
        ("settle", ()),
        ("set_enabled", (False,)),
        ("choose_calendars", (0b011, 2)),
        ("set_private_policy", (1,)),
        ("set_exported_types", (0b011,)),
        ("crm_change_type", (0, 2)),
        ("google_create", (1, False, 2, 13)),
        ("set_enabled", (True,)),
        ("settle", ()),
        ("set_private_policy", (2,)),
        ("settle", ()),
        ("set_private_policy", (0,)),
        ("settle", ()),
    ],
    "one_way_then_export_calendars_over_google_entries": [
        ("set_direction", (2,)),
        ("crm_create", (0, False, True, 3, 11)),
        ("choose_calendars", (0b101, 3)),
        ("settle", ()),
        ("set_direction", (0,)),
        ("settle", ()),
        ("choose_calendars", (0b101, 2)),
        ("settle", ()),
        ("choose_calendars", (0b111, 1)),
        ("settle", ()),
    ],
}


@pytest.mark.parametrize("walk", list(WALKS))
def test_transition_walk(scene: TransitionMachine, walk: str) -> None:
    for name, args in WALKS[walk]:
        getattr(scene, name)(*args)


def _edit_copy(m: TransitionMachine, aid: str) -> str:
    """The person renames the CRM entry's copy in Google; returns the new title."""
    [(cal, _)] = _crm_copies(m, aid)
    event = next(e for c, e in m._google_events(m.alice) if c == cal and _tag(m, e) == aid)
    title = m._title("G")
    m.run(m.people[m.alice].patch_event(cal, event.id or "", {"summary": title}))
    return title


def _tag(m: TransitionMachine, event: Event) -> str:
    return str(mapping.tagged_activity_id(event, m.tenant_id))


@pytest.mark.parametrize("change", ["export_calendar", "not_exported"])
def test_copy_edited_in_google_just_before_a_transition(
    scene: TransitionMachine, change: str
) -> None:
    """The person renames a CRM entry's event in Google, then — before the next sync — the
    export calendar changes (the rename arrives in the CRM, one copy in the new calendar), or
    the entry's type stops being exported (the rename arrives, the event leaves Google)."""
    m = scene
    first = _first_crm(m)
    title = _edit_copy(m, first)
    if change == "export_calendar":
        m.choose_calendars(0b001, 2)
    else:
        m.crm_change_type(0, TYPES.index("task"))
    m.settle()
    activity = next(a for a in m._live() if str(a.id) == first)
    assert activity.subject == title
    expected = [m.cals[m.alice]["C"]] if change == "export_calendar" else []
    assert [cal for cal, _ in _crm_copies(m, first)] == expected


def test_many_entries_transition_without_the_mass_delete_guard(scene: TransitionMachine) -> None:
    """More than the mass-delete guard's 20 entries change place in one go — moved to a new
    export calendar, then withdrawn (their type no longer exported): that is no mass delete in
    Google, so no run pauses (`settle` asserts every Sync now ends ok or partial)."""
    m = scene
    for i in range(22):
        m.crm_create(0, False, False, 1 + i % 3, 8 + i % 9)
    m.settle()
    m.choose_calendars(0b001, 2)
    m.settle()
    m.set_exported_types(0b110)  # meetings no longer
    m.settle()


@pytest.mark.parametrize("which", [0, 1], ids=["meeting", "private_call"])
def test_crm_edit_between_export_change_and_sync_reaches_google(
    scene: TransitionMachine, which: int
) -> None:
    """Found by the machine: untick everything, CRM entries to "CRM", then a CRM edit before
    the next sync. Expected: the entry is in "CRM" with its new title."""
    m = scene
    aid = list(m.crm_made)[which]
    m.choose_calendars(0b000, 2)
    m.crm_edit(_index(m, aid))
    m.settle()


def test_project_task_while_its_calendar_is_unticked_leaves_google(
    scene: TransitionMachine,
) -> None:
    """Found by the machine: a CRM entry becomes a project task, and before the next sync
    every calendar is unticked with CRM entries now going to "CRM". Expected: the event calsync
    wrote for it in primary is withdrawn (docs/sync.md: an entry that stops being exported
    leaves Google)."""
    m = scene
    aid = list(m.crm_made)[1]
    m.crm_change_type(_index(m, aid), TYPES.index("project_task"))
    m.choose_calendars(0b000, 2)
    m.settle()


def test_crm_entry_deleted_before_its_calendar_is_unticked_leaves_google(
    scene: TransitionMachine,
) -> None:
    """Found by the 1,000-example run: a CRM entry is deleted in the CRM and, before the next
    sync, its calendar is unticked (CRM entries now go to "CRM"). The CRM's own entry must not
    stay in Google: the export calendar's run deletes it from the unticked calendar."""
    m = scene
    aid = next(iter(m.crm_made))
    assert len(_crm_copies(m, aid)) == 1
    m.crm_delete(_index(m, aid))
    m.choose_calendars(0b000, 2)
    m.settle()
    assert _crm_copies(m, aid) == []


def test_project_task_renamed_in_google_while_unticked_leaves_google(
    scene: TransitionMachine,
) -> None:
    """A CRM entry made a project task, its event renamed in Google, then its calendar
    unticked before the next sync: the unticked calendar's link has an old etag, so the delete
    first answers 412; the event is re-read there and deleted."""
    m = scene
    aid = next(iter(m.crm_made))
    [(calendar_id, _)] = _crm_copies(m, aid)
    m.crm_change_type(_index(m, aid), TYPES.index("project_task"))
    m.run(
        m.people[m.alice].patch_event(
            calendar_id, google_event_id(uuid.UUID(aid)), {"summary": "G renamed"}
        )
    )
    m.choose_calendars(0b000, 2)
    m.settle()
    assert _crm_copies(m, aid) == []
