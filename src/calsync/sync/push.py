"""Push: write the CRM's changes to Google — inserts, patches of changed fields only, deletes —
in batch requests, without reading anything first.

Which activities: the change feed after the binding's cursor (the owner's changes not made by
the sync itself), links the pull left owing a write, and on a first sync every exportable
activity in the window. A new event gets its deterministic id and a `pending` link committed
before the insert, so a crash after Google created it ends in a 409 and adoption, not a
duplicate. Patches carry If-Match; a 412 re-reads that one event, merges, and patches again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain import recurrence as rec
from calsync.domain.activity import PROJECT_TASK
from calsync.domain.fields import SyncFields, changed_units, content_hash
from calsync.domain.ids import google_event_id
from calsync.domain.recurrence import is_occurrence
from calsync.google import calls, errors
from calsync.google.calls import ApiCall
from calsync.google.models import Event
from calsync.store import activities, changes, links, runs
from calsync.store.activities import made_in_crm
from calsync.store.models import Activity, CalendarBinding, EventLink

from . import filters, mapping, transitions
from .context import Ctx
from .errors import parks
from .reconcile import CANCELLED, create_exception, instance_of, reconcile, write_crm

log = logging.getLogger(__name__)

MAX_ROUNDS = 3  # a 412 or 409 leads to one more round for that entry; a third is left to later
FEED_PAGE = 1000


@dataclass
class Op:
    kind: str  # insert / patch / delete / withdraw / move
    activity_id: uuid.UUID
    event_id: str
    call: ApiCall[Any]
    values: SyncFields | None
    #: a move's old calendar, or the unticked calendar a withdraw deletes from (binding and
    #: Google id); None: this run's calendar
    from_binding: uuid.UUID | None = None
    from_calendar: str | None = None


async def push(ctx: Ctx) -> None:
    seqs, last = await _feed(ctx)
    todo: set[uuid.UUID] = set(seqs) | ctx.progress.to_push
    async with ctx.settings.db.session() as s:
        todo.update(await links.dirty(s, ctx.settings.binding_id))
        # entries that stopped being exported (their type, or the admin's exported types)
        todo.update(
            await links.unexported(
                s,
                ctx.settings.binding_id,
                filters.exported_types(ctx.settings.tenant),
                PROJECT_TASK,
            )
        )
        if ctx.settings.exports:
            # CRM entries in an unticked calendar deleted or no longer exported leave Google
            todo.update(
                await links.unexported_unselected(
                    s,
                    ctx.settings.connection_id,
                    filters.exported_types(ctx.settings.tenant),
                    PROJECT_TASK,
                )
            )
            # every exportable activity without a link: new on a first sync, and those of a
            # type the admin exports since (the change feed never named them for Google)
            fresh = await links.unlinked_activities(
                s,
                ctx.settings.tenant_id,
                ctx.settings.user_id,
                ctx.settings.binding_id,
                since=ctx.settings.window_start,
                type_keys=filters.exported_types(ctx.settings.tenant),
            )
            todo.update(a.id for a in fresh if filters.exportable(ctx.settings.tenant, a))
    deferred: set[uuid.UUID] = set()
    rounds = 0
    while todo and rounds < MAX_ROUNDS:
        rounds += 1
        ops = await plan(ctx, todo)
        # what plan wrote no request for is settled: written already, or deliberately not
        # written (type not exported, import-only calendar, read-only) — never "pending"
        todo = set()
        if ops:
            results = await ctx.settings.client.batch([op.call for op in ops])
            await ctx.settings.hooks.fire("after_google_write", ctx, ops, results)
            for op, result in zip(ops, results, strict=True):
                outcome = await settle(ctx, op, result)
                if outcome == "again":
                    todo.add(op.activity_id)
                elif outcome == "deferred":
                    deferred.add(op.activity_id)
        todo |= ctx.progress.later  # a new series' exceptions, now that the series exists
        ctx.progress.later.clear()
        if not ops:
            break
    deferred |= todo  # still owed after the last round: keep them for the next run
    cursor = last
    for aid in deferred:
        if aid in seqs:
            cursor = min(cursor, seqs[aid] - 1)
    ctx.progress.counts["deferred"] += len(deferred)
    if cursor != ctx.progress.push_seq:
        from calsync.store import bindings

        async with ctx.settings.db.session() as s:
            await bindings.set_push_seq(
                s, ctx.settings.binding_id, max(cursor, ctx.progress.push_seq)
            )
            await s.commit()
        ctx.progress.push_seq = max(cursor, ctx.progress.push_seq)


async def _feed(ctx: Ctx) -> tuple[dict[uuid.UUID, int], int]:
    """The owner's activities changed after the cursor (first seq of each) and the last seq."""
    seqs: dict[uuid.UUID, int] = {}
    async with ctx.settings.db.session() as s:
        last = await changes.last_seq(s, ctx.settings.tenant_id)
        after = ctx.progress.push_seq
        while after < last:
            page = await changes.after(s, ctx.settings.tenant_id, after, FEED_PAGE)
            if not page:
                break
            for change in page:
                if change.seq > last:
                    break
                if change.owner_id == ctx.settings.user_id and change.origin != "sync":
                    seqs.setdefault(change.activity_id, change.seq)
            after = page[-1].seq
    return seqs, last


