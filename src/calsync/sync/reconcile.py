"""One Google event against its activity: decide (domain.decide), merge (domain.merge), apply.

Called by the pull for every listed event and by the push after a 409 or 412 re-read, always
inside the caller's transaction for that one event. CRM writes happen here; Google writes are
left to the push, which finds them through `ctx.progress.to_push`.

A link's `snapshot` is the base of the next three-way merge: the fields both sides last agreed
on — or, after a merge whose result Google has not received yet, Google's current fields, so the
push writes exactly the units the CRM side won. `crm_hash`/`google_hash` are each side's hash at
that moment; a side has changed iff its current hash differs.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.activity import ActivityDraft, Attendee, validate
from calsync.domain.decide import Action, State, decide
from calsync.domain.fields import SyncFields, content_hash
from calsync.domain.ids import activity_id_from_event_id
from calsync.domain.merge import Merged, Policy, merge
from calsync.domain.recurrence import Series, is_occurrence
from calsync.google.models import Event
from calsync.store import activities, links, runs, series
from calsync.store.models import Activity, EventLink

from . import filters, mapping
from .context import Ctx

#: `google_hash` of a link whose event Google deleted while the CRM edited the activity
CANCELLED = "cancelled"


class Result(StrEnum):
    DONE = "done"
    UNCHANGED = "unchanged"
    UNLINKED = "unlinked"  # a live event nobody links to: matching or import decides
    SKIPPED = "skipped"


def crm_state(activity: Activity, link: EventLink) -> State:
    if activity.deleted_at is not None:
        return State.DELETED
    if content_hash(mapping.activity_fields(activity)) != link.crm_hash:
        return State.CHANGED
    return State.UNCHANGED


async def relink(ctx: Ctx, s: AsyncSession, event: Event) -> EventLink | None:
    """Rebuild a lost link from the activity id in the event (tag, or our deterministic id)."""
    assert event.id is not None
    if event.recurring_event_id is not None:
        return None  # an occurrence carries its master's tag: linked by the pull's exceptions
    candidate = mapping.tagged_activity_id(
        event, ctx.settings.tenant_id
    ) or activity_id_from_event_id(event.id)
    if candidate is None:
        return None
    activity = await activities.get(s, ctx.settings.tenant_id, candidate)
    if activity is None or activity.owner_id != ctx.settings.user_id:
        return None
    if event.cancelled and activity.deleted_at is None:
        # a live entry's event gone from this calendar without a link here: calsync moved it
        # to another calendar, or withdrew it (its type is no longer exported) — no news
        return None
    if await links.by_activity(s, ctx.settings.binding_id, activity.id) is not None:
        return None  # linked to another event already: never two events for one activity
    if await links.linked_in_other_bindings(
        s, ctx.settings.connection_id, ctx.settings.binding_id, [activity.id]
    ):
        return None  # the entry lives in another calendar; this is a copy made in Google
    link = links.new(
        ctx.settings.tenant_id, ctx.settings.binding_id, activity.id, event.id, state=links.LINKED
    )
    s.add(link)
    ctx.progress.counts["linked"] += 1
    if event.cancelled:
        return link
    policy = filters.policy_for(ctx, activity)
    g = filters.google_fields(ctx, event, policy)
    link.read_only = filters.read_only(ctx, event, policy)
    if activity.deleted_at is not None:
        # deleted in the CRM while the link was lost: the delete is the newer fact
        agree(link, event, g, crm=None)
        return link
    await first_link(ctx, s, link, activity, event, g)
    return link


async def first_link(
    ctx: Ctx, s: AsyncSession, link: EventLink, activity: Activity, event: Event, g: SyncFields
) -> None:
    """Link two entries that were never synced: differing units follow the policy, unrecorded."""
    c = mapping.activity_fields(activity)
    merged = merge(
        None,
        c,
        g,
        policy=_policy(ctx, link),
        crm_updated=activity.updated_at,
        google_updated=_updated(event, activity),
    )
    await _apply_merged(ctx, s, link, activity, event, g, merged)


def _policy(ctx: Ctx, link: EventLink | None = None) -> Policy:
    if not ctx.settings.pushes or (link is not None and link.read_only):
        return Policy.GOOGLE_WINS
    if not ctx.settings.applies_to_crm:
        return Policy.CRM_WINS
    return ctx.settings.policy


def _updated(event: Event, activity: Activity) -> datetime:
    return event.updated or activity.updated_at


def agree(link: EventLink, event: Event, g: SyncFields, crm: SyncFields | None) -> None:
    """Google's fields become the base; the CRM side is in sync iff `crm` is given."""
    link.snapshot = g.to_json()
    link.google_hash = content_hash(g)
    link.crm_hash = content_hash(crm) if crm is not None else None
    link.google_etag = event.etag
    link.google_updated = event.updated
    link.ical_uid = event.i_cal_uid
    link.state = links.LINKED


