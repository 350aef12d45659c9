"""What the push does when a setting changed under entries already synced (docs/sync.md, "When
you change a setting"): the CRM's entries follow a new export calendar, and an entry that
stopped being exported leaves Google.

- **Export calendar changed**: an entry made in the CRM whose event calsync wrote into another
  calendar of the same account, which no longer receives CRM entries, is moved to the export
  calendar with `events.move` (same event id, guests and conference kept; nobody e-mailed).
  Its link is marked `moving` first, so the old calendar's sync leaves it alone; a crash
  anywhere is finished by the next run (the event is found in one of the two calendars).
  Entries that came from Google are never moved or copied.
- **An account used before** (connected again, or switched away and back): on the first sync of
  the calendar that receives CRM entries, the events calsync wrote for the user's CRM entries
  in calendars of this account that no calendar of the connection names any more (the old
  export calendar, forgotten with the account change) are moved here (`gather`), so the first
  pull relinks them instead of the push writing a second copy.
- **Stopped being exported** (its type no longer exported, or made a project task): an event
  calsync wrote for a CRM entry is deleted from Google, the entry stays in the CRM; exported
  again later, it comes back once (the push restores the same event). An entry linked to an
  event calsync did not write (imported from Google, or matched on the first sync) that
  becomes a project task is *detached*: it stays in both places and neither side is written
  any more; another type attaches it again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.activity import PROJECT_TASK
from calsync.domain.fields import content_hash
from calsync.domain.ids import google_event_id
from calsync.google import calls, errors
from calsync.google.calls import ApiCall
from calsync.google.models import Event
from calsync.store import bindings, links, runs
from calsync.store.activities import made_in_crm
from calsync.store.models import Activity, CalendarBinding, EventLink
from calsync.store.statuses import BindingRole, Code, LinkState, PrivateEvents

from . import filters
from .codes import TEXTS
from .context import Ctx
from .mapping import TENANT_KEY, tagged_activity_id
from .ops import Settled

log = logging.getLogger(__name__)


def still_exported(ctx: Ctx, activity: Activity) -> bool:
    """Whether a linked top-level entry keeps being written to Google: never a project task;
    an entry made in the CRM only while its type is exported (one from Google regardless)."""
    if activity.type_key == PROJECT_TASK:
        return False
    return not made_in_crm(activity) or filters.exportable(ctx.settings.tenant, activity)


def written_by_calsync(activity: Activity, link: EventLink) -> bool:
    """The event is the one calsync inserted for this CRM entry (its deterministic id)."""
    return made_in_crm(activity) and link.google_event_id == google_event_id(activity.id)


async def withdraw(
    ctx: Ctx,
    session: AsyncSession,
    activity: Activity,
    link: EventLink,
    *,
    binding: CalendarBinding | None = None,
) -> ApiCall[Any] | None:
    """The Google write for an entry that stopped being exported: the delete of the event
    calsync wrote (the link goes when Google confirms), or None after detaching the link of an
    event calsync did not write. A series' occurrences go with it. `binding`: the link's
    calendar when it is not this run's (an unticked one, see `withdrawn_elsewhere`)."""
    binding_id = binding.id if binding is not None else ctx.settings.binding_id
    calendar_id = binding.google_calendar_id if binding is not None else ctx.settings.calendar_id
    for other in (
        await links.by_activities(session, binding_id, await links.exceptions(session, activity.id))
    ).values():
        await links.remove(session, other)
    if written_by_calsync(activity, link) and link.state in (LinkState.LINKED, LinkState.PENDING):
        ctx.progress.counts["withdrawn"] += 1
        return calls.events_delete(
            calendar_id,
            link.google_event_id,
            if_match=link.google_etag if link.state == LinkState.LINKED else None,
            send_updates="none",
        )
    link.state = LinkState.DETACHED
    ctx.progress.counts["detached"] += 1
    return None


def withdrawn_elsewhere(
    ctx: Ctx, activity: Activity, elsewhere: tuple[EventLink, CalendarBinding] | None
) -> tuple[EventLink, CalendarBinding] | None:
    """The event to delete from an unticked calendar for a CRM entry that was deleted in the
    CRM or stopped being exported: that calendar's runs are skipped, so the export calendar's
    run withdraws it (an untick keeps entries in place, but the CRM's own entry never stays in
    Google once it is deleted, a project task or of a type no longer exported)."""
    if elsewhere is None or not ctx.settings.exports:
        return None
    link, binding = elsewhere
    if binding.role != BindingRole.UNSELECTED:
        return None
    if activity.deleted_at is None and still_exported(ctx, activity):
        return None
    if link.state not in (LinkState.LINKED, LinkState.PENDING) or not written_by_calsync(
        activity, link
    ):
        return None
    return elsewhere


