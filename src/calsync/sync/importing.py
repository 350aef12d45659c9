"""New Google events that need more than the plain import: private entries, entries the CRM
may only read, meetings other CRM users see too (one activity per iCalUID), and the moved or
cancelled occurrences of series (exceptions, linked to their master by original start)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.activity import ActivityDraft, ActivityInvalid, series_of, validate
from calsync.domain.fields import SyncFields
from calsync.domain.recurrence import follow, is_occurrence
from calsync.google.models import Event
from calsync.store import activities, links, runs, users
from calsync.store.activities import made_in_crm
from calsync.store.errors import AlreadyExists
from calsync.store.models import Activity, EventLink
from calsync.store.statuses import ChangeOrigin, Code, LinkState

from . import filters, mapping
from .codes import TEXTS
from .context import Ctx
from .reconcile import agree, create_exception, first_link, responses


def special(ctx: Ctx, event: Event) -> bool:
    """Whether a new event needs this module (everything else takes the plain bulk import)."""
    return bool(
        filters.is_private(event)
        or event.attendees
        or event.recurring_event_id
        or filters.read_only(ctx, event)
    )


async def import_one(ctx: Ctx, event: Event, g: SyncFields) -> None:
    """A new (non-occurrence) event: join the activity of the same meeting if another CRM
    user's calendar brought it already, else create one — owned by the organiser when the
    organiser is a CRM user of the tenant, so the organiser's binding is the one that writes."""
    assert event.id is not None
    ro = filters.read_only(ctx, event)
    async with ctx.settings.db.session() as session:
        if event.i_cal_uid:
            shared = await links.shared_activity(
                session, ctx.settings.tenant_id, ctx.settings.binding_id, event.i_cal_uid
            )
            if shared is not None:
                link = links.new(
                    ctx.settings.tenant_id,
                    ctx.settings.binding_id,
                    shared.id,
                    event.id,
                    state=LinkState.LINKED,
                )
                session.add(link)
                if shared.owner_id == ctx.settings.user_id:
                    link.read_only = ro
                    await first_link(ctx, session, link, shared, event, g)
                else:
                    link.read_only = filters.NOT_ORGANIZER
                    agree(link, event, g, crm=mapping.activity_fields(shared))
                await responses(ctx, session, shared, event)
                await session.commit()
                ctx.progress.counts["linked"] += 1
                return
        owner = ctx.settings.user_id
        organizer = (event.organizer.email or "") if event.organizer else ""
        if ro == filters.NOT_ORGANIZER and organizer:
            user = await users.by_email(session, ctx.settings.tenant_id, organizer)
            if user is not None:
                owner = user.id
        values = validate(
            mapping.draft(g, None, ctx.settings.time_zone, attendees=mapping.event_attendees(event))
        )
        activity = await activities.create(
            session,
            ctx.settings.tenant_id,
            type_key=filters.import_type(ctx, event),
            owner_id=owner,
            values=values,
            organizer_email=organizer or None,
            origin=ChangeOrigin.SYNC,
            source=ctx.settings.source,
        )
        link = links.new(
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            activity.id,
            event.id,
            state=LinkState.LINKED,
        )
        link.read_only = ro if owner == ctx.settings.user_id else filters.NOT_ORGANIZER
        agree(link, event, g, crm=mapping.activity_fields(activity))
        session.add(link)
        if ro == filters.RECURRENCE:
            await _report_unrepresentable(ctx, session, event, activity)
        await session.commit()
    ctx.progress.counts["created"] += 1


async def _report_unrepresentable(
    ctx: Ctx, session: AsyncSession, event: Event, activity: Activity
) -> None:
    await runs.report_issue(
        session,
        ctx.settings.tenant_id,
        ctx.settings.binding_id,
        ctx.settings.run_id,
        code=Code.RECURRENCE_UNSUPPORTED,
        message=(
            f"The Google series {event.summary or event.id!r} repeats in a way the CRM cannot "
            f"represent ({'; '.join(event.recurrence or ())}); it shows as its first "
            "occurrence and is read-only in the CRM."
        ),
        remedy=TEXTS[Code.RECURRENCE_UNSUPPORTED].remedy,
        activity_id=activity.id,
        google_event_id=event.id,
    )
    ctx.progress.counts["issues"] += 1


