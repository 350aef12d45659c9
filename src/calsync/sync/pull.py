"""Pull: read Google's changes page by page and apply each page as it arrives (the next page
is fetched meanwhile): changes of known events one per transaction, new events matched or
imported in bulk. Deletions of linked entries wait for the end of the listing, where the
mass-delete guard counts them (ids and counts only); the sync token is stored last.

A crash anywhere leaves the old token in place, so the next run lists the same changes again;
applying them twice is harmless because each event is compared by content and etag, and an
event imported before the crash has its link, so it is never imported twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from calsync.domain.activity import ActivityInvalid
from calsync.domain.fields import SyncFields, content_hash
from calsync.domain.ids import activity_id_from_event_id, google_event_id
from calsync.domain.matching import match, match_key
from calsync.google import errors
from calsync.google.calendar import Pages
from calsync.google.models import Event, RawEventsPage
from calsync.store import activities, bindings, bulk_import, links, planner, runs
from calsync.store.base import utcnow
from calsync.store.models import Activity, EventLink
from calsync.store.sqlite_driver import writes_on_loop
from calsync.store.statuses import Code, LinkState, PrivateEvents

from . import filters, fresh, importing, mapping
from .codes import TEXTS
from .context import Ctx, Listed
from .reconcile import Result, first_link, reconcile

log = logging.getLogger(__name__)

#: events a page of the listing: gcal_sync's page size, not Google's largest (2,500): a page
#: is parsed into models whole, and at 2,500 a first import's peak memory was 14 MB higher
#: (bench/import.py, 10,000 events) for 6 requests fewer; a page after the first is fetched
#: while the one before is stored, so more of them cost no waiting
MAX_RESULTS = 1000
GUARD_MIN = 20  # the mass-delete guard ignores fewer removals than this
#: events a pull bulk-imports before it has PostgreSQL's planner statistics refreshed
#: (store.planner.refresh); fewer are autovacuum's business. During the
#: listing only when that would at least double a table (`_statistics`); at its end, always
ANALYZE_AFTER = 1000


class MassDelete(Exception):
    """The pull would delete too much; the binding was paused instead."""


def _listing(ctx: Ctx) -> Pages[RawEventsPage]:
    """The incremental (or full) listing; the sync token comes with its last page. Pages come
    as their bodies (parsed by `stream` when it gets to them): the page read ahead waits as
    bytes, not as models."""
    if ctx.settings.sync_token and not ctx.progress.full:
        return ctx.settings.client.list_events_raw(
            ctx.settings.calendar_id,
            sync_token=ctx.settings.sync_token,
            show_deleted=True,
            max_results=MAX_RESULTS,
        )
    return ctx.settings.client.list_events_raw(
        ctx.settings.calendar_id,
        time_min=ctx.settings.window_start,
        show_deleted=True,
        single_events=False,
        max_results=MAX_RESULTS,
    )


async def _next_page(pages: Pages[RawEventsPage]) -> RawEventsPage | None:
    try:
        return await anext(pages)
    except StopAsyncIteration:
        return None


async def prefetched(pages: Pages[RawEventsPage]) -> AsyncIterator[RawEventsPage]:
    """The pages in order, page n+1 already on its way while the caller stores page n (the
    request waits on the network while this process parses, maps and writes). Hand-written:
    a one-slot read-ahead is a few lines, and the errors stay those of the page they belong
    to (a 410 still comes from the first request)."""
    ahead = asyncio.ensure_future(_next_page(pages))
    try:
        while True:
            page = await ahead
            if page is None:
                return
            ahead = asyncio.ensure_future(_next_page(pages))
            yield page
            del page  # the caller is done with it: not alive while the next one is awaited
    finally:
        if not ahead.done():
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, errors.GoogleError):
                await ahead


@dataclass
class Held:
    """What a streamed pull keeps until the listing has ended, all of it proportional to the
    changes, never to the calendar: deletions of linked entries (the mass-delete guard counts
    them first), series exceptions (their masters may come on a later page) and new events
    that may match an unlinked CRM entry (matching never guesses, so it sees all of them),
    with those entries."""

    cancelled: list[Event] = field(default_factory=list)
    occurrences: list[Event] = field(default_factory=list)
    matchable: list[tuple[Event, SyncFields]] = field(default_factory=list)
    #: the unlinked CRM entries `matchable` may match, as read (id -> fields)
    candidates: dict[uuid.UUID, SyncFields] = field(default_factory=dict)
    #: a full listing's read of all the owner's unlinked entries (None: not read yet), kept
    #: until the listing ends: their ids and fields
    crm: list[tuple[uuid.UUID, SyncFields]] | None = None
    #: the bulk import's chunk transactions: a page's last one may still be written while
    #: the next page is parsed, read and mapped (sync.fresh)
    writes: fresh.Writes = field(default_factory=fresh.Writes)
    #: the pull's count of imported events when the planner's statistics were last refreshed
    analysed_at: int = 0


async def pull(ctx: Ctx) -> None:
    """Raises MassDelete when the guard paused the binding (no deletion applied)."""
    started = utcnow()
    created = ctx.progress.counts.get("created", 0)
    try:
        held, token, zone = await stream(ctx, created)
    except errors.SyncTokenExpired:
        # Google wants a full sync: list the window again and relink; links are kept
        async with ctx.settings.db.session() as session:
            await bindings.drop_sync_token(session, ctx.settings.binding_id)
            await session.commit()
        ctx.progress.full = ctx.progress.scan = True  # the push scans the window too
        ctx.progress.counts["full_resyncs"] += 1
        held, token, zone = await stream(ctx, created)  # what the first one imported counts
    deletions = [e.id for e in (*held.cancelled, *held.occurrences) if e.cancelled and e.id]
    await guard(ctx, deletions, started)
    unlinked: list[Event] = []
    for event in held.cancelled:
        if await apply(ctx, event) is Result.UNLINKED:
            unlinked.append(event)
    await import_new(ctx, unlinked)
    held.crm = None
    await _import_matchable(ctx, held.matchable, held.candidates)
    # occurrences after everything else: their masters are linked or imported by then
    known = await _known(ctx, held.occurrences)
    new_occurrences: list[Event] = []
    for event in held.occurrences:
        assert event.id is not None
        if event.id in known and await apply(ctx, event, known[event.id]) is not Result.UNLINKED:
            continue
        new_occurrences.append(event)
    await importing.import_occurrences(ctx, new_occurrences)
    await ctx.settings.hooks.fire("after_pull", ctx)
    if ctx.progress.counts.get("created", 0) - held.analysed_at >= ANALYZE_AFTER:
        async with ctx.settings.db.session() as session:
            await planner.refresh(session)  # before the push's window queries
            await session.commit()
    # the token is stored by the engine with the run's end (one transaction fewer a sync)
    ctx.progress.listed = Listed(token, zone)


async def stream(ctx: Ctx, analysed_at: int) -> tuple[Held, str | None, str | None]:
    """Apply each page as it arrives: changes of known events, new events imported (a chunk
    per transaction); what must wait for the end of the listing is `Held`. `analysed_at`: the
    count of created events the planner's statistics last saw (the pull's start)."""
    pages = _listing(ctx)
    held = Held(analysed_at=analysed_at)
    zone: str | None = None
    try:
        async for raw in prefetched(pages):
            zone = zone or raw.time_zone
            ctx.learn_time_zone(zone)  # before anything is written
            await asyncio.sleep(0)  # a chunk write just started sends its first statement
            events = raw.parse().items
            del raw
            await _page(ctx, events, held)
            ctx.progress.counts["pulled"] += len(events)
            del events
            await _statistics(ctx, held)
        await held.writes.wait()  # every import of the listing committed
    except BaseException:
        await held.writes.settle()  # nothing left writing behind the error
        raise
    return held, pages.next_sync_token, zone


async def _statistics(ctx: Ctx, held: Held) -> None:
    """PostgreSQL: the planner's statistics refreshed while a large import streams, when the
    rows imported since they were taken would at least double a table (the first import into
    a new database; a table that had 500 rows taking 40,000). Each page's link lookups
    (`_known`) are planned from them: with a near-empty table in them, the plan compared
    every link of the binding with the page's 1,000 ids, and a first import of 50,000 events
    spent over a minute in those lookups. The writes in flight are committed first, so the
    statistics count every imported row: a few times per import, at each doubling at most."""
    imported = ctx.progress.counts.get("created", 0) + held.writes.pending - held.analysed_at
    if imported < ANALYZE_AFTER or ctx.settings.db.dialect != "postgresql":
        return
    async with ctx.settings.db.session() as session:
        if not await planner.behind(session, imported):
            return
    await held.writes.wait()
    async with ctx.settings.db.session() as session:
        await planner.refresh(session)
        await session.commit()
    held.analysed_at = ctx.progress.counts.get("created", 0)


async def _page(ctx: Ctx, events: list[Event], held: Held) -> None:
    series = [e for e in events if e.id is not None and e.recurring_event_id is None]
    # the previous page's last chunk may still be written: an event listed again waits for it
    await held.writes.wait_for([e.id for e in events if e.id is not None])
    for event in events:
        if event.id is not None and event.recurring_event_id is not None:
            if filters.importable(event, filters.policy_for_event(ctx, event)):
                held.occurrences.append(event)
    known = await _known(ctx, series)
    unlinked: list[Event] = []
    for event in series:
        assert event.id is not None
        if event.id not in known:
            # no link and nothing to relink: only matching or import can use it
            policy = filters.policy_for_event(ctx, event)
            if not event.cancelled and filters.importable(event, policy):
                unlinked.append(event)
            continue
        if event.cancelled:
            # applied once the guard has counted them all (their link and entry read then)
            held.cancelled.append(event)
            continue
        if await apply(ctx, event, known[event.id]) is Result.UNLINKED:
            unlinked.append(event)
    await import_new(ctx, unlinked, held)


#: a known event's link and the link's activity as `_known` read them (None: the event names
#: an activity of the owner but has no link, which reconcile rebuilds)
Read = tuple[EventLink, Activity | None] | None


async def _known(ctx: Ctx, events: list[Event]) -> dict[str, Read]:
    """Event ids that have a link, or name (tag or deterministic id) an activity of the owner:
    these go through reconcile one by one; the rest are new (found in bulk, not per event).
    A linked event comes with its link and activity, read for its reconcile with the others'
    (store.links.with_activities: one statement, not three per event)."""
    ids = [e.id for e in events if e.id]
    if not ids:
        return {}
    async with ctx.settings.db.session() as session:
        known: dict[str, Read] = dict(
            await links.with_activities(
                session, ctx.settings.tenant_id, ctx.settings.binding_id, ids
            )
        )
        # the activities the others name, if any (an event already linked goes through
        # reconcile anyway: the usual case of an incremental sync reads no more)
        named: dict[str, uuid.UUID] = {}
        for event in events:
            if event.id is None or event.id in known:
                continue
            aid = mapping.tagged_activity_id(
                event, ctx.settings.tenant_id
            ) or activity_id_from_event_id(event.id)
            if aid is not None:
                named[event.id] = aid
        if named:
            owned = await bulk_import.owned_activity_ids(
                session, ctx.settings.tenant_id, ctx.settings.user_id, set(named.values())
            )
            known.update((eid, None) for eid, aid in named.items() if aid in owned)
    return known


async def guard(ctx: Ctx, cancelled: list[str], started: datetime) -> None:
    """Pause instead of removing more than half of the binding's linked activities (and more
    than GUARD_MIN): an emptied calendar is far more often an accident than an intention.

    Works from ids and counts: `cancelled` are the listed deletions of known events (held
    back, unapplied, until now); the base is the live links the binding had before this pull
    (`started`), as if nothing the stream imported meanwhile had been there."""
    if len(cancelled) <= GUARD_MIN or ctx.settings.allow_mass_delete:
        return
    async with ctx.settings.db.session() as session:
        removing = await bulk_import.count_live_linked(session, ctx.settings.binding_id, cancelled)
        if removing <= GUARD_MIN:
            return
        total = await bulk_import.count_live_links(session, ctx.settings.binding_id, before=started)
        if removing * 2 <= total:
            return
        reason = (
            f"Sync paused: Google reported {removing} of the {total} synced appointments of "
            "this calendar as deleted. Nothing was deleted in the CRM. If you really emptied "
            "the calendar, apply the deletions; otherwise restore the events in Google Calendar "
            "(Bin) or check other tools syncing this calendar, then resume."
        )
        await bindings.pause_for_guard(session, ctx.settings.binding_id, reason, removing)
        await runs.report_issue(
            session,
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            ctx.settings.run_id,
            code=Code.MASS_DELETE_GUARD,
            message=reason,
            remedy=TEXTS[Code.MASS_DELETE_GUARD].remedy,
        )
        await session.commit()
    ctx.progress.counts["guarded"] = removing
    raise MassDelete(reason)


async def apply(ctx: Ctx, event: Event, read: Read = None) -> Result:
    """One event in one transaction; an event the CRM cannot hold is parked as an issue.
    `read`: its link and activity as read with its page (`_known`), else read here. Read
    before this transaction, they are as current as a read in it: the activity's version is
    checked under its row lock before it is written (store.activities.update), and the link
    is written by this binding's sync alone, which holds the binding's lock."""
    assert event.id is not None
    if not event.cancelled and not filters.importable(event, await _policy(ctx, event, read)):
        await importing.forget(ctx, event)  # e.g. private entries after a switch to `skip`
        ctx.progress.counts["ignored"] += 1
        return Result.SKIPPED
    try:
        async with ctx.settings.db.session() as session:
            activity = None
            if read is None:
                link = await links.by_event(session, ctx.settings.binding_id, event.id)
            else:
                link, activity = read
                session.add(link)  # read in `_known`'s session: this one writes them
                if activity is not None:
                    session.add(activity)
            # one event's few writes: on SQLite those after the first on the loop's thread
            with writes_on_loop():
                result = await reconcile(ctx, session, event, link, activity)
                await session.commit()
            return result
    except (ActivityInvalid, mapping.Unmappable) as exc:
        await importing.park_event(ctx, event, str(exc))
        return Result.SKIPPED


async def _policy(ctx: Ctx, event: Event, read: Read = None) -> str:
    """The private-events policy for a known event: none for the CRM's own entries."""
    if ctx.settings.private_events == PrivateEvents.IMPORT or not filters.is_private(event):
        return ctx.settings.private_events
    assert event.id is not None
    activity = read[1] if read is not None else None
    if read is None:
        async with ctx.settings.db.session() as session:
            link = await links.by_event(session, ctx.settings.binding_id, event.id)
            if link is not None and link.activity_id is not None:
                activity = await activities.get(session, ctx.settings.tenant_id, link.activity_id)
    if activity is not None:
        return filters.policy_for(ctx, activity)
    return filters.policy_for_event(ctx, event)


