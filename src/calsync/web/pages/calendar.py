"""Calendar: a week of the user's CRM activities — occurrences expanded, an all-day row, where
each entry came from (CRM or Google), private entries marked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from calsync import i18n
from calsync.store import activities, changes
from calsync.store.statuses import ActivitySource, ChangeOrigin
from calsync.sync.filters import BUSY_TITLE

from .common import db_of, render, viewer

router = APIRouter()
N_ = i18n.N_
PRIVATE = ("private", "confidential")


@dataclass(frozen=True)
class Entry:
    subject: str
    location: str | None
    start: datetime  # in the shown zone
    end: datetime
    all_day: bool
    source: str  # ActivitySource: crm / google
    private: bool
    recurring: bool
    cancelled: bool


@dataclass(frozen=True)
class Placed:
    """A timed entry's part on one day of the grid: rows of SLOT minutes, and its lane among
    the entries it overlaps (side by side)."""

    entry: Entry
    row: int  # first slot row, from 0 at the grid's first hour
    span: int
    lane: int = 0
    lanes: int = 1


@dataclass(frozen=True)
class Day:
    date: date
    all_day: list[Entry]
    timed: list[Placed]
    today: bool


SLOT = 15  # minutes per grid row
DAY_START, DAY_END = 8, 18  # hours always shown; earlier/later entries widen the grid


def _minutes(moment: datetime, day: date) -> int:
    """Minutes from `day`'s midnight (wall clock), clipped to the day."""
    if moment.date() < day:
        return 0
    if moment.date() > day:
        return 24 * 60
    return moment.hour * 60 + moment.minute


def _end_hour(entry: Entry, day: date) -> int:
    return min(24, -(-_minutes(entry.end, day) // 60))


def _place(entry: Entry, day: date, top: int) -> Placed:
    start = _minutes(entry.start, day)
    end = max(_minutes(entry.end, day), start + SLOT)
    row = (start - top * 60) // SLOT
    return Placed(entry, row, max(1, -(-(end - top * 60) // SLOT) - row))


def _monday(value: date) -> date:
    return value - timedelta(days=value.weekday())


def _lanes(parts: list[Placed]) -> list[Placed]:
    """Side-by-side lanes for overlapping entries (greedy, in start order)."""
    out: list[Placed] = []
    cluster: list[Placed] = []
    cluster_end = -1

    def close() -> None:
        lanes = max((p.lane for p in cluster), default=0) + 1
        out.extend(Placed(p.entry, p.row, p.span, p.lane, lanes) for p in cluster)

    ends: list[int] = []
    for part in sorted(parts, key=lambda p: (p.row, -p.span)):
        if cluster and part.row >= cluster_end:
            close()
            cluster, ends = [], []
        lane = next((i for i, end in enumerate(ends) if end <= part.row), len(ends))
        if lane == len(ends):
            ends.append(part.row + part.span)
        else:
            ends[lane] = part.row + part.span
        cluster.append(Placed(part.entry, part.row, part.span, lane))
        cluster_end = max(cluster_end, part.row + part.span)
    if cluster:
        close()
    return out


@router.get("/calendar", include_in_schema=False)
async def week(request: Request, week: str | None = None) -> Response:
    who = await viewer(request)
    db = db_of(request)
    zone = i18n.zone_of(who.zone)
    async with db.session() as session:
        today = datetime.now(zone).date()
        try:
            first = _monday(date.fromisoformat(week)) if week else _monday(today)
        except ValueError:
            first = _monday(today)
        start = datetime.combine(first, time(), zone).astimezone(UTC)
        end = datetime.combine(first + timedelta(days=7), time(), zone).astimezone(UTC)
        instances = await activities.list_expanded(
            session,
            who.tenant.id,
            start=start,
            end=end,
            viewer=activities.Viewer(who.user.id, who.user.email),
        )
        ids = {i.activity.id for i in instances} | {
            i.activity.recurring_parent_id for i in instances if i.activity.recurring_parent_id
        }
        origins = await changes.creation_origins(session, ids)
        await session.commit()
    days: dict[date, list[Entry]] = {first + timedelta(days=n): [] for n in range(7)}
    all_day: dict[date, list[Entry]] = {day: [] for day in days}
    for item in instances:
        act = item.activity
        occ = item.occurrence
        origin = (
            origins.get(act.id)
            or origins.get(act.recurring_parent_id or act.id)
            or ChangeOrigin.API
        )
        private = act.visibility in PRIVATE
        subject = act.subject
        if subject == BUSY_TITLE and origin == ChangeOrigin.SYNC:
            subject = i18n.gettext(N_("Busy"))
        entry = Entry(
            subject=subject,
            location=act.location,
            start=(occ.start_utc if occ else act.start_utc).astimezone(zone),
            end=(occ.end_utc if occ else act.end_utc).astimezone(zone),
            all_day=act.all_day,
            source=ActivitySource.GOOGLE if origin == ChangeOrigin.SYNC else ActivitySource.CRM,
            private=private,
            recurring=occ is not None or act.recurring_parent_id is not None,
            cancelled=act.status == "cancelled",
        )
        if act.all_day:
            local_start = (occ.start_local if occ else act.start_local).date()
            local_end = (occ.end_local if occ else act.end_local).date()
            day = local_start
            while day < max(local_end, local_start + timedelta(days=1)):
                if day in all_day:
                    all_day[day].append(entry)
                day += timedelta(days=1)
            continue
        day = entry.start.date()
        while day <= entry.end.date():  # a timed entry past midnight shows on each day
            starts_here = day == entry.start.date()
            if day in days and (starts_here or day < entry.end.date() or entry.end.time() > time()):
                days[day].append(entry)
            day += timedelta(days=1)
    hours = [
        (e.start.hour if e.start.date() == day else 0, _end_hour(e, day))
        for day, entries in days.items()
        for e in entries
    ]
    top = min([DAY_START, *(h for h, _ in hours)])
    bottom = max([DAY_END, *(h for _, h in hours)])
    shown = [
        Day(day, all_day[day], _lanes([_place(e, day, top) for e in entries]), day == today)
        for day, entries in days.items()
    ]
    slots = (bottom - top) * 60 // SLOT
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
            "hours": [(h, datetime.combine(first, time(h % 24), zone)) for h in range(top, bottom)],
            "rows": slots,
            "slots_per_hour": 60 // SLOT,
        },
        who=who,
    )
