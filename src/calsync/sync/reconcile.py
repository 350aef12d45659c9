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

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.activity import ActivityDraft, Attendee, validate
from calsync.domain.decide import Action, Kind, State, Writes, action_for
from calsync.domain.fields import SyncFields, content_hash
from calsync.domain.ids import activity_id_from_event_id
from calsync.domain.merge import Merged, Policy, merge
from calsync.domain.recurrence import Series, is_occurrence
from calsync.google.models import Event
from calsync.store import activities, links, runs, series
from calsync.store.models import Activity, EventLink
from calsync.store.statuses import ChangeOrigin, LinkState

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


async def relink(ctx: Ctx, session: AsyncSession, event: Event) -> EventLink | None:
    """Rebuild a lost link from the activity id in the event (tag, or our deterministic id).
    The link is new, without a merge base: the classification sees a first link."""
    assert event.id is not None
    settings = ctx.settings
    if event.recurring_event_id is not None:
        return None  # an occurrence carries its master's tag: linked by the pull's exceptions
    candidate = mapping.tagged_activity_id(event, settings.tenant_id) or activity_id_from_event_id(
        event.id
    )
    if candidate is None:
        return None
    activity = await activities.get(session, settings.tenant_id, candidate)
    if activity is None or activity.owner_id != settings.user_id:
        return None
    if event.cancelled and activity.deleted_at is None:
        # a live entry's event gone from this calendar without a link here: calsync moved it
        # to another calendar, or withdrew it (its type is no longer exported) — no news
        return None
    if await links.by_activity(session, settings.binding_id, activity.id) is not None:
        return None  # linked to another event already: never two events for one activity
    if await links.linked_in_other_bindings(
        session, settings.connection_id, settings.binding_id, [activity.id]
    ):
        return None  # the entry lives in another calendar; this is a copy made in Google
    link = links.new(
        settings.tenant_id, settings.binding_id, activity.id, event.id, state=LinkState.LINKED
    )
    session.add(link)
    ctx.progress.counts["linked"] += 1
    return link


async def first_link(
    ctx: Ctx,
    session: AsyncSession,
    link: EventLink,
    activity: Activity,
    event: Event,
    google: SyncFields,
) -> None:
    """Link two entries that were never synced: differing units follow the policy, unrecorded."""
    crm = mapping.activity_fields(activity)
    merged = merge(
        None,
        crm,
        google,
        policy=_policy(ctx, link),
        crm_updated=activity.updated_at,
        google_updated=_updated(event, activity),
    )
    await _apply_merged(ctx, session, link, activity, event, google, merged)


def _policy(ctx: Ctx, link: EventLink | None = None) -> Policy:
    if not ctx.settings.pushes or (link is not None and link.read_only):
        return Policy.GOOGLE_WINS
    if not ctx.settings.applies_to_crm:
        return Policy.CRM_WINS
    return ctx.settings.policy


def _updated(event: Event, activity: Activity) -> datetime:
    return event.updated or activity.updated_at


def agree(link: EventLink, event: Event, google: SyncFields, crm: SyncFields | None) -> None:
    """Google's fields become the base; the CRM side is in sync iff `crm` is given."""
    link.snapshot = google.to_json()
    link.google_hash = content_hash(google)
    link.crm_hash = content_hash(crm) if crm is not None else None
    link.google_etag = event.etag
    link.google_updated = event.updated
    link.ical_uid = event.i_cal_uid
    link.state = LinkState.LINKED


async def write_crm(
    ctx: Ctx,
    session: AsyncSession,
    activity: Activity,
    values: SyncFields,
    *,
    attendees: tuple[Attendee, ...] | None = None,
) -> None:
    """Store `values` on the activity (raises ActivityInvalid when the CRM cannot hold them);
    an exception is checked against its master's series."""
    parent = None
    if activity.recurring_parent_id is not None:
        master = await activities.get(session, ctx.settings.tenant_id, activity.recurring_parent_id)
        if master is not None:
            parent = activities.series(master)
    checked = validate(
        mapping.draft(values, activity, ctx.settings.time_zone, attendees=attendees), parent
    )
    before = activities.series(activity) if activity.recurrence and parent is None else None
    await activities.update(session, activity, checked, origin=ChangeOrigin.SYNC)
    ctx.progress.counts["updated"] += 1
    if before is not None and activities.series(activity) != before:
        await exceptions_followed(ctx, session, activity)


