"""Storing events: every change gets a new world sequence, etag and `updated`; a series stays
consistent (cancelling a master cancels its exceptions, a re-ruled series records the
instance ids that disappeared). Also finding an event or a (virtual) instance by id.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import recurrence
from ..clock import rfc3339
from ..state import StoredEvent, World
from .index import index_of
from .series import series_of, single_ids, virtual
from .wire import public, start_value, zone_or_utc

# a change to one of these re-times a series: instance ids may appear or disappear
TIMING = ("start", "end", "recurrence")


# -- storing ----------------------------------------------------------------------------------


def commit(
    world: World, cal_id: str, data: dict[str, Any], prev: StoredEvent | None
) -> StoredEvent:
    """Store a new version: new sequence, etag and `updated`; push channels are told later.
    The calendar's list index follows every version (this is the only writer of events)."""
    idx = index_of(world, cal_id)
    seq = world.next_seq()
    now = world.clock.now()
    data["etag"] = world.etag(seq)
    data["updated"] = rfc3339(now)
    if data.get("created") is None:
        # a new event: `created` is the instant of this commit, the same as `updated`, as
        # Google gives it (two clock readings could straddle a millisecond)
        data["created"] = data["updated"]
    if prev is not None:
        old_updated = prev.updated_ts
        prev.data = data
        prev.seq = seq
        prev.updated_ts = now
        idx.changed(prev, old_updated)
        return prev
    ev = StoredEvent(calendar_id=cal_id, data=data, seq=seq, created_seq=seq, updated_ts=now)
    world.events.setdefault(cal_id, {})[data["id"]] = ev
    world.used_event_ids.setdefault(cal_id, set()).add(data["id"])
    idx.added(ev)
    return ev


def exceptions_of(world: World, cal_id: str, master_id: str) -> list[StoredEvent]:
    return [
        ev
        for ev in world.events.get(cal_id, {}).values()
        if ev.data.get("recurringEventId") == master_id
    ]


def save(world: World, cal_id: str, data: dict[str, Any], prev: StoredEvent | None) -> StoredEvent:
    """Commit an event and keep its series consistent: cancelling a master cancels its
    exceptions; moving or re-ruling a series records the instance ids that disappeared."""
    old = copy.deepcopy(prev.data) if prev is not None else None
    if old is not None and "_gone" in old:
        data["_gone"] = old["_gone"]
    data.pop("_orphan", None)
    ev = commit(world, cal_id, data, prev)
    if old is None or "recurringEventId" in data:
        return ev
    was_cancelled = old.get("status") == "cancelled"
    if data["status"] == "cancelled" and not was_cancelled:
        for exc in exceptions_of(world, cal_id, data["id"]):
            if exc.data.get("status") != "cancelled":
                exc_data = copy.deepcopy(exc.data)
                exc_data["status"] = "cancelled"
                commit(world, cal_id, exc_data, exc)
    if any(old.get(k) != data.get(k) for k in TIMING):
        old_ids = single_ids(world, old)
        new_ids = single_ids(world, data)
        gone: dict[str, Any] = dict(data.get("_gone", {}))
        for iid, ost in old_ids.items():
            if iid not in new_ids:
                gone[iid] = {"seq": ev.seq, "originalStartTime": ost}
        for iid in new_ids:
            gone.pop(iid, None)
        if gone:
            data["_gone"] = gone
        else:
            data.pop("_gone", None)
        for exc in exceptions_of(world, cal_id, data["id"]):
            if exc.data["id"] not in new_ids and not exc.data.get("_orphan"):
                exc_data = copy.deepcopy(exc.data)
                exc_data["status"] = "cancelled"
                exc_data["_orphan"] = True
                commit(world, cal_id, exc_data, exc)
    return ev


# -- locating an event or instance --------------------------------------------------------------


@dataclass
class Target:
    data: dict[str, Any]  # public view
    stored: StoredEvent | None  # the stored event, or None for a virtual instance
    master: StoredEvent | None  # for instances


def find(world: World, cal_id: str, event_id: str) -> Target | None:
    store = world.events.get(cal_id, {})
    ev = store.get(event_id)
    if ev is not None and not ev.data.get("_orphan"):
        master = store.get(ev.data.get("recurringEventId", ""))
        return Target(public(ev.data), ev, master)
    mid, sep, suffix = event_id.rpartition("_")
    master = store.get(mid) if sep else None
    orig = recurrence.parse_suffix(suffix) if master is not None else None
    if master is not None and orig is not None:
        series = series_of(master.data)
        m_start = start_value(master.data["start"])
        if series is not None and isinstance(orig, datetime) == isinstance(m_start, datetime):
            if isinstance(orig, datetime):
                orig = orig.astimezone(zone_or_utc(master.data["start"].get("timeZone", "UTC")))
            if series.contains(orig):
                data = virtual(master.data, orig, cal_id)
                if master.data["status"] == "cancelled":
                    data["status"] = "cancelled"
                return Target(data, ev, master)
    if ev is not None:
        return Target(public(ev.data), ev, store.get(ev.data.get("recurringEventId", "")))
    return None


def origin_calendar(world: World, cal_id: str, data: dict[str, Any]) -> str | None:
    """For an attendee's copy: the calendar of the organizer's event; None for own events."""
    org = (data.get("organizer") or {}).get("email")
    if not org or org == cal_id or org not in world.calendars:
        return None
    if find(world, org, data["id"]) is None:
        return None
    return str(org)
