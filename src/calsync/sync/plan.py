"""The push's plan: each owed activity classified into a case of the decision table
(domain.decide), and the action it gives turned into a Google write (an `Op`) or a CRM-side
step. Nothing here reads Google: the Google side of a linked entry counts as unchanged (a
412 on the write re-reads it), and as gone when the link never reached Google.

A new event gets its deterministic id and a `pending` link committed before the insert, so a
crash after Google created it ends in a 409 and adoption, not a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain import recurrence as rec
from calsync.domain.decide import Action, Kind, State, action_for
from calsync.domain.fields import SyncFields, changed_units, content_hash
from calsync.domain.ids import google_event_id
from calsync.domain.recurrence import is_occurrence
from calsync.google import builders, calls
from calsync.store import activities, links, runs, sync_rows
from calsync.store.activities import made_in_crm
from calsync.store.base import new_id
from calsync.store.models import Activity, CalendarBinding, EventLink
from calsync.store.statuses import Code, LinkState

from . import filters, mapping, transitions
from .codes import TEXTS
from .context import Ctx
from .ops import Op, OpKind
from .reconcile import CANCELLED, create_exception, instance_of, write_crm

Elsewhere = dict[uuid.UUID, tuple[EventLink, CalendarBinding]]


#: what the push stores with the plan, in its transaction (the echo its writes owe)
BeforeCommit = Callable[[AsyncSession, list[Op]], Awaitable[object]]


@dataclass
class Case:
    """One activity classified for the decision table."""

    kind: Kind
    activity: Activity
    link: EventLink | None
    crm: State | None = None
    google: State | None = None

    @property
    def action(self) -> Action:
        return action_for(self.kind, self.crm, self.google)


async def plan(
    ctx: Ctx, ids: set[uuid.UUID], before_commit: BeforeCommit | None = None
) -> list[Op]:
    """Classify each activity, look its action up, carry it out; pending links are committed
    here, before any insert, with what `before_commit` writes for the ops planned."""
    settings = ctx.settings
    ops: list[Op] = []
    async with settings.db.session() as session:
        found, linked = await sync_rows.activities_and_links(
            session, settings.tenant_id, settings.binding_id, ids
        )
        elsewhere = await links.links_elsewhere(
            session,
            settings.connection_id,
            settings.binding_id,
            [i for i in found if i not in linked],
        )
        for activity_id in sorted(ids):
            activity = found.get(activity_id)
            if activity is None or activity.owner_id != settings.user_id:
                continue  # the push writes the owner's entries only
            link = linked.get(activity_id)
            if link is not None and link.activity_id != activity_id:
                link = None  # taken over above by a new exception of the same occurrence
            case = await classify(ctx, session, activity, link, elsewhere)
            op = await carry_out(ctx, session, case, elsewhere)
            if op is not None:
                ops.append(op)
        if before_commit is not None:
            await before_commit(session, ops)
        await session.commit()
    return ops


async def classify(
    ctx: Ctx,
    session: AsyncSession,
    activity: Activity,
    link: EventLink | None,
    elsewhere: Elsewhere,
) -> Case:
    """Which case of the decision table this activity is, seen from the CRM."""
    top_level = activity.recurring_parent_id is None
    live = activity.deleted_at is None
    if link is not None and link.state == LinkState.MOVING:
        return Case(Kind.WAITING, activity, link)  # the export calendar's sync is moving it
    if link is not None and link.read_only:
        return Case(Kind.READ_ONLY, activity, link)
    if link is not None and top_level:
        exported = transitions.still_exported(ctx, activity)
        if link.state == LinkState.DETACHED:
            kind = Kind.EXPORTED_AGAIN if exported and live else Kind.WAITING
            return Case(kind, activity, link)
        if not exported and live:
            return Case(Kind.NOT_EXPORTED, activity, link)
    if not top_level and not live:
        if link is not None and await _occurrence_free(ctx, session, activity, link):
            return Case(Kind.ORPHANED_EXCEPTION, activity, link)
        return Case(Kind.GONE, activity, link)
    if not top_level:
        master, master_link = await _master(ctx, session, activity)
        if (
            link is None
            or link.state == LinkState.PENDING
            or link.google_event_id != instance_of(activity, master, master_link)
        ):
            return Case(Kind.UNPLACED_EXCEPTION, activity, link)
    return await _ordinary(ctx, session, activity, link, elsewhere)


async def _ordinary(
    ctx: Ctx,
    session: AsyncSession,
    activity: Activity,
    link: EventLink | None,
    elsewhere: Elsewhere,
) -> Case:
    """The cases of an entry that is neither waiting, read-only nor an exception to place."""
    settings = ctx.settings
    # deleted in the CRM, or no longer exported, and its event is in an unticked calendar
    withdrawn = (
        link is None
        and transitions.withdrawn_elsewhere(ctx, activity, elsewhere.get(activity.id)) is not None
    )
    if activity.deleted_at is not None:
        if withdrawn:
            return Case(Kind.WITHDRAWN_ELSEWHERE, activity, link)
        if link is None or (link.google_etag is None and link.state == LinkState.PARKED):
            return Case(Kind.GONE, activity, link)  # never reached Google
        return Case(Kind.ENTRY, activity, link, State.DELETED, State.UNCHANGED)
    if await _rule_refused(ctx, session, activity):
        return Case(Kind.BAD_RULE, activity, link)
    crm_hash = content_hash(mapping.activity_fields(activity))
    if link is None:
        if withdrawn:
            return Case(Kind.WITHDRAWN_ELSEWHERE, activity, link)
        if (
            not settings.exports
            or not made_in_crm(activity)  # an entry from Google is never copied
            or not filters.exportable(settings.tenant, activity)
            or (
                activity.range_end_utc is not None
                and activity.range_end_utc <= settings.window_start
            )
        ):
            return Case(Kind.OUT_OF_SCOPE, activity, link)
        if activity.id in elsewhere:
            # it follows the changed export calendar, or lives in another calendar
            moves = transitions.movable(ctx, activity, elsewhere[activity.id]) is not None
            return Case(Kind.MOVES_HERE if moves else Kind.OUT_OF_SCOPE, activity, link)
        return Case(Kind.NEW_IN_CRM, activity, link)
    if link.state == LinkState.PARKED:
        if crm_hash == link.crm_hash:
            return Case(Kind.WAITING, activity, link)  # waits for a change or a person
        if link.google_etag is None:
            if not settings.exports or not filters.exportable(settings.tenant, activity):
                return Case(Kind.OUT_OF_SCOPE, activity, link)
            return Case(Kind.NEW_IN_CRM, activity, link)
    if link.state == LinkState.PENDING:
        return Case(Kind.NEW_IN_CRM, activity, link)  # the insert is unconfirmed: again
    if link.google_hash == CANCELLED:
        # Google deleted it while the CRM edited it (reconcile): it comes back
        return Case(Kind.ENTRY, activity, link, State.CHANGED, State.DELETED)
    crm = State.UNCHANGED if crm_hash == link.crm_hash else State.CHANGED
    return Case(Kind.ENTRY, activity, link, crm, State.UNCHANGED)


async def carry_out(ctx: Ctx, session: AsyncSession, case: Case, elsewhere: Elsewhere) -> Op | None:
    """The action of a classified activity: the Google write to send, if any."""
    settings = ctx.settings
    activity, link = case.activity, case.link
    action = case.action
    match action:
        case Action.NOTHING:
            return None
        case Action.FORGET:
            if link is not None:
                await links.remove(session, link)
            return None
        case Action.FOLLOW_GOOGLE:
            assert link is not None
            await _follow_google(ctx, session, activity, link)
            return None
        case Action.REPORT:
            return None  # reported while classifying (`_rule_refused`)
        case Action.ATTACH | Action.RESTORE_CRM:
            assert link is not None
            if action is Action.ATTACH:
                transitions.attach(link)
            else:
                activity = await _restore_exception(ctx, session, activity, link)
            again = await _ordinary(ctx, session, activity, link, elsewhere)
            return await carry_out(ctx, session, again, elsewhere)
        case Action.WITHDRAW:
            return await _withdraw(ctx, session, activity, link, elsewhere)
        case Action.MOVE:
            old_link, old_binding = elsewhere[activity.id]
            old = transitions.movable(ctx, activity, (old_link, old_binding))
            assert old is not None
            call = transitions.move_call(ctx, old, old_binding.google_calendar_id)
            return Op(
                OpKind.MOVE,
                activity.id,
                old.google_event_id,
                call,
                None,
                from_binding=old_binding.id,
                from_calendar=old_binding.google_calendar_id,
            )
        case Action.PLACE:
            master, master_link = await _master(ctx, session, activity)
            return await _place(ctx, session, activity, link, master, master_link)
        case Action.INSERT_GOOGLE:
            return _insert(ctx, session, activity, link)
        case Action.DELETE_GOOGLE:
            assert link is not None
            delete = calls.events_delete(
                settings.calendar_id,
                link.google_event_id,
                if_match=link.google_etag,
                send_updates="none",
            )
            return Op(OpKind.DELETE, activity.id, link.google_event_id, delete, None)
        case Action.RESTORE_GOOGLE:
            assert link is not None
            return _patch(ctx, link, mapping.activity_fields(activity), None, restore=True)
        case Action.PUSH:
            assert link is not None
            values = mapping.activity_fields(activity)
            base = SyncFields.from_json(link.snapshot) if link.snapshot else None
            units = changed_units(base, values) if base is not None else None
            if units is not None and not units:
                link.crm_hash = content_hash(values)  # nothing Google holds differs
                return None
            return _patch(ctx, link, values, units, restore=False)
    raise AssertionError(f"the push cannot {action} ({case.kind})")


def _insert(ctx: Ctx, session: AsyncSession, activity: Activity, link: EventLink | None) -> Op:
    """A whole new event under the activity's deterministic id; its link is pending until
    Google confirms."""
    settings = ctx.settings
    values = mapping.activity_fields(activity)
    values_hash = content_hash(values)
    event_id = google_event_id(activity.id)
    if link is None:
        link = links.new(
            settings.tenant_id, settings.binding_id, activity.id, event_id, state=LinkState.PENDING
        )
        link.id = new_id()  # now, not at the flush: the op names it (sync.push.settle)
        session.add(link)
    link.state = LinkState.PENDING
    link.snapshot = values.to_json()
    link.crm_hash = link.google_hash = values_hash
    link.google_event_id = event_id
    event = builders.new_event(
        values,
        event_id,
        tags=mapping.tags(activity.id, settings.tenant_id),
        guests=mapping.guests(activity),
    )
    call = calls.events_insert(settings.calendar_id, event, send_updates="none")
    return Op(OpKind.INSERT, activity.id, event_id, call, values, link_id=link.id)


def _patch(
    ctx: Ctx, link: EventLink, values: SyncFields, units: frozenset[str] | None, restore: bool
) -> Op:
    before = SyncFields.from_json(link.snapshot) if link.snapshot else None
    changes = builders.event_changes(values, units, before=before, restore=restore)
    assert link.activity_id is not None
    call = calls.events_patch(
        ctx.settings.calendar_id,
        link.google_event_id,
        changes,
        if_match=link.google_etag,
        send_updates="none",
    )
    return Op(OpKind.PATCH, link.activity_id, link.google_event_id, call, values, link_id=link.id)


async def _withdraw(
    ctx: Ctx,
    session: AsyncSession,
    activity: Activity,
    link: EventLink | None,
    elsewhere: Elsewhere,
) -> Op | None:
    """The delete of an entry that stopped being exported: from this calendar, or from the
    unticked one its event is in (transitions.withdrawn_elsewhere)."""
    if link is not None:
        call = await transitions.withdraw(ctx, session, activity, link)
        if call is None:
            return None
        return Op(OpKind.WITHDRAW, activity.id, link.google_event_id, call, None)
    old_link, old_binding = elsewhere[activity.id]
    call = await transitions.withdraw(ctx, session, activity, old_link, binding=old_binding)
    if call is None:
        return None
    return Op(
        OpKind.WITHDRAW,
        activity.id,
        old_link.google_event_id,
        call,
        None,
        from_binding=old_binding.id,
        from_calendar=old_binding.google_calendar_id,
    )


async def _follow_google(
    ctx: Ctx, session: AsyncSession, activity: Activity, link: EventLink
) -> None:
    """The CRM may not write this event (another organiser's meeting, focus time, a busy
    block, a series it cannot represent): a CRM edit is undone instead of failing with 403 on
    every run, a CRM delete only forgets the link."""
    if activity.deleted_at is not None:
        await links.remove(session, link)
        return
    current = mapping.activity_fields(activity)
    if link.snapshot is None or content_hash(current) == link.crm_hash:
        return
    google = SyncFields.from_json(link.snapshot)
    if google != current:
        await write_crm(ctx, session, activity, google)
        ctx.progress.counts["reverted"] += 1
    link.crm_hash = content_hash(mapping.activity_fields(activity))


async def _master(
    ctx: Ctx, session: AsyncSession, exception: Activity
) -> tuple[Activity | None, EventLink | None]:
    """An exception's master and the master's link here, looked up once per exception."""
    assert exception.recurring_parent_id is not None
    settings = ctx.settings
    master = await activities.get(session, settings.tenant_id, exception.recurring_parent_id)
    master_link = await links.by_activity(
        session, settings.binding_id, exception.recurring_parent_id
    )
    return master, master_link


async def _place(
    ctx: Ctx,
    session: AsyncSession,
    activity: Activity,
    link: EventLink | None,
    master: Activity | None,
    master_link: EventLink | None,
) -> Op | None:
    """An exception of a series: Google already has the occurrence (under `<master>_<original
    start>`), so it is patched into place, never inserted — also when its series moved and
    took it to another occurrence (the link still names the old instance). It waits for its
    series: not written while the series is not (read-only, deleted, parked, moving), after
    it while the series is being written."""
    assert activity.recurring_parent_id is not None and activity.original_start_local is not None
    settings = ctx.settings
    if master_link is None or master_link.read_only:
        return None
    if master is None or master.deleted_at is not None:
        return None
    if master_link.state in (LinkState.PARKED, LinkState.DETACHED, LinkState.MOVING):
        return None  # the series waits for a person, is not written, or is moving
    if (
        master_link.state != LinkState.LINKED
        or master_link.google_etag is None
        or master_link.crm_hash != content_hash(mapping.activity_fields(master))
    ):
        # the series is being written (new, moved, edited): the occurrence follows, so its
        # instance exists where the CRM's series says
        ctx.progress.later.add(activity.id)
        return None
    values = mapping.activity_fields(activity)
    values_hash = content_hash(values)
    event_id = mapping.instance_id(
        master_link.google_event_id, master.all_day, activity.original_start_local, master.time_zone
    )
    if link is None:
        link = await links.claim_instance(
            session, settings.tenant_id, settings.binding_id, activity.id, event_id
        )
    link.snapshot, link.crm_hash, link.google_hash = values.to_json(), values_hash, values_hash
    link.google_event_id = event_id
    link.state = LinkState.PENDING  # owed until Google confirms (a retarget too)
    link.google_recurring_event_id = master_link.google_event_id
    call = calls.events_patch(
        settings.calendar_id, event_id, builders.event_changes(values), send_updates="none"
    )
    return Op(OpKind.PATCH, activity.id, event_id, call, values)


async def _occurrence_free(
    ctx: Ctx, session: AsyncSession, deleted: Activity, link: EventLink
) -> bool:
    """A deleted exception whose Google instance is still linked, its occurrence free. A
    user's delete never ends here with its occurrence free: the store put a cancelled
    exception in its place (`activities.delete_exception`), which takes the instance over. So
    a still-generated, free occurrence means the store dropped the exception when its series
    moved, and the series came back before this push (a quick undo, or while the connection
    waited for a reconnect). Cancelling the instance would lose an occurrence, so the
    exception is restored. False when there is nothing to keep: the series is gone or moved on
    (Google drops the instance with it), another exception holds the occurrence, or the
    instance never reached Google."""
    master, master_link = await _master(ctx, session, deleted)
    original = deleted.original_start_local
    return not (
        master is None
        or master.deleted_at is not None
        or master_link is None
        or master_link.read_only
        or original is None
        or link.state != LinkState.LINKED
        or link.google_etag is None
        or link.google_event_id != instance_of(deleted, master, master_link)
        or not is_occurrence(activities.series(master), original)
        or await links.exception_at(session, master.id, original) is not None
    )


async def _restore_exception(
    ctx: Ctx, session: AsyncSession, deleted: Activity, link: EventLink
) -> Activity:
    """The exception comes back from the deleted one, keeping the instance and its link —
    nothing is lost, both sides agree."""
    master, _ = await _master(ctx, session, deleted)
    assert master is not None
    parent = activities.series(master)
    draft = mapping.draft(mapping.activity_fields(deleted), deleted, ctx.settings.time_zone)
    restored = await create_exception(ctx, session, master, draft, parent, like=deleted)
    link.activity_id = restored.id
    ctx.progress.counts["restored"] += 1
    return restored


async def _rule_refused(ctx: Ctx, session: AsyncSession, activity: Activity) -> bool:
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
        settings = ctx.settings
        await runs.report_issue(
            session,
            settings.tenant_id,
            settings.binding_id,
            settings.run_id,
            code=Code.RECURRENCE_INVALID,
            message=(
                f"The CRM series {activity.subject or activity.id!r} has a recurrence Google "
                f"would refuse ({exc}); it is not synced."
            ),
            remedy=TEXTS[Code.RECURRENCE_INVALID].remedy,
            activity_id=activity.id,
        )
        ctx.progress.counts["issues"] += 1
        return True
    return False