def _insert(ctx: Ctx, activity: Activity, values: SyncFields, event_id: str) -> Op:
    body = mapping.insert_body(activity, values, event_id, ctx.settings.tenant_id)
    return Op(
        "insert",
        activity.id,
        event_id,
        calls.events_insert(ctx.settings.calendar_id, body, send_updates="none"),
        values,
    )


def _patch(
    ctx: Ctx, link: EventLink, values: SyncFields, units: frozenset[str] | None, restore: bool
) -> Op:
    before = SyncFields.from_json(link.snapshot) if link.snapshot else None
    body = mapping.event_body(values, units, before=before)
    if restore:
        body["status"] = "confirmed"
    assert link.activity_id is not None
    return Op(
        "patch",
        link.activity_id,
        link.google_event_id,
        calls.events_patch(
            ctx.settings.calendar_id,
            link.google_event_id,
            body,
            if_match=link.google_etag,
            send_updates="none",
        ),
        values,
    )


async def _read_only(ctx: Ctx, s: AsyncSession, activity: Activity, link: EventLink) -> None:
    """The CRM may not write this event (another organiser's meeting, focus time, a busy
    block, a series it cannot represent): a CRM edit is undone instead of failing with 403 on
    every run, a CRM delete only forgets the link."""
    if activity.deleted_at is not None:
        await links.remove(s, link)
        return
    c = mapping.activity_fields(activity)
    if link.snapshot is None or content_hash(c) == link.crm_hash:
        return
    google = SyncFields.from_json(link.snapshot)
    if google != c:
        await write_crm(ctx, s, activity, google)
        ctx.progress.counts["reverted"] += 1
    link.crm_hash = content_hash(mapping.activity_fields(activity))


async def _master(
    ctx: Ctx, s: AsyncSession, exception: Activity
) -> tuple[Activity | None, EventLink | None]:
    """An exception's master and the master's link here, looked up once per exception."""
    assert exception.recurring_parent_id is not None
    master = await activities.get(s, ctx.settings.tenant_id, exception.recurring_parent_id)
    return master, await links.by_activity(
        s, ctx.settings.binding_id, exception.recurring_parent_id
    )


async def _occurrence(
    ctx: Ctx,
    s: AsyncSession,
    activity: Activity,
    link: EventLink | None,
    master: Activity | None,
    master_link: EventLink | None,
) -> Op | None:
    """An exception of a series: Google already has the occurrence (under `<master>_<original
    start>`), so it is patched into place, never inserted — also when its series moved and
    took it to another occurrence (the link still names the old instance)."""
    assert activity.recurring_parent_id is not None and activity.original_start_local is not None
    if master_link is None or master_link.read_only:
        return None
    if master is None or master.deleted_at is not None:
        return None
    if master_link.state in (links.PARKED, links.DETACHED, links.MOVING):
        return None  # the series waits for a person, is not written, or is moving
    if (
        master_link.state != links.LINKED
        or master_link.google_etag is None
        or master_link.crm_hash != content_hash(mapping.activity_fields(master))
    ):
        # the series is being written (new, moved, edited): the occurrence follows, so its
        # instance exists where the CRM's series says
        ctx.progress.later.add(activity.id)
        return None
    c = mapping.activity_fields(activity)
    c_hash = content_hash(c)
    event_id = mapping.instance_id(
        master_link.google_event_id, master.all_day, activity.original_start_local, master.time_zone
    )
    if link is None:
        # a link to this instance may outlive a deleted exception of the same occurrence
        link = await links.by_event(s, ctx.settings.binding_id, event_id)
        if link is None:
            link = links.new(
                ctx.settings.tenant_id,
                ctx.settings.binding_id,
                activity.id,
                event_id,
                state=links.PENDING,
            )
            s.add(link)
        link.activity_id = activity.id
    link.snapshot, link.crm_hash, link.google_hash = c.to_json(), c_hash, c_hash
    link.google_event_id = event_id
    link.state = links.PENDING  # owed until Google confirms (a retarget too)
    link.google_recurring_event_id = master_link.google_event_id
    return Op(
        "patch",
        activity.id,
        event_id,
        calls.events_patch(
            ctx.settings.calendar_id, event_id, mapping.event_body(c), send_updates="none"
        ),
        c,
    )