async def write_crm(
    ctx: Ctx,
    s: AsyncSession,
    activity: Activity,
    values: SyncFields,
    *,
    attendees: tuple[Attendee, ...] | None = None,
) -> None:
    """Store `values` on the activity (raises ActivityInvalid when the CRM cannot hold them);
    an exception is checked against its master's series."""
    parent = None
    if activity.recurring_parent_id is not None:
        master = await activities.get(s, ctx.settings.tenant_id, activity.recurring_parent_id)
        if master is not None:
            parent = activities.series(master)
    checked = validate(
        mapping.draft(values, activity, ctx.settings.time_zone, attendees=attendees), parent
    )
    before = activities.series(activity) if activity.recurrence and parent is None else None
    await activities.update(s, activity, checked, origin="sync")
    ctx.progress.counts["updated"] += 1
    if before is not None and activities.series(activity) != before:
        await exceptions_followed(ctx, s, activity)


async def create_exception(
    ctx: Ctx,
    s: AsyncSession,
    master: Activity,
    draft: ActivityDraft,
    parent: Series,
    *,
    like: Activity | None = None,
) -> Activity:
    """A new exception of `master` written by the sync, checked against its series `parent`;
    type, owner and organiser are those of `like` (the master's unless given)."""
    like = like or master
    return await activities.create(
        s,
        ctx.settings.tenant_id,
        type_key=like.type_key,
        owner_id=like.owner_id,
        values=validate(draft, parent),
        recurring_parent_id=master.id,
        organizer_email=like.organizer_email,
        origin="sync",
        source=activities.source_of(master),  # an exception belongs where its series does
    )


async def exceptions_followed(ctx: Ctx, s: AsyncSession, master: Activity) -> None:
    """The series moved and the store moved or deleted its exceptions with it: a deleted
    one's link is done (Google dropped that instance itself), a moved one's link still names
    the old instance, so the push writes it to the new one (`crm_hash` cleared keeps it owed
    across runs)."""
    shape = activities.series(master)
    master_link = await links.by_activity(s, ctx.settings.binding_id, master.id)
    for link, activity in await series.exception_links(s, ctx.settings.binding_id, master.id):
        if activity.deleted_at is not None:
            original = activity.original_start_local
            if original is None or not is_occurrence(shape, original):
                await links.remove(s, link)
        elif link.google_event_id != instance_of(activity, master, master_link):
            link.crm_hash = None
            ctx.progress.to_push.add(activity.id)


async def expected_instance(ctx: Ctx, s: AsyncSession, exception: Activity) -> str | None:
    """The Google instance id an exception belongs to now (None if its series has no link)."""
    if exception.recurring_parent_id is None or exception.original_start_local is None:
        return None
    master_link = await links.by_activity(s, ctx.settings.binding_id, exception.recurring_parent_id)
    master = await activities.get(s, ctx.settings.tenant_id, exception.recurring_parent_id)
    return instance_of(exception, master, master_link)


def instance_of(
    exception: Activity, master: Activity | None, master_link: EventLink | None
) -> str | None:
    """`expected_instance` for a caller that holds the exception's master and its link."""
    if exception.original_start_local is None or master is None or master_link is None:
        return None
    return mapping.instance_id(
        master_link.google_event_id,
        master.all_day,
        exception.original_start_local,
        master.time_zone,
    )