async def forget(ctx: Ctx, event: Event) -> None:
    """An event that no longer takes part (the private-events policy became `skip`): its
    activity goes from the CRM; the event stays in Google untouched."""
    assert event.id is not None
    async with ctx.settings.db.session() as session:
        link = await links.by_event(session, ctx.settings.binding_id, event.id)
        if link is None:
            return
        activity = (
            await activities.get(session, ctx.settings.tenant_id, link.activity_id)
            if link.activity_id
            else None
        )
        if activity is not None and made_in_crm(activity):
            return  # the policy is about entries from Google, never the CRM's own
        if (
            activity is not None
            and activity.deleted_at is None
            and activity.owner_id == ctx.settings.user_id
            and ctx.settings.applies_to_crm
        ):
            await activities.delete(session, activity, origin=ChangeOrigin.SYNC)
            ctx.progress.counts["deleted"] += 1
        await links.remove(session, link)
        await session.commit()


def _local(value: date | datetime, master: Activity) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(master.time_zone)).replace(tzinfo=None)
    return datetime.combine(value, time())


async def park_event(ctx: Ctx, event: Event, why: str) -> None:
    """Report a Google event calsync cannot store as an issue naming it; it stays in Google
    and syncs once it changes into something the CRM can hold."""
    async with ctx.settings.db.session() as session:
        await runs.report_issue(
            session,
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            ctx.settings.run_id,
            code=Code.EVENT_UNSUPPORTED,
            message=f"The Google event {event.summary or event.id!r} cannot be stored: {why}",
            remedy=TEXTS[Code.EVENT_UNSUPPORTED].remedy,
            google_event_id=event.id,
        )
        await session.commit()
    ctx.progress.counts["issues"] += 1


async def import_occurrences(ctx: Ctx, events: list[Event]) -> None:
    """Moved, edited or cancelled occurrences whose master is linked here become (or link to)
    the master's exceptions; those of a master calsync does not hold are left alone."""
    for event in events:
        assert event.id is not None and event.recurring_event_id is not None
        try:
            await _occurrence(ctx, event)
        except (ActivityInvalid, AlreadyExists, mapping.Unmappable) as exc:
            await park_event(ctx, event, str(exc))


async def _occurrence(ctx: Ctx, event: Event) -> None:
    assert event.id is not None and event.recurring_event_id is not None
    async with ctx.settings.db.session() as session:
        master_link = await links.by_event(
            session, ctx.settings.binding_id, event.recurring_event_id
        )
        if master_link is None or master_link.activity_id is None:
            return
        if master_link.read_only == filters.RECURRENCE:
            return  # the CRM holds only the first occurrence of that series
        master = await activities.get(session, ctx.settings.tenant_id, master_link.activity_id)
        if master is None or master.deleted_at is not None or not master.recurrence:
            return
        original = mapping.original_start(event, master.time_zone)
        if original is None:
            return
        original_local = _local(original, master)
        if not is_occurrence(activities.series(master), original_local):
            # the CRM moved the series (or Google dropped this instance when it moved it)
            await _carry(ctx, session, event, master, master_link, original_local)
            await session.commit()
            return
        existing = await links.exception_at(session, master.id, original_local)
        if existing is not None:
            if await links.by_activity(session, ctx.settings.binding_id, existing.id) is not None:
                return
            link = links.new(
                ctx.settings.tenant_id,
                ctx.settings.binding_id,
                existing.id,
                event.id,
                state=LinkState.LINKED,
            )
            link.read_only = master_link.read_only
            session.add(link)
            if existing.owner_id == ctx.settings.user_id and not event.cancelled:
                g = filters.google_fields(ctx, event, filters.policy_for(ctx, master))
                await first_link(ctx, session, link, existing, event, g)
            else:
                c = mapping.activity_fields(existing)
                agree(link, event, c, crm=c)
            await session.commit()
            ctx.progress.counts["linked"] += 1
            return
        if event.cancelled and master.owner_id != ctx.settings.user_id:
            return
        parent = activities.series(master)
        if event.start is None or event.end is None:
            # a cancelled occurrence Google describes by its id alone: the generated one's
            # times, hidden by the status
            duration = master.end_local - master.start_local
            start: date | datetime = original_local
            end: date | datetime = original_local + duration
            if master.all_day:
                start, end = original_local.date(), (original_local + duration).date()
            draft = ActivityDraft(
                start=start,
                end=end,
                subject=master.subject,
                all_day=master.all_day,
                time_zone=master.time_zone,
                visibility=master.visibility,
                transparency=master.transparency,
                status="cancelled",
                original_start=start if master.all_day else original_local,
            )
        else:
            g = filters.google_fields(ctx, event, filters.policy_for(ctx, master))
            draft = mapping.draft(
                g,
                None,
                master.time_zone,
                attendees=mapping.event_attendees(event),
                original_start=original_local.date() if master.all_day else original_local,
            )
            if g.all_day:
                draft = _with_zone(draft, master.time_zone)
        activity = await create_exception(ctx, session, master, draft, parent)
        link = links.new(
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            activity.id,
            event.id,
            state=LinkState.LINKED,
        )
        link.read_only = master_link.read_only
        fields = mapping.activity_fields(activity)
        agree(link, event, fields, crm=fields)
        session.add(link)
        await session.commit()
    ctx.progress.counts["created"] += 1