async def _orphaned_exception(
    ctx: Ctx, s: AsyncSession, deleted: Activity, link: EventLink
) -> EventLink | None:
    """A deleted exception whose Google instance is still linked. A user's delete never ends
    here with its occurrence free: the store put a cancelled exception in its place
    (`activities.delete_exception`), which takes the instance over. So a still-generated, free
    occurrence means the store dropped the exception when its series moved, and the series
    came back before this push (a quick undo, or while the connection waited for a reconnect).
    Cancelling the instance would lose an occurrence; the exception is restored from the
    deleted one instead, keeping the instance and its link — nothing is lost, both sides agree.
    Returns the link to write, or None when there is nothing to keep: the series is gone or
    moved on (Google drops the instance with it), another exception holds the occurrence, or
    the instance never reached Google."""
    master, master_link = await _master(ctx, s, deleted)
    original = deleted.original_start_local
    if (
        master is None
        or master.deleted_at is not None
        or master_link is None
        or master_link.read_only
        or original is None
        or link.state != links.LINKED
        or link.google_etag is None
        or link.google_event_id != instance_of(deleted, master, master_link)
        or not is_occurrence(activities.series(master), original)
        or await links.exception_at(s, master.id, original) is not None
    ):
        await links.remove(s, link)
        return None
    parent = activities.series(master)
    draft = mapping.draft(mapping.activity_fields(deleted), deleted, ctx.settings.time_zone)
    restored = await create_exception(ctx, s, master, draft, parent, like=deleted)
    link.activity_id = restored.id
    ctx.progress.counts["restored"] += 1
    return link


async def _get(ctx: Ctx, s: AsyncSession, activity_id: uuid.UUID | None) -> Activity:
    assert activity_id is not None
    found = await activities.get(s, ctx.settings.tenant_id, activity_id)
    assert found is not None
    return found


BAD_RULE = "calsync.recurrence_invalid"


async def _bad_rule(ctx: Ctx, s: AsyncSession, activity: Activity) -> bool:
    """A series whose stored rule fails today's checks (stored before them, issue 13) is not
    written to Google: Google would refuse it or, for a rule that matches nothing, the work of
    expanding it is unbounded. It gets an issue; the run goes on with the rest."""
    if not activity.recurrence or activity.recurring_parent_id is not None:
        return False
    try:
        rec.normalise(
            list(activity.recurrence),
            all_day=activity.all_day,
            zone=activities.series(activity).zone,
            start_local=activity.start_local,
        )
    except (rec.RecurrenceError, ValueError, KeyError) as exc:
        await runs.report_issue(
            s,
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            ctx.settings.run_id,
            code=BAD_RULE,
            message=(
                f"The CRM series {activity.subject or activity.id!r} has a recurrence Google "
                f"would refuse ({exc}); it is not synced."
            ),
            remedy="Change the series' recurrence in the CRM to a daily, weekly, monthly or "
            "yearly rule.",
            activity_id=activity.id,
        )
        ctx.progress.counts["issues"] += 1
        return True
    return False


async def _withdraw_elsewhere(
    ctx: Ctx,
    s: AsyncSession,
    activity: Activity,
    elsewhere: dict[uuid.UUID, tuple[EventLink, CalendarBinding]],
    ops: list[Op],
) -> bool:
    """A CRM entry deleted or no longer exported whose event is in an unticked calendar: its
    delete there (transitions.withdrawn_elsewhere). True when that is the entry's write."""
    gone = transitions.withdrawn_elsewhere(ctx, activity, elsewhere.get(activity.id))
    if gone is None:
        return False
    old_link, old_binding = gone
    call = await transitions.withdraw(ctx, s, activity, old_link, binding=old_binding)
    if call is not None:
        ops.append(
            Op(
                "withdraw",
                activity.id,
                old_link.google_event_id,
                call,
                None,
                from_binding=old_binding.id,
                from_calendar=old_binding.google_calendar_id,
            )
        )
    return True