async def import_new(ctx: Ctx, events: list[Event], held: Held | None = None) -> None:
    """Link new events to equal unlinked activities (once, never guessing), import the rest.

    Streamed (`held` given): an event whose match key no unlinked CRM entry has is imported
    at once; the others wait in `held` for `_import_matchable` at the end of the listing, so
    a key met twice across pages is still reported as ambiguous, never guessed. The entries
    they may match wait with them: the end of the listing does not read them again, it only
    drops those linked or deleted since (store.links.still_unlinked)."""
    if not events:
        return
    fields: list[tuple[Event, SyncFields]] = []
    for n, event in enumerate(events, 1):
        assert event.id is not None
        if n % fresh.YIELD_EVERY == 0:
            await asyncio.sleep(0)  # the previous page's last chunk goes on being written
        try:
            fields.append((event, filters.google_fields(ctx, event)))
        except mapping.Unmappable as exc:
            await importing.park_event(ctx, event, str(exc))
    if held is None:
        await _import_matchable(ctx, fields)
        return
    if not fields:
        return
    # a full listing reads all the owner's unlinked entries, once; an incremental one those
    # starting near this page's new events (matching needs an equal start)
    found = held.crm if held.crm is not None else await _candidates(ctx, _around(ctx, fields))
    if ctx.progress.full:
        held.crm = found
    if not found:  # nothing to match (a first import's usual case): no keys to compute
        await fresh.import_fresh(ctx, fields, held.writes)
        return
    keys = {match_key(values) for _, values in found}
    matchable = [(e, g) for e, g in fields if match_key(g) in keys]
    held.matchable += matchable
    # the entries they may match are kept for the end of the listing (not read again)
    wanted = {match_key(g) for _, g in matchable}
    held.candidates.update((aid, c) for aid, c in found if match_key(c) in wanted)
    await fresh.import_fresh(
        ctx, [(e, g) for e, g in fields if match_key(g) not in keys], held.writes
    )