def attach(link: EventLink) -> None:
    """A detached entry is exported again: its CRM side is owed (a patch with If-Match, so a
    Google change made meanwhile is re-read and merged first)."""
    link.state = LinkState.LINKED
    link.crm_hash = None


def movable(
    ctx: Ctx, activity: Activity, elsewhere: tuple[EventLink, CalendarBinding] | None
) -> EventLink | None:
    """The link to move into this (export) calendar: an event calsync wrote for this CRM entry
    in another calendar of the account that no longer receives CRM entries."""
    if elsewhere is None or not ctx.settings.exports:
        return None
    link, binding = elsewhere
    if binding.role in (BindingRole.EXPORT, BindingRole.BOTH):
        return None
    if link.state not in (LinkState.LINKED, LinkState.MOVING) or not written_by_calsync(
        activity, link
    ):
        return None
    return link


def move_call(ctx: Ctx, link: EventLink, from_calendar: str) -> ApiCall[Event]:
    link.state = LinkState.MOVING  # committed before the request: the old calendar keeps off it
    return calls.events_move(from_calendar, link.google_event_id, ctx.settings.calendar_id)


async def settle_move(
    ctx: Ctx,
    activity_id: uuid.UUID,
    event_id: str,
    from_binding: uuid.UUID,
    from_calendar: str,
    result: object,
) -> Settled:
    """Store a move's answer; the outcome like push.settle. A move that
    landed answers "again": the next round patches what the CRM changed since the last write."""
    if isinstance(result, errors.GoogleError) and result.needs_reauth:
        raise result
    async with ctx.settings.db.session() as session:
        link = await links.by_activity(session, from_binding, activity_id)
        if link is None or link.state != LinkState.MOVING:
            return Settled.DONE
        if isinstance(result, Event):
            await _arrived(ctx, session, link, from_binding, result)
            await session.commit()
            ctx.progress.counts["moved"] += 1
            # a CRM edit made since the last write is owed here now: one more round writes it
            # (the cursor passes the edit with this run, so it must not wait for the next one)
            return Settled.AGAIN
        if isinstance(result, errors.Deleted | errors.NotFound):
            # gone from the old calendar: an earlier move landed before a crash, or someone
            # deleted it there — look in the new calendar
            try:
                event: Event | None = await ctx.settings.client.get_event(
                    ctx.settings.calendar_id, event_id
                )
            except errors.NotFound:
                event = None
            except errors.GoogleError as exc:
                if exc.needs_reauth:
                    raise
                return Settled.DEFERRED
            if event is not None and not event.cancelled:
                await _arrived(ctx, session, link, from_binding, event)
                ctx.progress.counts["moved"] += 1
            else:
                await _rewrite(ctx, session, link, from_binding)
            await session.commit()
            return Settled.AGAIN  # arrived (a CRM edit may be owed) or to be written afresh
        if isinstance(result, errors.Duplicate):
            # the id was used in the new calendar before (moved away and back): remove the old
            # calendar's event, then the push writes the entry where it now belongs
            try:
                await ctx.settings.client.delete_event(from_calendar, event_id)
            except (errors.NotFound, errors.Deleted):
                pass
            except errors.GoogleError as exc:
                if exc.needs_reauth:
                    raise
                return Settled.DEFERRED
            await _rewrite(ctx, session, link, from_binding)
            await session.commit()
            return Settled.AGAIN
        if isinstance(result, errors.GoogleError) and not result.retryable:
            link.state = LinkState.LINKED  # it stays where it is, one copy, with an issue
            await runs.report_issue(
                session,
                ctx.settings.tenant_id,
                ctx.settings.binding_id,
                ctx.settings.run_id,
                code=Code.MOVE_FAILED,
                message=(
                    "A CRM entry could not be moved from the calendar that received CRM entries "
                    f"before to this one: {result.message}"
                ),
                remedy=TEXTS[Code.MOVE_FAILED].remedy,
                activity_id=activity_id,
                google_event_id=event_id,
            )
            await session.commit()
            ctx.progress.counts["issues"] += 1
            return Settled.PARKED
    return Settled.DEFERRED