async def create_exception(
    ctx: Ctx,
    session: AsyncSession,
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
        session,
        ctx.settings.tenant_id,
        type_key=like.type_key,
        owner_id=like.owner_id,
        values=validate(draft, parent),
        recurring_parent_id=master.id,
        organizer_email=like.organizer_email,
        origin=ChangeOrigin.SYNC,
        source=activities.source_of(master),  # an exception belongs where its series does
    )


async def exceptions_followed(ctx: Ctx, session: AsyncSession, master: Activity) -> None:
    """The series moved and the store moved or deleted its exceptions with it: a deleted
    one's link is done (Google dropped that instance itself), a moved one's link still names
    the old instance, so the push writes it to the new one (`crm_hash` cleared keeps it owed
    across runs)."""
    shape = activities.series(master)
    master_link = await links.by_activity(session, ctx.settings.binding_id, master.id)
    for link, activity in await series.exception_links(session, ctx.settings.binding_id, master.id):
        if activity.deleted_at is not None:
            original = activity.original_start_local
            if original is None or not is_occurrence(shape, original):
                await links.remove(session, link)
        elif link.google_event_id != instance_of(activity, master, master_link):
            link.crm_hash = None
            ctx.progress.to_push.add(activity.id)


async def expected_instance(ctx: Ctx, session: AsyncSession, exception: Activity) -> str | None:
    """The Google instance id an exception belongs to now (None if its series has no link)."""
    if exception.recurring_parent_id is None or exception.original_start_local is None:
        return None
    master_link = await links.by_activity(
        session, ctx.settings.binding_id, exception.recurring_parent_id
    )
    master = await activities.get(session, ctx.settings.tenant_id, exception.recurring_parent_id)
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


async def responses(ctx: Ctx, session: AsyncSession, activity: Activity, event: Event) -> None:
    """Show Google's guests and their answers (accepted, declined ...) on the activity; a
    decline is an answer, not a deletion."""
    wanted = mapping.event_attendees(event)
    if wanted is None or not ctx.settings.applies_to_crm or activity.deleted_at is not None:
        return
    if wanted != mapping.guests(activity):
        await write_crm(ctx, session, activity, mapping.activity_fields(activity), attendees=wanted)