async def _candidates(ctx: Ctx, around: list[Event] | None) -> list[tuple[uuid.UUID, SyncFields]]:
    """The owner's unlinked CRM entries new Google events may be matched with: all of them in
    a full sync (`around` None), else those starting near one of `around`'s events."""
    async with ctx.settings.db.session() as session:
        candidates = await links.unlinked_activities(
            session,
            ctx.settings.tenant_id,
            ctx.settings.user_id,
            ctx.settings.binding_id,
            since=ctx.settings.window_start,
            from_calendar=(ctx.settings.calendar_id, ctx.settings.google_email),
            starting=None if ctx.progress.full or around is None else _starts_around(around),
        )
        elsewhere = await links.linked_in_other_bindings(
            session, ctx.settings.connection_id, ctx.settings.binding_id, [a.id for a in candidates]
        )
        return [(a.id, mapping.activity_fields(a)) for a in candidates if a.id not in elsewhere]


async def _import_matchable(
    ctx: Ctx,
    fields: list[tuple[Event, SyncFields]],
    candidates: dict[uuid.UUID, SyncFields] | None = None,
) -> None:
    """Match new events with the owner's unlinked entries (read now, or `candidates` read
    while streaming: those linked or deleted since are left out), import the rest."""
    if not fields:
        return
    by_id = {e.id: e for e, _ in fields}
    values = {e.id: g for e, g in fields if e.id is not None}
    if candidates is None:
        crm = await _candidates(ctx, list(by_id.values()))
    else:
        async with ctx.settings.db.session() as session:
            still = await links.still_unlinked(
                session,
                ctx.settings.tenant_id,
                ctx.settings.user_id,
                ctx.settings.binding_id,
                list(candidates),
            )
        crm = [(aid, c) for aid, c in candidates.items() if aid in still]
    found = match(list(values.items()), crm)
    taken: set[str] = set()
    for gid, aid in found.pairs:
        taken.add(gid)
        await _link_pair(ctx, by_id[gid], aid, values[gid])
    for amb in found.ambiguous:
        taken.update(amb.google)
        await _park_ambiguous(ctx, amb.google, amb.crm, values[amb.google[0]])
    await fresh.import_fresh(ctx, [(e, g) for e, g in fields if e.id not in taken])