async def responses(ctx: Ctx, s: AsyncSession, activity: Activity, event: Event) -> None:
    """Show Google's guests and their answers (accepted, declined ...) on the activity; a
    decline is an answer, not a deletion."""
    wanted = mapping.event_attendees(event)
    if wanted is None or not ctx.settings.applies_to_crm or activity.deleted_at is not None:
        return
    have = tuple(
        Attendee(a.email, a.display_name, a.response_status, a.optional) for a in activity.attendees
    )
    if wanted != have:
        await write_crm(ctx, s, activity, mapping.activity_fields(activity), attendees=wanted)


async def _apply_merged(
    ctx: Ctx,
    s: AsyncSession,
    link: EventLink,
    activity: Activity,
    event: Event,
    g: SyncFields,
    merged: Merged,
) -> None:
    if merged.to_crm and ctx.settings.applies_to_crm:
        await write_crm(ctx, s, activity, merged.values)
    for conflict in merged.conflicts:
        runs.record_conflict(
            s,
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            ctx.settings.run_id,
            field=conflict.unit,
            base=list(conflict.base) if conflict.base is not None else None,
            crm=list(conflict.crm),
            google=list(conflict.google),
            decision=conflict.winner.value,
            policy=_policy(ctx, link).value,
            activity_id=activity.id,
            link_id=link.id,
            google_event_id=event.id,
        )
        ctx.progress.counts["conflicts"] += 1
    if merged.to_google and ctx.settings.pushes and not link.read_only:
        agree(link, event, g, crm=None)  # the push writes the units the CRM won
        ctx.progress.to_push.add(activity.id)
    else:
        agree(link, event, g, crm=mapping.activity_fields(activity))


async def _series_gone(ctx: Ctx, s: AsyncSession, exception: Activity) -> bool:
    assert exception.recurring_parent_id is not None
    master = await activities.get(s, ctx.settings.tenant_id, exception.recurring_parent_id)
    return master is None or master.deleted_at is not None