async def _apply_merged(
    ctx: Ctx,
    session: AsyncSession,
    link: EventLink,
    activity: Activity,
    event: Event,
    google: SyncFields,
    merged: Merged,
) -> None:
    if merged.to_crm and ctx.settings.applies_to_crm:
        await write_crm(ctx, session, activity, merged.values)
    for conflict in merged.conflicts:
        runs.record_conflict(
            session,
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
        agree(link, event, google, crm=None)  # the push writes the units the CRM won
        ctx.progress.to_push.add(activity.id)
    else:
        agree(link, event, google, crm=mapping.activity_fields(activity))


async def _series_gone(ctx: Ctx, session: AsyncSession, exception: Activity) -> bool:
    assert exception.recurring_parent_id is not None
    master = await activities.get(session, ctx.settings.tenant_id, exception.recurring_parent_id)
    return master is None or master.deleted_at is not None


@dataclass
class Case:
    """One event classified for the decision table, with what the action needs to run."""

    kind: Kind
    link: EventLink | None = None
    activity: Activity | None = None
    crm: State | None = None
    google: State | None = None
    #: Google's fields (None when the action does not read them)
    fields: SyncFields | None = None
    writes: Writes = Writes.BOTH

    @property
    def action(self) -> Action:
        return action_for(self.kind, self.crm, self.google, self.writes)


def _writes(ctx: Ctx, link: EventLink) -> Writes:
    if not ctx.settings.applies_to_crm:
        return Writes.GOOGLE
    return Writes.BOTH if ctx.settings.pushes and not link.read_only else Writes.CRM


async def classify(
    ctx: Ctx,
    session: AsyncSession,
    event: Event,
    link: EventLink | None,
    activity: Activity | None = None,
) -> Case:
    """Which case of the decision table this event is (domain.decide); reads Google's fields
    and records the guests' answers on the way, as every case that reads them needs.
    `activity`: the link's, read with it (store.links.with_activities), else read here."""
    assert event.id is not None
    settings = ctx.settings
    relinked = False
    if link is None:
        link = await relink(ctx, session, event)
        if link is None:
            # a cancelled occurrence still needs its exception; other cancelled events do not
            gone = event.cancelled and event.recurring_event_id is None
            return Case(Kind.GONE if gone else Kind.NEW_IN_GOOGLE)
        relinked = True
    if link.activity_id is None or link.state in (LinkState.MOVING, LinkState.DETACHED):
        # parked: waits for a person; moving: the export calendar's sync is taking it out of
        # this calendar; detached: a project task neither side writes (sync.transitions)
        return Case(Kind.WAITING, link)
    if activity is None or activity.id != link.activity_id:
        activity = await activities.get(session, settings.tenant_id, link.activity_id)
    if activity is None:
        gone = event.cancelled
        return Case(Kind.GONE if gone else Kind.NEW_IN_GOOGLE, link)
    case = Case(Kind.ENTRY, link, activity, writes=_writes(ctx, link))
    occurrence = activity.recurring_parent_id is not None
    live = activity.deleted_at is None
    if link.state == LinkState.PENDING and event.cancelled and not occurrence and live:
        # our insert met an event of ours Google holds as deleted (the entry was withdrawn
        # when its type stopped being exported, or moved away and back): it comes back with
        # the CRM's fields instead of the CRM entry being deleted
        case.kind = Kind.REUSED_ID
        return case
    expected = await expected_instance(ctx, session, activity) if occurrence else None
    if expected is not None and event.id != expected:
        # the series moved and took this exception to another occurrence: the push writes it
        # there; the old instance (which Google dropped) is no news
        case.kind = Kind.MOVED_EXCEPTION
        return case
    if occurrence and not live and event.cancelled and settings.pushes:
        case.kind = Kind.CANCELLED_EXCEPTION
        return case
    if event.cancelled and (not occurrence or not live):
        if activity.owner_id != settings.user_id:
            # an attendee's copy went away (uninvited, or the organiser deleted it): the
            # organiser's binding decides about the activity
            case.kind = Kind.ATTENDEE_COPY_GONE
            return case
        case.crm, case.google = crm_state(activity, link), State.DELETED
        return case
    if link.state != LinkState.PENDING and link.google_etag == event.etag and not settings.reapply:
        # our own write coming back, or nothing new
        case.crm, case.google = crm_state(activity, link), State.UNCHANGED
        return case
    if activity.owner_id != settings.user_id:
        # an attendee's copy of a meeting another CRM user owns: that user's binding writes
        # the fields; this copy only brings its guests' answers
        case.kind = Kind.ATTENDEE_COPY
        return case
    policy = filters.policy_for(ctx, activity)
    if event.cancelled and link.snapshot is not None and event.start is None:
        google = replace(SyncFields.from_json(link.snapshot), cancelled=True)
    else:
        google = filters.google_fields(ctx, event, policy)
    case.fields = google
    read_only = filters.read_only(ctx, event, policy)
    if link.read_only != read_only:  # set only when it changes: a link left clean needs no
        link.read_only = read_only  # flush before the activity's write (store.activities)
    case.writes = _writes(ctx, link)
    if not relinked:
        await responses(ctx, session, activity, event)
    if link.snapshot is None:
        # never synced: a deleted entry's delete is the newer fact (the push deletes the event)
        if live:
            case.kind = Kind.FIRST_LINK
        else:
            case.crm, case.google = State.DELETED, State.UNCHANGED
        return case
    base = SyncFields.from_json(link.snapshot)
    changed = content_hash(google) != link.google_hash and google != base
    case.crm = crm_state(activity, link)
    case.google = State.CHANGED if changed else State.UNCHANGED
    if changed and occurrence and not live and await _series_gone(ctx, session, activity):
        # the CRM deleted the whole series: an edit of one occurrence in Google does not bring
        # back an exception without its series (an edit beats a deletion of the same entry
        # only); the push deletes the series in Google, and the instance with it
        case.kind = Kind.SERIES_DELETED
    return case


def _record_event(link: EventLink, event: Event) -> None:
    link.google_etag, link.google_updated = event.etag, event.updated
    link.ical_uid = event.i_cal_uid


def _owed_restore(ctx: Ctx, link: EventLink, activity: Activity, event: Event) -> None:
    """Google deleted the event the CRM still wants: the push undeletes it with the CRM's
    fields (`CANCELLED` marks the link; `crm_hash` cleared keeps it owed across runs)."""
    link.state = LinkState.LINKED
    link.google_etag, link.google_updated = event.etag, event.updated
    link.google_hash, link.crm_hash = CANCELLED, None
    ctx.progress.restore.add(activity.id)
    ctx.progress.to_push.add(activity.id)


async def reconcile(
    ctx: Ctx,
    session: AsyncSession,
    event: Event,
    link: EventLink | None,
    activity: Activity | None = None,
) -> Result:
    """Bring one event and its activity together: classify, look the action up, carry it out
    (`activity`: the link's as read with it; read here when not given)."""
    case = await classify(ctx, session, event, link, activity)
    action = case.action
    link, activity, google = case.link, case.activity, case.fields
    if action is Action.IMPORT:
        if link is not None:
            await links.remove(session, link)  # its activity is gone: the event is new
        return Result.UNLINKED
    if action is Action.NOTHING and case.kind is not Kind.ENTRY:
        return Result.SKIPPED
    if action is Action.FORGET:
        if link is not None:
            await links.remove(session, link)
        return Result.DONE
    assert link is not None and activity is not None
    if case.kind is Kind.CANCELLED_EXCEPTION:
        # the cancelled exception a user's delete put in its place takes the link over, or
        # the instance stays (plan._occurrence_free)
        ctx.progress.to_push.add(activity.id)
        return Result.SKIPPED
    if case.google is State.UNCHANGED:
        # Google's side is as last synced: nothing to take from it (the push reaches the same
        # cell from the CRM side and writes a CRM change or delete)
        return _unchanged(link, event, google)
    match action:
        case Action.RESTORE_GOOGLE:
            _owed_restore(ctx, link, activity, event)
        case Action.DELETE_CRM:
            await _delete_activity(ctx, session, link, activity)
        case Action.ANSWERS:
            link.read_only = filters.NOT_ORGANIZER
            await responses(ctx, session, activity, event)
            _record_event(link, event)
            link.state = LinkState.LINKED
        case Action.LINK:
            assert google is not None
            await first_link(ctx, session, link, activity, event, google)
        case Action.PUSH:
            # the CRM is only read (crm_to_google): Google's edits are overwritten
            assert google is not None
            agree(link, event, google, crm=None)
            ctx.progress.to_push.add(activity.id)
        case Action.RESTORE_CRM | Action.PULL:
            assert google is not None
            if action is Action.RESTORE_CRM:
                along = await links.restore_activity(session, activity)
                await _owe_instances(ctx, session, link, activity, along)
                ctx.progress.counts["restored"] += 1
            if mapping.activity_fields(activity) != google:
                await write_crm(ctx, session, activity, google)
            agree(link, event, google, crm=mapping.activity_fields(activity))
        case Action.MERGE:
            assert google is not None and link.snapshot is not None
            merged = merge(
                SyncFields.from_json(link.snapshot),
                mapping.activity_fields(activity),
                google,
                policy=_policy(ctx, link),
                crm_updated=activity.updated_at,
                google_updated=_updated(event, activity),
            )
            await _apply_merged(ctx, session, link, activity, event, google, merged)
        case _:
            raise AssertionError(f"reconcile cannot {action} ({case.kind})")
    return Result.DONE


async def _owe_instances(
    ctx: Ctx,
    session: AsyncSession,
    master_link: EventLink,
    master: Activity,
    exceptions: list[Activity],
) -> None:
    """The exceptions a restored series brought back, each owed to its instance in Google: a
    pending link, which the push reads as owed (this run's push when the pull restored the
    series, the next run's when the push's own 412 did; after a crash too) and places
    (plan._place). The link their delete's push left, if any, is taken over."""
    settings = ctx.settings
    for exception in exceptions:
        event_id = instance_of(exception, master, master_link)
        assert event_id is not None  # an exception has its original start
        await links.claim_instance(
            session, settings.tenant_id, settings.binding_id, exception.id, event_id
        )


def _unchanged(link: EventLink, event: Event, google: SyncFields | None) -> Result:
    if google is None:
        return Result.UNCHANGED  # the same etag: our own write coming back, or nothing new
    if link.snapshot is None:  # a relinked entry the CRM deleted: the push deletes the event
        agree(link, event, google, crm=None)
        return Result.DONE
    _record_event(link, event)
    if link.state == LinkState.PENDING:
        link.state = LinkState.LINKED
        link.google_hash = content_hash(google)
    return Result.UNCHANGED


async def _delete_activity(
    ctx: Ctx, session: AsyncSession, link: EventLink, activity: Activity
) -> None:
    """Google deleted the event: the activity is tombstoned (a series takes its exceptions
    along) and its links go."""
    occurrences = await links.exceptions(session, activity.id) if activity.recurrence else []
    await activities.delete(session, activity, origin=ChangeOrigin.SYNC)
    await links.remove(session, link)
    for other in (
        await links.by_activities(session, ctx.settings.binding_id, occurrences)
    ).values():
        await links.remove(session, other)
    ctx.progress.counts["deleted"] += 1