def _around(ctx: Ctx, fields: list[tuple[Event, SyncFields]]) -> list[Event] | None:
    return None if ctx.progress.full else [e for e, _ in fields]


def _starts_around(events: list[Event]) -> tuple[datetime, datetime] | None:
    """A range holding every start an entry equal to one of these events can have (matching
    needs an equal start): a day either side of theirs covers any time zone and all-day
    dates. None (every entry) when an event has no start."""
    starts = []
    for event in events:
        if event.start is None:
            return None
        if event.start.date_time is not None:
            at = event.start.date_time
            starts.append(at if at.tzinfo is not None else at.replace(tzinfo=UTC))
        elif event.start.date is not None:
            starts.append(datetime.combine(event.start.date, time(), UTC))
        else:
            return None
    if not starts:
        return None
    return min(starts) - timedelta(days=1), max(starts) + timedelta(days=1)


async def _link_pair(ctx: Ctx, event: Event, activity_id: object, g: SyncFields) -> None:
    assert event.id is not None
    try:
        async with ctx.settings.db.session() as session:
            activity = await activities.get(session, ctx.settings.tenant_id, activity_id)  # type: ignore[arg-type]
            if activity is None:
                return
            link = await links.by_activity(session, ctx.settings.binding_id, activity.id)
            if link is None:
                link = links.new(
                    ctx.settings.tenant_id,
                    ctx.settings.binding_id,
                    activity.id,
                    event.id,
                    state=LinkState.LINKED,
                )
                session.add(link)
            link.google_event_id = event.id
            policy = filters.policy_for(ctx, activity)
            if policy != ctx.settings.private_events:
                g = filters.google_fields(ctx, event, policy)
            link.read_only = filters.read_only(ctx, event, policy)
            await first_link(ctx, session, link, activity, event, g)
            await runs.resolve_issues(session, ctx.settings.binding_id, activity_id=activity.id)
            await session.commit()
        ctx.progress.counts["linked"] += 1
    except ActivityInvalid as exc:
        await importing.park_event(ctx, event, str(exc))


