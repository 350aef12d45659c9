"""Pull: read Google's changes (every page first), guard against mass deletion, apply each
event in its own transaction, match or import what is new, and only then store the sync token.

A crash anywhere leaves the old token in place, so the next run lists the same changes again;
applying them twice is harmless because each event is compared by content and etag.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, time, timedelta

from calsync.domain.activity import ActivityInvalid, validate
from calsync.domain.fields import SyncFields, content_hash
from calsync.domain.ids import activity_id_from_event_id, google_event_id
from calsync.domain.matching import match
from calsync.google import errors
from calsync.google.models import Event
from calsync.store import activities, bindings, links, runs
from calsync.store.statuses import ChangeOrigin, Code, LinkState, PrivateEvents

from . import filters, importing, mapping
from .codes import TEXTS
from .context import Ctx
from .reconcile import Result, agree, first_link, reconcile

log = logging.getLogger(__name__)

MAX_RESULTS = 2500  # Google's largest page
GUARD_MIN = 20  # the mass-delete guard ignores fewer removals than this
IMPORT_CHUNK = 100  # new events stored per transaction


class MassDelete(Exception):
    """The pull would delete too much; the binding was paused instead."""


async def list_all(ctx: Ctx) -> tuple[list[Event], str | None, str | None]:
    """Every page of the incremental (or full) listing; the sync token comes with the last."""
    if ctx.settings.sync_token and not ctx.progress.full:
        pages = ctx.settings.client.list_events(
            ctx.settings.calendar_id,
            sync_token=ctx.settings.sync_token,
            show_deleted=True,
            max_results=MAX_RESULTS,
        )
    else:
        pages = ctx.settings.client.list_events(
            ctx.settings.calendar_id,
            time_min=ctx.settings.window_start,
            show_deleted=True,
            single_events=False,
            max_results=MAX_RESULTS,
        )
    events: list[Event] = []
    zone: str | None = None
    async for page in pages:
        events.extend(page.items)
        zone = zone or page.time_zone
    return events, pages.next_sync_token, zone


async def pull(ctx: Ctx) -> None:
    """Raises MassDelete when the guard paused the binding (nothing applied)."""
    try:
        events, token, zone = await list_all(ctx)
    except errors.SyncTokenExpired:
        # Google wants a full sync: list the window again and relink; links are kept
        async with ctx.settings.db.session() as session:
            await bindings.drop_sync_token(session, ctx.settings.binding_id)
            await session.commit()
        ctx.progress.full = ctx.progress.scan = True  # the push scans the window too
        ctx.progress.counts["full_resyncs"] += 1
        events, token, zone = await list_all(ctx)
    ctx.learn_time_zone(zone)
    await guard(ctx, events)
    unlinked: list[Event] = []
    known = await _known(ctx, events)
    # occurrences after everything else: their masters are linked or imported by then
    series = [e for e in events if e.recurring_event_id is None]
    occurrences = [e for e in events if e.recurring_event_id is not None]
    for event in series:
        if event.id is None:
            continue
        if event.id not in known:
            # no link and nothing to relink: only matching or import can use it
            policy = filters.policy_for_event(ctx, event)
            if not event.cancelled and filters.importable(event, policy):
                unlinked.append(event)
            continue
        result = await apply(ctx, event)
        if result is Result.UNLINKED:
            unlinked.append(event)
    await import_new(ctx, unlinked)
    new_occurrences: list[Event] = []
    for event in occurrences:
        if event.id is None or not filters.importable(event, filters.policy_for_event(ctx, event)):
            continue
        if event.id in known and await apply(ctx, event) is not Result.UNLINKED:
            continue
        new_occurrences.append(event)
    await importing.import_occurrences(ctx, new_occurrences)
    ctx.progress.counts["pulled"] += len(events)
    await ctx.settings.hooks.fire("after_pull", ctx)
    async with ctx.settings.db.session() as session:
        await bindings.save_sync_token(session, ctx.settings.binding_id, token, zone)
        binding = await bindings.get(session, ctx.settings.binding_id)
        if binding is not None:
            binding.private_events_applied = ctx.settings.private_events
        await session.commit()


async def _known(ctx: Ctx, events: list[Event]) -> set[str]:
    """Event ids that have a link, or name (tag or deterministic id) an activity of the owner:
    these go through reconcile one by one; the rest are new (found in bulk, not per event)."""
    ids = [e.id for e in events if e.id]
    named: dict[str, uuid.UUID] = {}
    for event in events:
        if event.id is None:
            continue
        aid = mapping.tagged_activity_id(
            event, ctx.settings.tenant_id
        ) or activity_id_from_event_id(event.id)
        if aid is not None:
            named[event.id] = aid
    async with ctx.settings.db.session() as session:
        known = set(await links.by_events(session, ctx.settings.binding_id, ids))
        found = await links.activities(session, ctx.settings.tenant_id, set(named.values()))
    owned = {aid for aid, a in found.items() if a.owner_id == ctx.settings.user_id}
    known.update(eid for eid, aid in named.items() if aid in owned)
    return known


async def guard(ctx: Ctx, events: list[Event]) -> None:
    """Pause instead of removing more than half of the binding's linked activities (and more
    than GUARD_MIN): an emptied calendar is far more often an accident than an intention."""
    cancelled = [e.id for e in events if e.cancelled and e.id]
    if len(cancelled) <= GUARD_MIN or ctx.settings.allow_mass_delete:
        return
    async with ctx.settings.db.session() as session:
        found = await links.by_events(session, ctx.settings.binding_id, cancelled)
        ids = [
            lk.activity_id
            for lk in found.values()
            if lk.activity_id and lk.state == LinkState.LINKED
        ]
        acts = await links.activities(session, ctx.settings.tenant_id, ids)
        removing = sum(1 for a in acts.values() if a.deleted_at is None)
        total = await links.count_live(session, ctx.settings.binding_id)
        if removing <= GUARD_MIN or removing * 2 <= total:
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


async def apply(ctx: Ctx, event: Event) -> Result:
    """One event in one transaction; an event the CRM cannot hold is parked as an issue."""
    assert event.id is not None
    if not event.cancelled and not filters.importable(event, await _policy(ctx, event)):
        await importing.forget(ctx, event)  # e.g. private entries after a switch to `skip`
        ctx.progress.counts["ignored"] += 1
        return Result.SKIPPED
    try:
        async with ctx.settings.db.session() as session:
            link = await links.by_event(session, ctx.settings.binding_id, event.id)
            result = await reconcile(ctx, session, event, link)
            await session.commit()
            return result
    except (ActivityInvalid, mapping.Unmappable) as exc:
        await importing.park_event(ctx, event, str(exc))
        return Result.SKIPPED


async def _policy(ctx: Ctx, event: Event) -> str:
    """The private-events policy for a known event: none for the CRM's own entries."""
    if ctx.settings.private_events == PrivateEvents.IMPORT or not filters.is_private(event):
        return ctx.settings.private_events
    assert event.id is not None
    async with ctx.settings.db.session() as session:
        link = await links.by_event(session, ctx.settings.binding_id, event.id)
        activity = None
        if link is not None and link.activity_id is not None:
            activity = await activities.get(session, ctx.settings.tenant_id, link.activity_id)
    if activity is not None:
        return filters.policy_for(ctx, activity)
    return filters.policy_for_event(ctx, event)


