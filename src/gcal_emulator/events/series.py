"""Recurring events: a master's occurrences, instance ids and times, and the virtual instances
built from the master where no exception is stored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from .. import recurrence
from ..state import StoredEvent, World
from .wire import Start, fmt_time, html_link, public, start_value, zone_or_utc


def series_of(data: dict[str, Any]) -> recurrence.Series | None:
    rec = data.get("recurrence")
    if not rec:
        return None
    start = data["start"]
    return recurrence.series(tuple(rec), start_value(start), start.get("timeZone"))


def orig_time(master: dict[str, Any], orig: Start) -> dict[str, Any]:
    if isinstance(orig, datetime):
        out: dict[str, Any] = {"dateTime": fmt_time(orig)}
        if "timeZone" in master["start"]:
            out["timeZone"] = master["start"]["timeZone"]
        return out
    return {"date": orig.isoformat()}


def instance_id(master_id: str, orig: Start) -> str:
    return f"{master_id}_{recurrence.instance_suffix(orig)}"


def _instance_times(master: dict[str, Any], orig: Start) -> tuple[dict[str, Any], dict[str, Any]]:
    m_start, m_end = start_value(master["start"]), start_value(master["end"])
    if not isinstance(orig, datetime):
        assert not isinstance(m_start, datetime) and not isinstance(m_end, datetime)
        return {"date": orig.isoformat()}, {"date": (orig + (m_end - m_start)).isoformat()}
    assert isinstance(m_start, datetime) and isinstance(m_end, datetime)
    zone = zone_or_utc(master["start"].get("timeZone", "UTC"))
    # wall-clock duration: a 09:00-10:00 meeting stays 09:00-10:00 across DST
    dur = m_end.astimezone(zone).replace(tzinfo=None) - m_start.astimezone(zone).replace(
        tzinfo=None
    )
    end_wall = orig.astimezone(zone).replace(tzinfo=None) + dur
    end = recurrence.localize(end_wall, zone)
    start_out: dict[str, Any] = {"dateTime": fmt_time(orig.astimezone(zone))}
    if "timeZone" in master["start"]:
        start_out["timeZone"] = master["start"]["timeZone"]
    end_tz = master["end"].get("timeZone")
    end_out: dict[str, Any] = {
        "dateTime": fmt_time(end.astimezone(zone_or_utc(end_tz) if end_tz else zone))
    }
    if end_tz:
        end_out["timeZone"] = end_tz
    return start_out, end_out


def virtual(master: dict[str, Any], orig: Start, calendar_id: str) -> dict[str, Any]:
    data = {k: copy.deepcopy(v) for k, v in public(master).items() if k != "recurrence"}
    iid = instance_id(master["id"], orig)
    data["id"] = iid
    data["htmlLink"] = html_link(iid, calendar_id)
    data["recurringEventId"] = master["id"]
    data["originalStartTime"] = orig_time(master, orig)
    data["start"], data["end"] = _instance_times(master, orig)
    return data


def occurrences(
    world: World, master: dict[str, Any], lo: datetime | None = None, hi: datetime | None = None
) -> list[Start]:
    series = series_of(master)
    if series is None:
        return []
    cap = world.config.max_instances
    if lo is None and hi is None:
        return series.first(cap)
    s, e = start_value(master["start"]), start_value(master["end"])
    slack = (e - s) if isinstance(s, datetime) and isinstance(e, datetime) else timedelta(0)
    if isinstance(s, date) and not isinstance(s, datetime):
        assert isinstance(e, date)
        slack = timedelta(days=(e - s).days)
    return series.window(lo, hi, slack, cap)


def single_ids(world: World, data: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The ids a singleEvents=true list shows for this event (instance ids for a series)."""
    if not data.get("recurrence"):
        return {data["id"]: None}
    return {instance_id(data["id"], o): orig_time(data, o) for o in occurrences(world, data)}


@dataclass
class Instance:
    orig: Start
    id: str
    data: dict[str, Any]
    seq: int
    updated_ts: float
    stored: bool


def instances(
    world: World,
    cal_id: str,
    master: StoredEvent,
    lo: datetime | None = None,
    hi: datetime | None = None,
) -> list[Instance]:
    store = world.events[cal_id]
    out = []
    for orig in occurrences(world, master.data, lo, hi):
        iid = instance_id(master.data["id"], orig)
        exc = store.get(iid)
        if exc is not None and not exc.data.get("_orphan"):
            out.append(Instance(orig, iid, exc.data, exc.seq, exc.updated_ts, True))
        else:
            data = virtual(master.data, orig, cal_id)
            out.append(Instance(orig, iid, data, master.seq, master.updated_ts, False))
    return out