async def reconcile(ctx: Ctx, s: AsyncSession, event: Event, link: EventLink | None) -> Result:
    """Bring one event and its activity together (see the module docstring)."""
    assert event.id is not None
    if link is None:
        link = await relink(ctx, s, event)
        if link is None:
            # a cancelled occurrence still needs its exception; other cancelled events do not
            gone = event.cancelled and event.recurring_event_id is None
            return Result.SKIPPED if gone else Result.UNLINKED
        if link.state == links.LINKED and link.google_etag == event.etag:
            return Result.DONE
    if link.activity_id is None:
        return Result.SKIPPED  # parked: waits for a person
    if link.state in (links.MOVING, links.DETACHED):
        # moving: the export calendar's sync is taking it out of this calendar; detached: a
        # project task neither side writes (sync.transitions)
        return Result.SKIPPED
    activity = await activities.get(s, ctx.settings.tenant_id, link.activity_id)
    if activity is None:
        await links.remove(s, link)
        return Result.SKIPPED if event.cancelled else Result.UNLINKED
    occurrence = activity.recurring_parent_id is not None
    if (
        link.state == links.PENDING
        and event.cancelled
        and not occurrence
        and activity.deleted_at is None
        and ctx.settings.pushes
    ):
        # our insert met an event of ours Google holds as deleted (the entry was withdrawn
        # when its type stopped being exported, or moved away and back): it comes back with
        # the CRM's fields instead of the CRM entry being deleted
        link.state = links.LINKED
        link.google_etag, link.google_updated = event.etag, event.updated
        link.google_hash, link.crm_hash = CANCELLED, None
        ctx.progress.restore.add(activity.id)
        ctx.progress.to_push.add(activity.id)
        return Result.DONE
    expected = await expected_instance(ctx, s, activity) if occurrence else None
    if expected is not None and event.id != expected:
        # the series moved and took this exception to another occurrence: the push writes it
        # there; the old instance (which Google dropped) is no news
        return Result.SKIPPED
    if occurrence and activity.deleted_at is not None and event.cancelled and ctx.settings.pushes:
        # deleted in the CRM, cancelled in Google: the push decides (the cancelled exception a
        # user's delete put in its place takes the link over; see push._orphaned_exception)
        ctx.progress.to_push.add(activity.id)
        return Result.SKIPPED
    if event.cancelled and (not occurrence or activity.deleted_at is not None):
        return await _cancelled(ctx, s, link, activity, event)
    if link.state != links.PENDING and link.google_etag == event.etag and not ctx.settings.reapply:
        return Result.UNCHANGED  # our own write coming back, or nothing new
    if activity.owner_id != ctx.settings.user_id:
        # an attendee's copy of a meeting another CRM user owns: that user's binding writes
        # the fields; this copy only brings its guests' answers
        link.read_only = filters.NOT_ORGANIZER
        await responses(ctx, s, activity, event)
        link.google_etag, link.google_updated = event.etag, event.updated
        link.ical_uid = event.i_cal_uid
        link.state = links.LINKED
        return Result.DONE
    policy = filters.policy_for(ctx, activity)
    if event.cancelled and link.snapshot is not None and event.start is None:
        g = replace(SyncFields.from_json(link.snapshot), cancelled=True)
    else:
        g = filters.google_fields(ctx, event, policy)
    link.read_only = filters.read_only(ctx, event, policy)
    await responses(ctx, s, activity, event)
    g_hash = content_hash(g)
    if link.snapshot is None:
        await first_link(ctx, s, link, activity, event, g)
        return Result.DONE
    base = SyncFields.from_json(link.snapshot)
    google_changed = g_hash != link.google_hash and g != base
    crm = crm_state(activity, link)
    if not google_changed:
        link.google_etag, link.google_updated = event.etag, event.updated
        link.ical_uid = event.i_cal_uid
        if link.state == links.PENDING:
            link.state = links.LINKED
            link.google_hash = g_hash
        return Result.UNCHANGED
    if occurrence and activity.deleted_at is not None and await _series_gone(ctx, s, activity):
        # the CRM deleted the whole series: an edit of one occurrence in Google does not bring
        # back an exception without its series (an edit beats a deletion of the same entry
        # only); the push deletes the series in Google, and the instance with it
        await links.remove(s, link)
        return Result.SKIPPED
    action = decide(crm, State.CHANGED)
    if not ctx.settings.applies_to_crm:
        # crm_to_google: Google's edits are overwritten by the CRM's fields
        agree(link, event, g, crm=None)
        ctx.progress.to_push.add(activity.id)
        return Result.DONE
    if action is Action.RESTORE_CRM:
        await links.restore_activity(s, activity)
        ctx.progress.counts["restored"] += 1
        action = Action.PULL
    if action is Action.PULL or not ctx.settings.pushes or link.read_only:
        if mapping.activity_fields(activity) != g:
            await write_crm(ctx, s, activity, g)
        agree(link, event, g, crm=mapping.activity_fields(activity))
        return Result.DONE
    merged = merge(
        base,
        mapping.activity_fields(activity),
        g,
        policy=_policy(ctx, link),
        crm_updated=activity.updated_at,
        google_updated=_updated(event, activity),
    )
    await _apply_merged(ctx, s, link, activity, event, g, merged)
    return Result.DONE


async def _cancelled(
    ctx: Ctx, s: AsyncSession, link: EventLink, activity: Activity, event: Event
) -> Result:
    if activity.owner_id != ctx.settings.user_id:
        # an attendee's copy went away (uninvited, or the organiser deleted it): the
        # organiser's binding decides about the activity
        await links.remove(s, link)
        return Result.DONE
    action = decide(crm_state(activity, link), State.DELETED)
    if action is Action.RESTORE_GOOGLE and ctx.settings.pushes and not link.read_only:
        # edited in the CRM after Google deleted it: the edit wins, the event comes back
        link.google_etag, link.google_updated = event.etag, event.updated
        link.google_hash, link.crm_hash = CANCELLED, None
        ctx.progress.restore.add(activity.id)
        ctx.progress.to_push.add(activity.id)
        return Result.DONE
    if action is Action.FORGET or not ctx.settings.applies_to_crm:
        await links.remove(s, link)
        return Result.DONE
    occurrences = await links.exceptions(s, activity.id) if activity.recurrence else []
    await activities.delete(s, activity, origin="sync")  # a series takes its exceptions along
    await links.remove(s, link)
    for other in (await links.by_activities(s, ctx.settings.binding_id, occurrences)).values():
        await links.remove(s, other)
    ctx.progress.counts["deleted"] += 1
    return Result.DONE