async def plan(ctx: Ctx, ids: set[uuid.UUID]) -> list[Op]:
    """Decide each activity's write; pending links are committed here, before any insert."""
    ops: list[Op] = []
    async with ctx.settings.db.session() as s:
        acts = await links.activities(s, ctx.settings.tenant_id, ids)
        lks = await links.by_activities(s, ctx.settings.binding_id, ids)
        elsewhere = await links.links_elsewhere(
            s, ctx.settings.connection_id, ctx.settings.binding_id, [i for i in ids if i not in lks]
        )
        for aid in sorted(ids):
            activity = acts.get(aid)
            if activity is None or activity.owner_id != ctx.settings.user_id:
                continue
            link = lks.get(aid)
            if link is not None and link.activity_id != aid:
                link = None  # taken over above by a new exception of the same occurrence
            if link is not None and link.state == links.MOVING:
                continue  # the export calendar's sync is moving it out of this calendar
            if link is not None and link.read_only:
                await _read_only(ctx, s, activity, link)
                continue
            if link is not None and activity.recurring_parent_id is None:
                exported = transitions.still_exported(ctx, activity)
                if link.state == links.DETACHED:
                    if not exported or activity.deleted_at is not None:
                        continue
                    transitions.attach(link)
                elif not exported and activity.deleted_at is None:
                    call = await transitions.withdraw(ctx, s, activity, link)
                    if call is not None:
                        ops.append(Op("withdraw", aid, link.google_event_id, call, None))
                    continue
            if activity.recurring_parent_id is not None and activity.deleted_at is not None:
                if link is not None:
                    link = await _orphaned_exception(ctx, s, activity, link)
                if link is None:
                    continue
                activity = await _get(ctx, s, link.activity_id)  # the restored exception
            elif activity.recurring_parent_id is not None:
                master, master_link = await _master(ctx, s, activity)
                if (
                    link is None
                    or link.state == links.PENDING
                    or link.google_event_id != instance_of(activity, master, master_link)
                ):
                    op = await _occurrence(ctx, s, activity, link, master, master_link)
                    if op is not None:
                        ops.append(op)
                    continue
            if activity.deleted_at is not None:
                if link is None:
                    await _withdraw_elsewhere(ctx, s, activity, elsewhere, ops)
                    continue
                if link.google_etag is None and link.state == links.PARKED:
                    await links.remove(s, link)  # never reached Google
                    continue
                ops.append(
                    Op(
                        "delete",
                        aid,
                        link.google_event_id,
                        calls.events_delete(
                            ctx.settings.calendar_id,
                            link.google_event_id,
                            if_match=link.google_etag,
                            send_updates="none",
                        ),
                        None,
                    )
                )
                continue
            if activity.deleted_at is None and await _bad_rule(ctx, s, activity):
                continue
            c = mapping.activity_fields(activity)
            c_hash = content_hash(c)
            if link is None:
                if await _withdraw_elsewhere(ctx, s, activity, elsewhere, ops):
                    continue
                if (
                    not ctx.settings.exports
                    or not made_in_crm(activity)  # an entry from Google is never copied
                    or not filters.exportable(ctx.settings.tenant, activity)
                    or (
                        activity.range_end_utc is not None
                        and activity.range_end_utc <= ctx.settings.window_start
                    )
                ):
                    continue
                if aid in elsewhere:
                    old = transitions.movable(ctx, activity, elsewhere[aid])
                    if old is not None:  # it follows the changed export calendar
                        old_binding = elsewhere[aid][1]
                        call = transitions.move_call(ctx, old, old_binding.google_calendar_id)
                        ops.append(
                            Op(
                                "move",
                                aid,
                                old.google_event_id,
                                call,
                                None,
                                from_binding=old_binding.id,
                                from_calendar=old_binding.google_calendar_id,
                            )
                        )
                    continue
                event_id = google_event_id(aid)
                s.add(
                    links.new(
                        ctx.settings.tenant_id,
                        ctx.settings.binding_id,
                        aid,
                        event_id,
                        state=links.PENDING,
                        snapshot=c.to_json(),
                        crm_hash=c_hash,
                        google_hash=c_hash,
                    )
                )
                ops.append(_insert(ctx, activity, c, event_id))
                continue
            if link.state == links.PARKED:
                if c_hash == link.crm_hash:
                    continue  # waits for a change or a person
                if link.google_etag is None:
                    if not ctx.settings.exports or not filters.exportable(
                        ctx.settings.tenant, activity
                    ):
                        continue
                    link.state = links.PENDING
            if link.state == links.PENDING:
                link.snapshot = c.to_json()
                link.crm_hash = link.google_hash = c_hash
                link.google_event_id = google_event_id(aid)
                ops.append(_insert(ctx, activity, c, link.google_event_id))
                continue
            if link.google_hash == CANCELLED:
                ops.append(_patch(ctx, link, c, None, restore=True))
                continue
            if c_hash == link.crm_hash:
                continue
            base = SyncFields.from_json(link.snapshot) if link.snapshot else None
            units = changed_units(base, c) if base is not None else None
            if units is not None and not units:
                link.crm_hash = c_hash
                continue
            ops.append(_patch(ctx, link, c, units, restore=False))
        await s.commit()
    return ops