async def _park_ambiguous(
    ctx: Ctx, event_ids: tuple[str, ...], activity_ids: tuple[object, ...], g: SyncFields
) -> None:
    """Several entries look the same: report them and keep the CRM ones out of Google until a
    person makes them differ, instead of guessing which belongs to which."""
    async with ctx.settings.db.session() as session:
        for aid in activity_ids:
            activity = await activities.get(session, ctx.settings.tenant_id, aid)  # type: ignore[arg-type]
            if activity is None:
                continue
            if await links.by_activity(session, ctx.settings.binding_id, activity.id) is None:
                c = mapping.activity_fields(activity)
                session.add(
                    links.new(
                        ctx.settings.tenant_id,
                        ctx.settings.binding_id,
                        activity.id,
                        google_event_id(activity.id),
                        state=LinkState.PARKED,
                        crm_hash=content_hash(c),
                    )
                )
        await runs.report_issue(
            session,
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            ctx.settings.run_id,
            code=Code.AMBIGUOUS_MATCH,
            message=(
                f"{len(event_ids)} Google event(s) and {len(activity_ids)} CRM activities look "
                f"the same ({g.summary!r} at {g.start}); calsync did not guess which belong "
                f"together. Google events: {', '.join(event_ids)}."
            ),
            remedy=TEXTS[Code.AMBIGUOUS_MATCH].remedy,
            google_event_id=event_ids[0],
        )
        await session.commit()
    ctx.progress.counts["issues"] += 1
