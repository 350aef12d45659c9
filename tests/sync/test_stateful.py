"""Random interleavings of CRM edits, Google edits (as the person), syncs and injected faults,
over single, all-day and recurring entries — with occurrences moved in Google and cancelled in
the CRM (exceptions).

After the faults stop and a final sync, every activity and Google event are paired one to one
with equal mapped fields, and for every entry neither side deleted, each field holds the value
of its latest write on either side — unless a conflict row says the policy decided otherwise.

SQLite only: PostgreSQL runs the same engine code and is covered by the scenario tests; here
it would only add per-example database set-up time to a test that must stay under ~3 minutes.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from sqlalchemy import select

from calsync.domain.activity import ActivityDraft, validate
from calsync.domain.fields import make
from calsync.google import errors as google_errors
from calsync.google.models import Event
from calsync.google.oauth import GoogleOAuth, MemoryStateStore
from calsync.store import activities, crypto
from calsync.store.db import Database
from calsync.store.links import exception_at as links_exception_at
from calsync.store.migrate import upgrade
from calsync.store.models import Activity, Conflict, EventLink
from calsync.sync import mapping
from calsync.sync.context import Ctx, Hooks
from calsync.sync.tokens import GoogleAccess
from tests.calsync.google.conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI
from tests.conftest import Emulator

from .conftest import ZONE, Harness, at, emulator_settings, retry_policy

T = TypeVar("T")
# 60 by default: the suite grew to 14 min on 2 cores, 100 examples took 122 s of one worker
# (200 took 165 s before the sync did more per step); CALSYNC_STATEFUL_EXAMPLES=1000 for a
# long run
EXAMPLES = int(os.environ.get("CALSYNC_STATEFUL_EXAMPLES", "60"))
STEPS = 10
UNITS = ("summary", "location", "schedule")
WORDS = ("alpha", "beta", "gamma", "delta")
# every edit writes a value never seen before (serial numbers), so a side never returns to the
# last-synced value — that is no change by content, and the model would count it as one
LOCATIONS = ("Oslo", "Bergen", "Room")
FAULTS = ("none", "none", "none", "503", "503x9", "429", "timeout", "412")

Key = tuple[str, str]  # (side, id)


SERIES = "RRULE:FREQ=WEEKLY;COUNT=3"


def schedule(start: datetime, *, all_day: bool = False, series: bool = False) -> tuple[Any, ...]:
    aware = start.replace(tzinfo=ZoneInfo(ZONE))
    values = make(
        summary="",
        description="",
        location="",
        start=aware.date() if all_day else aware,
        end=(aware.date() + timedelta(days=1)) if all_day else aware + timedelta(hours=1),
        time_zone="" if all_day else ZONE,
        recurrence=[SERIES] if series else None,
    )
    return values.unit("schedule")


def plain(activity: Activity) -> bool:
    """A single timed entry: the only kind whose time the machine moves (a series' time and
    all-day dates have their own scenario tests)."""
    return not activity.all_day and not activity.recurrence and not activity.recurring_parent_id


def plain_event(event: Event) -> bool:
    timed = event.start is not None and event.start.date_time is not None
    return timed and not event.recurrence and not event.recurring_event_id


def generated(master: Event, occurrence: Event) -> bool:
    """Whether the series still has the occurrence (a cancelled instance at a start the moved
    series no longer generates is only Google's record of the dropped exception)."""
    original = occurrence.original_start_time
    if master.start is None or master.start.date_time is None or original is None:
        return True
    if original.date_time is None:
        return True
    first = master.start.date_time.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None)
    at_ = original.date_time.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None)
    return at_ in {first + timedelta(days=7 * i) for i in range(3)}  # SERIES


class SyncMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    emulator: Emulator
    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.serial = 0
        self.writes: dict[Key, dict[str, tuple[int, tuple[Any, ...]]]] = {}
        self.deleted: set[Key] = set()
        self.partner: dict[Key, Key] = {}
        self.parent: dict[Key, Key] = {}  # an exception's master
        self.moving: set[Key] = set()  # series moved since the last fault-free sync
        self.order: list[Key] = []  # every entry in the order the test first saw it
        self.h: Harness | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    @initialize()
    def setup(self) -> None:
        self.emulator.control("POST", "/reset")
        self.emulator.control(
            "POST",
            "/oauth-clients",
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI],
            },
        )
        person_settings = emulator_settings(self.emulator)
        oauth = GoogleOAuth(person_settings, state_store=MemoryStateStore(), retry=retry_policy())
        h = Harness(self.emulator, self.db, person_settings, oauth)
        # the engine's client times out quickly so injected latency becomes a timeout
        engine_settings = emulator_settings(self.emulator, timeout=0.25)
        h.google = GoogleAccess(
            engine_settings, oauth=oauth, retry=retry_policy(), rate_limiter=None
        )
        self.run(h.setup(policy="latest_wins"))
        self.h = h
        # start from a synced calendar, so edits on both sides meet from the first step
        self.crm_create("alpha", 1, 9)
        self.crm_create("beta", 2, 10)
        self.google_create("gamma", 1, 12)
        self.crm_create_series("delta", 1, 14)
        self.google_create_special("alpha", 2, 15, all_day=False)
        self.run(h.sync())
        self.run(self._remember_pairs())

    def teardown(self) -> None:
        h = self.h
        if h is None:
            return
        try:
            self.emulator.control("DELETE", "/faults")
            self.run(self._converge(h))
        finally:
            self.run(h.aclose())
            self.run(h.oauth.aclose())

    # -- writes ---------------------------------------------------------------------------------

    def _pick(self, data: st.DataObject, side: str, alive: set[str]) -> str | None:
        """An entry of `side` chosen by position in `self.order`: ids are random, positions are
        not, so hypothesis can replay and shrink."""
        keys = [k[1] for k in self.order if k[0] == side and k[1] in alive]
        if not keys:
            return None
        return keys[data.draw(st.integers(0, 10_000)) % len(keys)]

    def _write(
        self, key: Key, unit: str, value: tuple[Any, ...], before: tuple[Any, ...] | None = None
    ) -> None:
        """Log a write; writing the value a side already has changes nothing and is no write."""
        if key not in self.order:
            self.order.append(key)
        if value == before:
            return
        self.step += 1
        self.writes.setdefault(key, {})[unit] = (self.step, value)

    @rule(word=st.sampled_from(WORDS), day=st.integers(1, 3), hour=st.integers(8, 16))
    def crm_create(self, word: str, day: int, hour: int) -> None:
        assert self.h is not None
        self.serial += 1
        title = f"C{self.serial} {word}"
        aid = self.run(self.h.activity(title, at(day, hour)))
        key = ("crm", str(aid))
        self._write(key, "summary", (title,))
        self._write(key, "location", ("",))
        self._write(key, "schedule", schedule(at(day, hour)))

    @rule(word=st.sampled_from(WORDS), day=st.integers(1, 3), hour=st.integers(8, 16))
    def google_create(self, word: str, day: int, hour: int) -> None:
        assert self.h is not None
        self.serial += 1
        title = f"G{self.serial} {word}"
        event = self.run(self.h.ginsert(title, at(day, hour)))
        key = ("google", event.id or "")
        self._write(key, "summary", (title,))
        self._write(key, "location", ("",))
        self._write(key, "schedule", schedule(at(day, hour)))

    @rule(word=st.sampled_from(WORDS), day=st.integers(1, 3), hour=st.integers(8, 16))
    def crm_create_series(self, word: str, day: int, hour: int) -> None:
        assert self.h is not None
        self.serial += 1
        title = f"C{self.serial} {word}"
        start = at(day, hour)
        values = validate(
            ActivityDraft(
                start=start,
                end=start + timedelta(hours=1),
                subject=title,
                time_zone=ZONE,
                recurrence=[SERIES],
            )
        )
        self.run(self._create(values))
        key = ("crm", str(self._created))
        self._write(key, "summary", (title,))
        self._write(key, "location", ("",))
        self._write(key, "schedule", schedule(start, series=True))

    @rule(word=st.sampled_from(WORDS), day=st.integers(1, 3))
    def crm_create_all_day(self, word: str, day: int) -> None:
        assert self.h is not None
        self.serial += 1
        title = f"C{self.serial} {word}"
        first = at(day, 0).date()
        values = validate(
            ActivityDraft(start=first, end=first + timedelta(days=1), subject=title, time_zone=ZONE)
        )
        self.run(self._create(values))
        key = ("crm", str(self._created))
        self._write(key, "summary", (title,))
        self._write(key, "location", ("",))
        self._write(key, "schedule", schedule(at(day, 0), all_day=True))

    async def _create(self, values: Any, parent: uuid.UUID | None = None) -> None:
        assert self.h is not None
        async with self.h.db.session() as s:
            row = await activities.create(
                s,
                self.h.tenant_id,
                type_key="meeting",
                owner_id=self.h.user_id,
                values=values,
                recurring_parent_id=parent,
            )
            await s.commit()
        self._created = row.id

    @rule(
        word=st.sampled_from(WORDS),
        day=st.integers(1, 3),
        hour=st.integers(8, 16),
        all_day=st.booleans(),
    )
    def google_create_special(self, word: str, day: int, hour: int, all_day: bool) -> None:
        """A weekly series (timed) or an all-day entry made in Google."""
        assert self.h is not None
        self.serial += 1
        title = f"G{self.serial} {word}"
        start = at(day, hour)
        body: dict[str, Any] = {"summary": title}
        if all_day:
            body["start"] = {"date": start.date().isoformat()}
            body["end"] = {"date": (start.date() + timedelta(days=1)).isoformat()}
        else:
            body["start"] = {"dateTime": start.isoformat(), "timeZone": ZONE}
            end = start + timedelta(hours=1)
            body["end"] = {"dateTime": end.isoformat(), "timeZone": ZONE}
            body["recurrence"] = [SERIES]
        event = self.run(self.h.person.insert_event(self.h.calendar_id, body))
        key = ("google", event.id or "")
        self._write(key, "summary", (title,))
        self._write(key, "location", ("",))
        self._write(key, "schedule", schedule(start, all_day=all_day, series=not all_day))

    def _paired_masters(self, side: str) -> set[str]:
        assert self.h is not None
        live = {str(a.id): a for a in self.run(self.h.live_activities())}
        out = set()
        for k, v in self.partner.items():
            crm = k if k[0] == "crm" else v
            activity = live.get(crm[1])
            if activity is not None and activity.recurrence and k[0] == side:
                out.add(k[1])
        return out

    @rule(data=st.data())
    def google_change_occurrence(self, data: st.DataObject) -> None:
        """The person renames (or deletes) the second occurrence of a synced series."""
        assert self.h is not None
        chosen = self._pick(data, "google", self._paired_masters("google"))
        if chosen is None:
            return
        master = self.run(self.h.person.get_event(self.h.calendar_id, chosen))
        if master.cancelled or master.start is None or master.start.date_time is None:
            return
        second = master.start.date_time + timedelta(days=7)
        instance = f"{chosen}_{second.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        key = ("google", instance)
        self.parent[key] = ("google", chosen)
        if ("google", chosen) in self.moving:
            # the CRM moved the series meanwhile: this exception follows it to another instance
            self.deleted.add(key)
        if key not in self.order:
            self.order.append(key)
        if data.draw(st.booleans()):
            try:
                self.run(self.h.gdelete(instance))
            except google_errors.Deleted:
                return  # cancelled already
            self.deleted.add(key)
            return
        self.serial += 1
        title = f"G{self.serial} {data.draw(st.sampled_from(WORDS))}"
        self.run(self.h.gpatch(instance, {"summary": title}))
        self._write(key, "summary", (title,))

    @rule(data=st.data())
    def crm_cancel_occurrence(self, data: st.DataObject) -> None:
        """The CRM cancels the last occurrence of a synced series."""
        assert self.h is not None
        chosen = self._pick(data, "crm", self._paired_masters("crm"))
        if chosen is None:
            return
        self.run(self._cancel_last(uuid.UUID(chosen)))

    async def _cancel_last(self, master_id: uuid.UUID) -> None:
        assert self.h is not None
        async with self.h.db.session() as s:
            master = await activities.get(s, self.h.tenant_id, master_id)
            assert master is not None
            last = master.start_local + timedelta(days=14)
            if await links_exception_at(s, master.id, last):
                return
            values = validate(
                ActivityDraft(
                    start=last,
                    end=last + (master.end_local - master.start_local),
                    subject=master.subject,
                    time_zone=master.time_zone,
                    status="cancelled",
                    original_start=last,
                ),
                activities.series(master),
            )
        await self._create(values, parent=master_id)
        key = ("crm", str(self._created))
        self.parent[key] = ("crm", str(master_id))
        self.order.append(key)
        self.deleted.add(key)

    @rule(data=st.data(), side=st.sampled_from(("crm", "google")))
    def move_series(self, data: st.DataObject, side: str) -> None:
        """The whole series moves (later the same day or a day later) on one side, with
        whatever exceptions it has: they follow the series or go (docs/sync.md)."""
        assert self.h is not None
        chosen = self._pick(data, side, self._paired_masters(side))
        if chosen is None:
            return
        self.run(self._move_series(data, side, chosen))

    async def _move_series(self, data: st.DataObject, side: str, chosen: str) -> None:
        assert self.h is not None
        key = (side, chosen)
        if side == "crm":
            current = await self.h.get(uuid.UUID(chosen))
            before = mapping.activity_fields(current).unit("schedule")
            start = current.start_local
        else:
            event = await self.h.person.get_event(self.h.calendar_id, chosen)
            if event.cancelled or event.start is None or event.start.date_time is None:
                return
            before = mapping.event_fields(event, ZONE).unit("schedule")
            start = event.start.date_time.astimezone(ZoneInfo(ZONE)).replace(tzinfo=None)
        self.serial += 1
        hours = data.draw(st.integers(1, 3))
        moved = start + timedelta(days=int(data.draw(st.booleans())), hours=hours)
        moved = moved.replace(minute=self.serial % 60)
        end = moved + timedelta(hours=1)
        if side == "crm":
            await self.h.edit(uuid.UUID(chosen), start=moved, end=end)
        else:
            await self.h.gpatch(
                chosen,
                {
                    "start": {"dateTime": moved.isoformat(), "timeZone": ZONE},
                    "end": {"dateTime": end.isoformat(), "timeZone": ZONE},
                },
            )
        self._write(key, "schedule", schedule(moved, series=True), before)
        self.moving.update(k for k in (key, self.partner.get(key)) if k is not None)
        # its exceptions follow to other instance ids or go: neither side's keys survive
        series = {key, self.partner.get(key)}
        for exc, parent in list(self.parent.items()):
            if parent in series:
                self.deleted.update(k for k in (exc, self.partner.get(exc)) if k is not None)

    @rule(data=st.data())
    def crm_delete_exception(self, data: st.DataObject) -> None:
        """The CRM deletes a (moved, renamed or cancelled) occurrence of a series."""
        assert self.h is not None
        live = self.run(self.h.live_activities())
        exceptions = {str(a.id) for a in live if a.recurring_parent_id}
        chosen = self._pick(data, "crm", exceptions)
        if chosen is None:
            return
        self.run(self.h.delete(uuid.UUID(chosen)))
        key = ("crm", chosen)
        # a cancelled exception takes its place: both old keys are done
        self.deleted.update(k for k in (key, self.partner.get(key)) if k is not None)

    @rule(data=st.data(), unit=st.sampled_from(UNITS))
    def crm_edit(self, data: st.DataObject, unit: str) -> None:
        assert self.h is not None
        live = self.run(self.h.live_activities())
        chosen = self._pick(
            data, "crm", {str(a.id) for a in live if unit != "schedule" or plain(a)}
        )
        if chosen is None:
            return
        self.run(self._crm_edit(data, chosen, unit))

    async def _crm_edit(self, data: st.DataObject, activity_id: str, unit: str) -> None:
        assert self.h is not None
        target = await self.h.get(uuid.UUID(activity_id))
        before = mapping.activity_fields(target).unit(unit)
        key = ("crm", activity_id)
        self.serial += 1
        if unit == "summary":
            title = f"C{self.serial} {data.draw(st.sampled_from(WORDS))}"
            await self.h.edit(target.id, subject=title)
            self._write(key, unit, (title,), before)
        elif unit == "location":
            where = f"{data.draw(st.sampled_from(LOCATIONS))} {self.serial}".strip()
            await self.h.edit(target.id, location=where or None)
            self._write(key, unit, (where,), before)
        else:
            start = at(
                data.draw(st.integers(1, 3)), data.draw(st.integers(8, 16)), self.serial % 60
            )
            await self.h.edit(target.id, start=start, end=start + timedelta(hours=1))
            self._write(key, unit, schedule(start), before)

    @rule(data=st.data(), unit=st.sampled_from(UNITS))
    def google_edit(self, data: st.DataObject, unit: str) -> None:
        assert self.h is not None
        events = self.run(self.h.events())
        chosen = self._pick(
            data, "google", {e.id or "" for e in events if unit != "schedule" or plain_event(e)}
        )
        if chosen is None:
            return
        self.run(self._google_edit(data, chosen, unit))

    async def _google_edit(self, data: st.DataObject, event_id: str, unit: str) -> None:
        assert self.h is not None
        key = ("google", event_id)
        current = await self.h.person.get_event(self.h.calendar_id, event_id)
        before = mapping.event_fields(current, ZONE).unit(unit)
        self.serial += 1
        if unit == "summary":
            title = f"G{self.serial} {data.draw(st.sampled_from(WORDS))}"
            await self.h.gpatch(event_id, {"summary": title})
            self._write(key, unit, (title,), before)
        elif unit == "location":
            where = f"{data.draw(st.sampled_from(LOCATIONS))} {self.serial}".strip()
            await self.h.gpatch(event_id, {"location": where})
            self._write(key, unit, (where,), before)
        else:
            start = at(
                data.draw(st.integers(1, 3)), data.draw(st.integers(8, 16)), self.serial % 60
            )
            end = start + timedelta(hours=1)
            await self.h.gpatch(
                event_id,
                {
                    "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
                    "end": {"dateTime": end.isoformat(), "timeZone": ZONE},
                },
            )
            self._write(key, unit, schedule(start), before)

    @rule(data=st.data(), crm_unit=st.sampled_from(UNITS), google_unit=st.sampled_from(UNITS))
    def both_edit(self, data: st.DataObject, crm_unit: str, google_unit: str) -> None:
        """One synced entry edited on both sides before the next sync (merges, conflicts)."""
        assert self.h is not None
        live = {str(a.id) for a in self.run(self.h.live_activities()) if plain(a)}
        events = {e.id or "" for e in self.run(self.h.events())}
        paired = {
            k[1]
            for k, v in self.partner.items()
            if k[0] == "crm" and k[1] in live and v[1] in events
        }
        chosen = self._pick(data, "crm", paired)
        if chosen is None:
            return
        self.run(self._crm_edit(data, chosen, crm_unit))
        self.run(self._google_edit(data, self.partner[("crm", chosen)][1], google_unit))

    @rule(data=st.data())
    def crm_delete(self, data: st.DataObject) -> None:
        assert self.h is not None
        live = self.run(self.h.live_activities())
        chosen = self._pick(data, "crm", {str(a.id) for a in live if not a.recurring_parent_id})
        if chosen is None:
            return
        self.run(self.h.delete(uuid.UUID(chosen)))
        self.deleted.add(("crm", chosen))

    @rule(data=st.data())
    def google_delete(self, data: st.DataObject) -> None:
        assert self.h is not None
        events = self.run(self.h.events())
        chosen = self._pick(
            data, "google", {e.id or "" for e in events if not e.recurring_event_id}
        )
        if chosen is None:
            return
        self.run(self.h.gdelete(chosen))
        self.deleted.add(("google", chosen))

    # -- syncs with faults -------------------------------------------------------------------------

    @rule(data=st.data(), fault=st.sampled_from(FAULTS))
    def sync(self, data: st.DataObject, fault: str) -> None:
        assert self.h is not None
        h = self.h
        hooks = Hooks()
        path = "^/(calendar|batch)/"
        if fault == "503":
            self.emulator.control(
                "POST", "/faults", {"path_regex": path, "status": 503, "count": 1}
            )
        elif fault == "503x9":  # more than the retry budget: the run backs off
            self.emulator.control(
                "POST", "/faults", {"path_regex": path, "status": 503, "count": 9}
            )
        elif fault == "429":
            self.emulator.control(
                "POST",
                "/faults",
                {"path_regex": path, "status": 429, "count": 2, "retry_after": 0},
            )
        elif fault == "timeout":
            self.emulator.control(
                "POST",
                "/faults",
                {"path_regex": path, "status": 200, "latency_ms": 400, "count": 1},
            )
        elif fault == "412":

            async def concurrent(ctx: Ctx) -> None:
                chosen = self._pick(data, "google", {e.id or "" for e in await h.events()})
                if chosen is not None:
                    await self._google_edit(data, chosen, "location")

            hooks.after_pull = concurrent
        result = self.run(h.sync(hooks=hooks))
        self.emulator.control("DELETE", "/faults")
        if fault == "none" and result.ok:
            self.moving.clear()
        self.run(self._remember_pairs())

    async def _remember_pairs(self) -> None:
        assert self.h is not None
        async with self.h.db.session() as s:
            rows = (
                await s.scalars(select(EventLink).where(EventLink.binding_id == self.h.binding_id))
            ).all()
        for link in rows:
            if link.activity_id is not None and link.state == "linked":
                crm, google = ("crm", str(link.activity_id)), ("google", link.google_event_id)
                self.partner[crm], self.partner[google] = google, crm
        # entries learned from the other side take their partner's place in the order
        for key in list(self.order):
            partner = self.partner.get(key)
            if partner is not None and partner not in self.order:
                self.order.append(partner)

    # -- the end state --------------------------------------------------------------------------------

    async def _converge(self, h: Harness) -> None:
        for _ in range(3):
            result = await h.sync()
            assert result.ok, result
            if not result.counts.get("pushed") and not result.counts.get("updated"):
                break
        await self._remember_pairs()
        acts = {str(a.id): a for a in await h.live_activities()}
        listed = await h.events(deleted=True)
        masters = {e.id: e for e in listed if not e.cancelled and e.recurrence}
        events = {
            e.id or "": e
            for e in listed
            if not e.cancelled
            or (e.recurring_event_id in masters and generated(masters[e.recurring_event_id], e))
        }
        async with h.db.session() as s:
            rows = (
                await s.scalars(select(EventLink).where(EventLink.binding_id == h.binding_id))
            ).all()
            conflicts = {
                (str(c.activity_id), c.field)
                for c in (
                    await s.scalars(select(Conflict).where(Conflict.binding_id == h.binding_id))
                )
            }
        linked = [r for r in rows if r.activity_id is not None]
        assert all(r.state == "linked" for r in linked), [r.state for r in linked]
        # one to one, nothing left over on either side
        assert sorted(str(r.activity_id) for r in linked) == sorted(acts)
        assert sorted(r.google_event_id for r in linked) == sorted(events)
        for link in linked:
            activity, event = acts[str(link.activity_id)], events[link.google_event_id]
            crm = mapping.activity_fields(activity)
            google = mapping.event_fields(event, ZONE)
            assert crm == google, (crm, google)
            keys = {("crm", str(activity.id)), ("google", event.id or "")}
            if keys & self.deleted:
                continue  # restored after a delete: the surviving side's values win
            for unit in UNITS:
                history = [self.writes[k][unit] for k in keys if unit in self.writes.get(k, {})]
                if not history:
                    continue
                _, latest = max(history)
                if crm.unit(unit) != latest:
                    assert (str(activity.id), unit) in conflicts, (unit, latest, crm.unit(unit))
        # whatever disappeared was deleted on one side
        alive = {("crm", a) for a in acts} | {("google", e) for e in events}
        for key in self.writes:
            if key in alive:
                continue
            partner = self.partner.get(key)
            # an occurrence also goes with its series (deleted on either side)
            near = {key, partner}
            near |= {self.parent.get(k) for k in list(near) if k is not None}
            near |= {self.partner.get(k) for k in list(near) if k is not None}
            assert near & self.deleted, key


@pytest.fixture
def stateful_db(tmp_path_factory: pytest.TempPathFactory, keyring: crypto.Keyring) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('stateful') / 'calsync.db'}"

    async def migrate() -> None:
        db = Database(url, pooled=False)
        await upgrade(db)
        await db.dispose()

    asyncio.run(migrate())
    return url


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_random_interleavings_converge(emulator: Emulator, stateful_db: str) -> None:
    loop = asyncio.new_event_loop()
    db = Database(stateful_db)
    SyncMachine.loop, SyncMachine.emulator, SyncMachine.db = loop, emulator, db
    try:
        machine = settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )(SyncMachine)
        machine.TestCase().runTest()
    finally:
        loop.run_until_complete(db.dispose())
        loop.close()