async def _arrived(
    ctx: Ctx, session: AsyncSession, link: EventLink, from_binding: uuid.UUID, event: Event
) -> None:
    """The event is in this calendar now: its link (and its occurrences') come along. The
    last-synced snapshot stays the merge base; the etag is taken only when Google holds
    nothing newer, so a change made just before the move is still pulled."""
    await links.move_to(session, from_binding, ctx.settings.binding_id, link)
    link.state = LinkState.LINKED
    link.google_event_id = event.id or link.google_event_id
    g = filters.google_fields(ctx, event, PrivateEvents.IMPORT)
    if content_hash(g) == link.google_hash:
        link.google_etag, link.google_updated = event.etag, event.updated


async def _rewrite(
    ctx: Ctx, session: AsyncSession, link: EventLink, from_binding: uuid.UUID
) -> None:
    """No live copy in either calendar: the entry is written here afresh (a pending link is
    an insert; a 409 finds the old event of ours and restores it)."""
    await links.move_to(session, from_binding, ctx.settings.binding_id, link)
    link.state = LinkState.PENDING
    link.google_etag = None


async def gather(ctx: Ctx) -> None:
    """Before the first sync of a calendar that receives CRM entries: move here the events
    calsync wrote for this user's CRM entries into calendars of this account that no calendar
    of the connection names (an account used before keeps them where they were; DESIGN rule
    10: the same account relinks without duplicates). The first pull then links them as it
    links any event tagged with its activity. Entries linked elsewhere in the connection,
    deleted, not the user's or no longer exported stay where they are."""
    if not ctx.settings.exports or not ctx.progress.full:
        return
    async with ctx.settings.db.session() as session:
        if await links.any_in(session, ctx.settings.binding_id):
            return  # not this calendar's first sync (a 410 or a full sync asked for)
        bound = {
            b.google_calendar_id
            for b in await bindings.for_connection(session, ctx.settings.connection_id)
        }
    try:
        calendars = await ctx.settings.client.calendars()
    except errors.GoogleError as exc:
        if exc.needs_reauth:
            raise
        log.info("gather: calendar list not read", extra={"error": str(exc)})
        return
    for entry in calendars:
        if entry.id in bound or entry.deleted or not entry.writable:
            continue
        found: dict[uuid.UUID, Event] = {}
        try:
            async for page in ctx.settings.client.list_events(
                entry.id,
                private_extended_property={TENANT_KEY: str(ctx.settings.tenant_id)},
                time_min=ctx.settings.window_start,
            ):
                for event in page.items:
                    aid = tagged_activity_id(event, ctx.settings.tenant_id)
                    if aid is None or event.cancelled or event.recurring_event_id:
                        continue  # an exception's instance moves with its series
                    if event.id == google_event_id(aid):
                        found[aid] = event
        except errors.GoogleError as exc:
            if exc.needs_reauth:
                raise
            continue
        if found:
            await _gather_from(ctx, entry.id, found)


async def _gather_from(ctx: Ctx, calendar_id: str, found: dict[uuid.UUID, Event]) -> None:
    async with ctx.settings.db.session() as session:
        acts = await links.activities(session, ctx.settings.tenant_id, set(found))
        linked = await links.linked_in_other_bindings(
            session, ctx.settings.connection_id, ctx.settings.binding_id, list(found)
        )
    for aid, event in found.items():
        activity = acts.get(aid)
        if (
            activity is None
            or aid in linked
            or activity.owner_id != ctx.settings.user_id
            or activity.deleted_at is not None
            or activity.recurring_parent_id is not None
            or not made_in_crm(activity)
            or not filters.exportable(ctx.settings.tenant, activity)
        ):
            continue
        assert event.id is not None
        try:
            await ctx.settings.client.move_event(calendar_id, event.id, ctx.settings.calendar_id)
        except errors.Duplicate:
            # the id was used here before (written here, then moved away; or a push's insert
            # landed before a crash): as in settle_move, the forgotten calendar's copy goes and
            # the push writes the entry here (a 409 restores the event of ours with that id)
            try:
                await ctx.settings.client.delete_event(calendar_id, event.id)
            except (errors.NotFound, errors.Deleted):
                pass
        except (errors.NotFound, errors.Deleted):
            continue
        except errors.GoogleError as exc:
            if exc.needs_reauth:
                raise
            log.info("gather: not moved", extra={"activity": str(aid), "error": str(exc)})
            continue
        ctx.progress.counts["moved"] += 1