async def settle(ctx: Ctx, op: Op, result: Any) -> str:
    """Store one write's answer in its own transaction; returns done/again/deferred/parked."""
    if isinstance(result, errors.GoogleError) and result.needs_reauth:
        raise result
    if op.kind == "move":
        assert op.from_binding is not None and op.from_calendar is not None
        return await transitions.settle_move(
            ctx, op.activity_id, op.event_id, op.from_binding, op.from_calendar, result
        )
    async with ctx.settings.db.session() as s:
        link = await links.by_activity(
            s, op.from_binding or ctx.settings.binding_id, op.activity_id
        )
        if link is None:
            return "done"
        if op.kind in ("delete", "withdraw"):
            if result is None or isinstance(result, errors.NotFound | errors.Deleted):
                await links.remove(s, link)
                await s.commit()
                ctx.progress.counts["pushed"] += 1
                return "done"
        elif isinstance(result, Event):
            g = mapping.event_fields(result, ctx.settings.time_zone)
            link.state = links.LINKED
            link.google_event_id = result.id or op.event_id
            link.snapshot = g.to_json()
            link.google_hash = content_hash(g)
            link.crm_hash = content_hash(op.values) if op.values is not None else None
            link.google_etag, link.google_updated = result.etag, result.updated
            link.ical_uid = result.i_cal_uid
            if op.kind == "insert" and op.values is not None and op.values.recurrence:
                ctx.progress.later.update(await links.exceptions(s, op.activity_id))
            await runs.resolve_issues(s, ctx.settings.binding_id, activity_id=op.activity_id)
            await s.commit()
            ctx.progress.counts["pushed"] += 1
            return "done"
        if op.from_binding is not None and isinstance(result, errors.PreconditionFailed):
            # withdrawing from an unticked calendar, whose Google edits are not synced: the
            # event changed there since — delete that version in the next round
            assert op.from_calendar is not None
            try:
                event = await ctx.settings.client.get_event(op.from_calendar, link.google_event_id)
            except (errors.NotFound, errors.Deleted):
                await links.remove(s, link)
                await s.commit()
                return "done"
            except errors.GoogleError as exc:
                if exc.needs_reauth:
                    raise
                return "deferred"
            link.google_etag = event.etag
            await s.commit()
            return "again"
        if isinstance(result, errors.Duplicate | errors.PreconditionFailed | errors.Deleted):
            # 409: our earlier insert landed (adopt it); 412/410: Google moved on — re-read it
            try:
                event = await ctx.settings.client.get_event(
                    ctx.settings.calendar_id, link.google_event_id
                )
            except errors.GoogleError as exc:
                if exc.needs_reauth:
                    raise
                return "deferred"
            if isinstance(result, errors.Duplicate):
                ctx.progress.counts["adopted"] += 1
            else:
                ctx.progress.counts["refetched"] += 1
            await reconcile(ctx, s, event, link)
            await s.commit()
            return "again"
        if isinstance(result, errors.GoogleError) and (
            parks(result) or isinstance(result, errors.NotFound)
        ):
            if op.values is not None:
                link.crm_hash = content_hash(op.values)
            link.state = links.PARKED
            await runs.report_issue(
                s,
                ctx.settings.tenant_id,
                ctx.settings.binding_id,
                ctx.settings.run_id,
                code=result.code,
                message=result.message,
                remedy=result.remedy,
                activity_id=op.activity_id,
                google_event_id=op.event_id,
            )
            await s.commit()
            ctx.progress.counts["issues"] += 1
            return "parked"
    log.info("push deferred", extra={"activity": str(op.activity_id), "error": str(result)})
    return "deferred"
