"""Listing: which stored events and instances an events.list answers, in which order, and how
pages and sync tokens are cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from .. import errors
from ..clock import rfc3339
from ..state import Calendar, StoredEvent, World
from .index import index_of
from .query import Query, matches, updated_ok
from .request import Ctx
from .series import instances
from .storage import exceptions_of
from .wire import decode_token, encode_token, instant, public, start_value, zone_or_utc


@dataclass
class Item:
    key: tuple[float, float, str]
    data: dict[str, Any]
    minimal: bool = False

    def body(self) -> dict[str, Any]:
        """Built only for the page being answered: lists of 2500 stay cheap."""
        return _minimal(self.data) if self.minimal else public(self.data)


def _minimal(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: data[k] for k in ("kind", "etag", "id", "status") if k in data}
    out["status"] = "cancelled"
    for k in ("recurringEventId", "originalStartTime"):
        if k in data:
            out[k] = data[k]
    return out


def sort_key(
    q: Query, data: dict[str, Any], tz: ZoneInfo, created: int, updated_ts: float
) -> tuple[float, float, str]:
    if q.order_by == "updated":
        return (updated_ts, 0.0, data["id"])
    if q.order_by is None and not q.single:
        return (float(created), 0.0, data["id"])
    t = data.get("start") or data.get("originalStartTime")
    start_ts = instant(start_value(t), tz).timestamp() if t else 0.0
    if q.order_by == "startTime":
        return (start_ts, 0.0, data["id"])
    return (float(created), start_ts, data["id"])


def _shows(world: World, cal_id: str, ev: StoredEvent, q: Query, tz: ZoneInfo) -> bool:
    """Does a non-expanded list (singleEvents=false) show this stored event?"""
    d = ev.data
    cancelled = d.get("status") == "cancelled"
    if q.since is not None:
        return ev.seq > q.since and (cancelled or matches(q, d, tz))
    if not updated_ok(q, ev.updated_ts):
        return False
    if cancelled:
        master = (
            world.events[cal_id].get(d["recurringEventId"]) if "recurringEventId" in d else None
        )
        live_exception = master is not None and master.data.get("status") != "cancelled"
        if not (q.show_deleted or q.updated_min or live_exception):
            return False
        return matches(q, d, tz)
    if d.get("recurrence"):
        return _series_matches(world, cal_id, ev, q, tz)
    return matches(q, d, tz)


def collect_plain(
    world: World, cal: Calendar, q: Query, after: tuple[float, float, str] | None, limit: int
) -> list[Item]:
    """A non-expanded list: the first `limit` items after the cursor `after`, in the list's
    order. Walks the calendar's index from the cursor on, so a page looks at the events it
    shows (and those it filters out), not at the whole calendar."""
    tz = zone_or_utc(cal.time_zone)
    idx = index_of(world, cal.id)
    created = None if after is None else after[0]
    if q.order_by == "updated":
        events = idx.in_updated_order(None if after is None else (after[0], after[2]))
    elif q.since is not None:  # changed since the sync token
        events = idx.in_created_order(created, idx.seq, q.since + 1)
    elif q.updated_min is not None:
        events = idx.in_created_order(created, idx.updated, q.updated_min.timestamp())
    elif q.show_deleted:
        events = idx.in_created_order(created, None, 0.0)
    else:
        events = idx.in_created_order(created, idx.listable, 1.0)
    items: list[Item] = []
    for ev in events:
        if _shows(world, cal.id, ev, q, tz):
            minimal = ev.data.get("status") == "cancelled" and not q.show_deleted
            key = sort_key(q, ev.data, tz, ev.created_seq, ev.updated_ts)
            items.append(Item(key, ev.data, minimal))
            if len(items) >= limit:
                break
    return items


def collect(world: World, cal: Calendar, q: Query) -> list[Item]:
    """An expanded list (singleEvents=true): every instance the query shows, unsorted. Not
    indexed: a recurring master stands for instances spread over time, so each page collects
    the whole calendar again."""
    tz = zone_or_utc(cal.time_zone)
    store = world.events.get(cal.id, {})
    index_of(world, cal.id).examined += len(store)
    items: list[Item] = []

    def add(data: dict[str, Any], created: int, updated_ts: float) -> None:
        minimal = data.get("status") == "cancelled" and not q.show_deleted
        items.append(Item(sort_key(q, data, tz, created, updated_ts), data, minimal))

    for ev in list(store.values()):
        d = ev.data
        cancelled = d.get("status") == "cancelled"
        master = store.get(d["recurringEventId"]) if "recurringEventId" in d else None

        # singleEvents=true: masters become instances, exceptions are reached through them
        if master is not None:
            continue
        recurring = bool(d.get("recurrence"))
        if q.since is not None:
            if ev.seq > q.since:
                if recurring:
                    for inst in instances(world, cal.id, ev):
                        idata = inst.data
                        if cancelled and idata.get("status") != "cancelled":
                            idata = {**idata, "status": "cancelled"}
                        if idata.get("status") == "cancelled" or matches(q, idata, tz):
                            add(idata, ev.created_seq, inst.updated_ts)
                elif cancelled or matches(q, d, tz):
                    add(d, ev.created_seq, ev.updated_ts)
                for iid, info in d.get("_gone", {}).items():
                    if info["seq"] > q.since:
                        stub: dict[str, Any] = {
                            "kind": "calendar#event",
                            "etag": d["etag"],
                            "id": iid,
                            "status": "cancelled",
                        }
                        if info.get("originalStartTime"):
                            stub["recurringEventId"] = d["id"]
                            stub["originalStartTime"] = info["originalStartTime"]
                        add(stub, ev.created_seq, ev.updated_ts)
            elif recurring:
                for exc in exceptions_of(world, cal.id, d["id"]):
                    if exc.seq > q.since and not exc.data.get("_orphan"):
                        if exc.data.get("status") == "cancelled" or matches(q, exc.data, tz):
                            add(exc.data, ev.created_seq, exc.updated_ts)
            continue

        if not recurring:
            if not updated_ok(q, ev.updated_ts):
                continue
            if cancelled and not (q.show_deleted or q.updated_min):
                continue
            if matches(q, d, tz):
                add(d, ev.created_seq, ev.updated_ts)
            continue
        if cancelled and not q.show_deleted and not q.updated_min:
            continue
        for inst in instances(world, cal.id, ev, q.time_min, q.time_max):
            idata = inst.data
            if cancelled:
                idata = {**idata, "status": "cancelled"}
            if not updated_ok(q, inst.updated_ts):
                continue
            if idata.get("status") == "cancelled" and not (q.show_deleted or q.updated_min):
                continue
            if matches(q, idata, tz):
                add(idata, ev.created_seq, inst.updated_ts)
    return items


def _series_matches(world: World, cal_id: str, ev: StoredEvent, q: Query, tz: ZoneInfo) -> bool:
    """A master is listed when its own fields match and any instance overlaps the window."""
    if q.time_min is None and q.time_max is None:
        return matches(q, ev.data, tz)
    plain = Query(**{**q.__dict__, "time_min": None, "time_max": None})
    if not matches(plain, ev.data, tz):
        return False
    window = Query(**{**q.__dict__, "terms": [], "ical_uid": None, "event_types": None})
    window.private_props, window.shared_props = [], []
    return any(
        matches(window, inst.data, tz)
        for inst in instances(world, cal_id, ev, q.time_min, q.time_max)
        if inst.data.get("status") != "cancelled"
    )


def envelope(ctx: Ctx, snapshot: int) -> dict[str, Any]:
    last = index_of(ctx.world, ctx.cal.id).last_updated()
    if last is None:
        last = ctx.world.clock.now()
    out: dict[str, Any] = {
        "kind": "calendar#events",
        "etag": ctx.world.etag(snapshot),
        "summary": ctx.cal.summary,
    }
    if ctx.cal.description:
        out["description"] = ctx.cal.description
    out.update(
        {
            "updated": rfc3339(last),
            "timeZone": ctx.cal.time_zone,
            "accessRole": ctx.role,
            "defaultReminders": (
                [{"method": "popup", "minutes": 10}] if ctx.role in ("owner", "writer") else []
            ),
        }
    )
    return out


def cut_page(
    ctx: Ctx,
    items: list[Item],
    *,
    max_results: int,
    after: tuple[float, float, str] | None,
    token_state: dict[str, Any],
) -> tuple[list[dict[str, Any]], str | None]:
    items.sort(key=lambda i: i.key)
    if after is not None:
        items = [i for i in items if i.key > after]
    page = items[:max_results]
    next_token = None
    if len(items) > max_results:
        next_token = encode_token({**token_state, "k": list(page[-1].key)})
    return [i.body() for i in page], next_token


def sync_seq(world: World, cal: Calendar, token: str) -> int:
    data = decode_token(token)
    if (
        not isinstance(data, dict)
        or data.get("c") != cal.id
        or not isinstance(data.get("s"), int)
        or data["s"] > world.seq
        or data["s"] < cal.sync_floor_seq
    ):
        raise errors.full_sync_required()
    return int(data["s"])


def decode_page(world: World, cal: Calendar, token: str, mode: str) -> dict[str, Any]:
    data = decode_token(token)
    if (
        not isinstance(data, dict)
        or data.get("c") != cal.id
        or data.get("m") != mode
        or not isinstance(data.get("s"), int)
        or not isinstance(data.get("k"), list)
        or len(data["k"]) != 3
    ):
        raise errors.invalid("Invalid page token value.", "pageToken")
    since = data.get("t")
    if since is not None and since < cal.sync_floor_seq:
        raise errors.full_sync_required()
    return data