async def import_new(ctx: Ctx, events: list[Event]) -> None:
    """Link new events to equal unlinked activities (once, never guessing), import the rest."""
    if not events:
        return
    fields: dict[str, SyncFields] = {}
    for event in events:
        assert event.id is not None
        try:
            fields[event.id] = filters.google_fields(ctx, event)
        except mapping.Unmappable as exc:
            await importing.park_event(ctx, event, str(exc))
    by_id = {e.id: e for e in events if e.id in fields}
    async with ctx.settings.db.session() as session:
        candidates = await links.unlinked_activities(
            session,
            ctx.settings.tenant_id,
            ctx.settings.user_id,
            ctx.settings.binding_id,
            since=ctx.settings.window_start,
            from_calendar=(ctx.settings.calendar_id, ctx.settings.google_email),
            starting=None if ctx.progress.full else _starts_around(list(by_id.values())),
        )
        elsewhere = await links.linked_in_other_bindings(
            session, ctx.settings.connection_id, ctx.settings.binding_id, [a.id for a in candidates]
        )
        crm = [(a.id, mapping.activity_fields(a)) for a in candidates if a.id not in elsewhere]
    found = match(list(fields.items()), crm)
    taken: set[str] = set()
    for gid, aid in found.pairs:
        taken.add(gid)
        await _link_pair(ctx, by_id[gid], aid, fields[gid])
    for amb in found.ambiguous:
        taken.update(amb.google)
        await _park_ambiguous(ctx, amb.google, amb.crm, fields[amb.google[0]])
    fresh = []
    for gid, values in fields.items():
        if gid in taken:
            continue
        if importing.special(ctx, by_id[gid]):
            try:
                await importing.import_one(ctx, by_id[gid], values)
            except ActivityInvalid as exc:
                await importing.park_event(ctx, by_id[gid], str(exc))
        else:
            fresh.append((by_id[gid], values))
    for i in range(0, len(fresh), IMPORT_CHUNK):
        await _import(ctx, fresh[i : i + IMPORT_CHUNK])


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


async def _import(ctx: Ctx, chunk: list[tuple[Event, SyncFields]]) -> None:
    """New Google events become activities of the tenant's default import type.

    New events are stored a chunk per transaction: atomic like one event per transaction (a
    crash stores none of the chunk and the unchanged sync token lists them again), without a
    commit per event on an initial import of thousands."""
    checked = []
    for event, g in chunk:
        try:
            checked.append((event, g, validate(mapping.draft(g, None, ctx.settings.time_zone))))
        except ActivityInvalid as exc:
            await importing.park_event(ctx, event, str(exc))
    if not checked:
        return
    async with ctx.settings.db.session() as session:
        created = await activities.create_many(
            session,
            ctx.settings.tenant_id,
            [
                activities.NewActivity(
                    type_key=ctx.settings.tenant.default_import_type_key,
                    owner_id=ctx.settings.user_id,
                    values=values,
                    organizer_email=event.organizer.email if event.organizer else None,
                    source=ctx.settings.source,
                )
                for event, _, values in checked
            ],
            origin=ChangeOrigin.SYNC,
        )
        for (event, g, _), activity in zip(checked, created, strict=True):
            assert event.id is not None
            link = links.new(
                ctx.settings.tenant_id,
                ctx.settings.binding_id,
                activity.id,
                event.id,
                state=LinkState.LINKED,
            )
            agree(link, event, g, crm=mapping.activity_fields(activity))
            session.add(link)
        await session.commit()
    ctx.progress.counts["created"] += len(checked)