def _with_zone(draft: ActivityDraft, zone: str) -> ActivityDraft:
    return replace(draft, time_zone=zone)


async def _carry(
    ctx: Ctx,
    session: AsyncSession,
    event: Event,
    master: Activity,
    master_link: EventLink,
    original_local: datetime,
) -> None:
    """A Google exception of an occurrence the CRM's series no longer has, because the CRM
    moved the series meanwhile: like the CRM's own exceptions (store.activities), it goes to
    the same occurrence of the moved series when it says more than a time (cancelled, its own
    title ...) and is dropped otherwise; the push writes it to its new instance. An instance
    Google itself dropped (its series moved there too) is no news."""
    if master_link.snapshot is None or master.owner_id != ctx.settings.user_id:
        return
    known = SyncFields.from_json(master_link.snapshot)
    try:
        before = series_of(validate(mapping.draft(known, master, ctx.settings.time_zone)))
    except ActivityInvalid:
        return
    after = activities.series(master)
    slot = follow(before, after, original_local)
    if slot is None or slot == original_local:
        return
    if await links.exception_at(session, master.id, slot) is not None:
        return
    if event.cancelled or event.start is None:
        g = replace(mapping.activity_fields(master), recurrence=(), cancelled=True)
    else:
        g = filters.google_fields(ctx, event, filters.policy_for(ctx, master))
        if (g.summary, g.description, g.location, g.visibility, g.transparency) == (
            known.summary,
            known.description,
            known.location,
            known.visibility,
            known.transparency,
        ):
            return  # only a time of its own: the series' move decides the time
    end = slot + after.duration
    draft = ActivityDraft(
        start=slot.date() if after.all_day else slot,
        end=end.date() if after.all_day else end,
        subject=g.summary,
        description=g.description or None,
        location=g.location or None,
        all_day=after.all_day,
        time_zone=after.zone.key,
        visibility=g.visibility,
        transparency=g.transparency,
        status="cancelled" if g.cancelled else "confirmed",
        original_start=slot.date() if after.all_day else slot,
    )
    activity = await create_exception(ctx, session, master, draft, after)
    instance = mapping.instance_id(
        master_link.google_event_id, after.all_day, slot, master.time_zone
    )
    # pending: the push writes it to the moved series' instance, in this run or a later one
    link = await links.by_event(
        session, ctx.settings.binding_id, instance
    )  # a deleted exception's, maybe
    if link is None:
        link = links.new(
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            activity.id,
            instance,
            state=LinkState.PENDING,
        )
        session.add(link)
    link.activity_id, link.state, link.crm_hash = activity.id, LinkState.PENDING, None
    ctx.progress.counts["created"] += 1
