"""Calendar: a week of the user's CRM activities — occurrences expanded, an all-day row, where
each entry came from (CRM or Google), private entries marked."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from calsync.store import activities, bindings, connections
from calsync.store.models import Change

from .. import i18n
from .common import db_of, render, viewer

router = APIRouter()
PRIVATE = ("private", "confidential")


@dataclass(frozen=True)
class Entry:
    subject: str
    location: str | None
    start: datetime  # in the shown zone
    end: datetime
    all_day: bool
    source: str  # crm / google
    private: bool
    recurring: bool
    cancelled: bool


@dataclass(frozen=True)
class Day:
    date: date
    all_day: list[Entry]
    timed: list[Entry]
    today: bool


def _monday(value: date) -> date:
    return value - timedelta(days=value.weekday())


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@router.get("/calendar", include_in_schema=False)
async def week(request: Request, week: str | None = None) -> Response:
    who = await viewer(request)
    db = db_of(request)
    async with db.session() as s:
        conn = await connections.for_user(s, who.user.id)
        stored = list(await bindings.for_connection(s, conn.id)) if conn else []
        zone = _zone(next((b.time_zone for b in stored if b.time_zone), None))
        today = datetime.now(zone).date()
        try:
            first = _monday(date.fromisoformat(week)) if week else _monday(today)
        except ValueError:
            first = _monday(today)
        start = datetime.combine(first, time(), zone).astimezone(UTC)
        end = datetime.combine(first + timedelta(days=7), time(), zone).astimezone(UTC)
        instances = await activities.list_expanded(
            s,
            who.tenant.id,
            start=start,
            end=end,
            viewer=activities.Viewer(who.user.id, who.user.email),
        )
        ids = {i.activity.id for i in instances} | {
            i.activity.recurring_parent_id for i in instances if i.activity.recurring_parent_id
        }
        origins: dict[uuid.UUID, str] = {}
        if ids:
            rows = await s.execute(
                select(Change.activity_id, Change.origin).where(
                    Change.activity_id.in_(list(ids)), Change.kind == "created"
                )
            )
            origins = {activity_id: origin for activity_id, origin in rows.all()}
        await s.commit()
    days = {
        first + timedelta(days=n): Day(first + timedelta(days=n), [], [], False) for n in range(7)
    }
    for item in instances:
        act = item.activity
        occ = item.occurrence
        origin = origins.get(act.id) or origins.get(act.recurring_parent_id or act.id) or "api"
        entry = Entry(
            subject=act.subject,
            location=act.location,
            start=(occ.start_utc if occ else act.start_utc).astimezone(zone),
            end=(occ.end_utc if occ else act.end_utc).astimezone(zone),
            all_day=act.all_day,
            source="google" if origin == "sync" else "crm",
            private=act.visibility in PRIVATE,
            recurring=occ is not None or act.recurring_parent_id is not None,
            cancelled=act.status == "cancelled",
        )
        if act.all_day:
            local_start = (occ.start_local if occ else act.start_local).date()
            local_end = (occ.end_local if occ else act.end_local).date()
            day = local_start
            while day < max(local_end, local_start + timedelta(days=1)):
                if day in days:
                    days[day].all_day.append(entry)
                day += timedelta(days=1)
        elif entry.start.date() in days:
            days[entry.start.date()].timed.append(entry)
    shown = [
        Day(d.date, d.all_day, sorted(d.timed, key=lambda e: e.start), d.date == today)
        for d in days.values()
    ]
    return render(
        request,
        "calendar.html",
        {
            "days": shown,
            "first": first,
            "last": first + timedelta(days=6),
            "previous": (first - timedelta(days=7)).isoformat(),
            "next": (first + timedelta(days=7)).isoformat(),
            "this_week": _monday(today).isoformat(),
            "zone": str(zone),
            "has_all_day": any(d.all_day for d in shown),
            "N_": i18n.N_,
        },
        who=who,
    )
