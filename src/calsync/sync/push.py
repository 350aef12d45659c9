"""Push: write the CRM's changes to Google — inserts, patches of changed fields only, deletes —
in batch requests, without reading anything first.

Which activities: the change feed after the binding's cursor (the owner's changes not made by
the sync itself), links the pull left owing a write, and on a first sync every exportable
activity in the window. `sync.plan` decides each one's write (the decision table); this module
sends them in batches and stores Google's answers (`settle`). Patches carry If-Match; a 412
re-reads that one event, merges, and patches again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.activity import PROJECT_TASK
from calsync.domain.fields import content_hash
from calsync.google import errors
from calsync.google.models import Event
from calsync.store import links, runs, sync_rows
from calsync.store.db import Transaction
from calsync.store.statuses import LinkState

from . import filters, mapping, transitions
from .channels import echo
from .context import Ctx
from .errors import parks
from .ops import Op, OpKind, Settled
from .plan import plan
from .reconcile import reconcile

log = logging.getLogger(__name__)

MAX_ROUNDS = 3  # a 412 or 409 leads to one more round for that entry; a third is left to later


async def push(ctx: Ctx, end: Transaction) -> None:
    """`end` is the run's end (sync.engine): the push reads what it owes in it, and when
    that is nothing, the end goes on in the same transaction (a no-op sync takes two, the
    start and the end); else the reads' transaction is ended before the first request."""
    # the feed's last seq, the links owing a write and the owner's changes after the
    # cursor that the sync did not make, one statement
    reads = await sync_rows.push_reads(
        await end.connection(),
        ctx.settings.tenant_id,
        ctx.settings.binding_id,
        ctx.settings.user_id,
        ctx.progress.push_seq,
    )
    last = reads.last
    seqs: dict[uuid.UUID, int] = {}  # the first seq of each activity
    for activity_id, seq in reads.feed:
        seqs.setdefault(activity_id, seq)
    todo: set[uuid.UUID] = set(seqs) | ctx.progress.to_push
    todo.update(reads.owed)
    if ctx.progress.scan:
        async with end.session() as session:
            todo.update(await _scan(ctx, session))
    if todo:
        await end.commit()  # no transaction stays open while Google is asked
    deferred: set[uuid.UUID] = set()
    rounds = 0
    while todo and rounds < MAX_ROUNDS:
        rounds += 1
        # the calendar's channel owes these writes' echo (sync/channels/echo.py), stored with
        # the plan before the request leaves
        owed = echo.Owed(ctx.settings)
        ops = await plan(ctx, todo, owed.store)
        # what plan wrote no request for is settled: written already, or deliberately not
        # written (type not exported, import-only calendar, read-only) — never "pending"
        todo = set()
        if ops:
            batch = ctx.settings.client.batch([op.call for op in ops])
            results = await echo.written(ctx.settings, owed.since, batch)
            await ctx.settings.hooks.fire("after_google_write", ctx, ops, results)
            for op, result in zip(ops, results, strict=True):
                outcome = await settle(ctx, op, result)
                if outcome is Settled.AGAIN:
                    todo.add(op.activity_id)
                elif outcome is Settled.DEFERRED:
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
    cursor = max(cursor, ctx.progress.push_seq)
    # the scan is done once everything it found was written (sync.scans): a deferred entry
    # keeps the old key, so the next run scans again and finds it. The cursor and the key are
    # stored by the engine with the run's end (one transaction fewer per sync); a crash before
    # then leaves both behind, and the next run finds what they covered written already
    ctx.progress.scanned = ctx.progress.scan and not deferred
    ctx.progress.push_seq = cursor


async def _scan(ctx: Ctx, session: AsyncSession) -> set[uuid.UUID]:
    """Every entry of the window a setting may have made owe a write (sync.scans: only on a
    first sync, a 410, a full sync asked for, or a changed setting)."""
    exported = filters.exported_types(ctx.settings.tenant)
    # entries that stopped being exported (their type, or the admin's exported types)
    found = set(await links.unexported(session, ctx.settings.binding_id, exported, PROJECT_TASK))
    if ctx.settings.exports:
        # CRM entries in an unticked calendar deleted or no longer exported leave Google
        found.update(
            await links.unexported_unselected(
                session, ctx.settings.connection_id, exported, PROJECT_TASK
            )
        )
        # every exportable activity without a link: new on a first sync, and those of a
        # type the admin exports since (the change feed never named them for Google)
        fresh = await links.unlinked_activities(
            session,
            ctx.settings.tenant_id,
            ctx.settings.user_id,
            ctx.settings.binding_id,
            since=ctx.settings.window_start,
            type_keys=exported,
        )
        found.update(a.id for a in fresh if filters.exportable(ctx.settings.tenant, a))
    return found


async def _store_written(ctx: Ctx, op: Op, result: Event) -> bool:
    """A write Google took, stored on the link it was planned from without loading that link
    (one UPDATE, and closing the entry's open issues only when it has some): False when the
    op names no link, is a new series (whose exceptions wait for it, read below), or its link
    is no longer the activity's here — `settle` then reads and decides as before."""
    if op.link_id is None or op.from_binding is not None:
        return False
    if op.kind is OpKind.INSERT and (op.values is None or op.values.recurrence):
        return False
    if op.kind not in (OpKind.INSERT, OpKind.PATCH):
        return False
    g = mapping.event_fields(result, ctx.settings.time_zone)
    values = {
        "state": LinkState.LINKED,
        "google_event_id": result.id or op.event_id,
        "snapshot": g.to_json(),
        "google_hash": content_hash(g),
        "crm_hash": content_hash(op.values) if op.values is not None else None,
        "google_etag": result.etag,
        "google_updated": result.updated,
        "ical_uid": result.i_cal_uid,
    }
    binding_id = ctx.settings.binding_id
    async with ctx.settings.db.connection() as conn:
        issues = await sync_rows.store_written(conn, op.link_id, binding_id, op.activity_id, values)
        if issues is None:
            await conn.rollback()
            return False
        if issues:
            await runs.resolve_issues(conn, binding_id, activity_id=op.activity_id)
        await conn.commit()
    return True


async def settle(ctx: Ctx, op: Op, result: Any) -> Settled:
    """Store one write's answer in its own transaction; returns what the push loop does next."""
    if isinstance(result, errors.GoogleError) and result.needs_reauth:
        raise result
    if op.kind is OpKind.MOVE:
        assert op.from_binding is not None and op.from_calendar is not None
        return await transitions.settle_move(
            ctx, op.activity_id, op.event_id, op.from_binding, op.from_calendar, result
        )
    if isinstance(result, Event) and await _store_written(ctx, op, result):
        ctx.progress.counts["pushed"] += 1
        return Settled.DONE
    async with ctx.settings.db.session() as session:
        link = await links.by_activity(
            session, op.from_binding or ctx.settings.binding_id, op.activity_id
        )
        if link is None:
            return Settled.DONE
        if op.kind in (OpKind.DELETE, OpKind.WITHDRAW):
            if result is None or isinstance(result, errors.NotFound | errors.Deleted):
                await links.remove(session, link)
                await session.commit()
                ctx.progress.counts["pushed"] += 1
                return Settled.DONE
        elif isinstance(result, Event):
            g = mapping.event_fields(result, ctx.settings.time_zone)
            link.state = LinkState.LINKED
            link.google_event_id = result.id or op.event_id
            link.snapshot = g.to_json()
            link.google_hash = content_hash(g)
            link.crm_hash = content_hash(op.values) if op.values is not None else None
            link.google_etag, link.google_updated = result.etag, result.updated
            link.ical_uid = result.i_cal_uid
            if op.kind is OpKind.INSERT and op.values is not None and op.values.recurrence:
                ctx.progress.later.update(await links.exceptions(session, op.activity_id))
            await runs.resolve_issues(session, ctx.settings.binding_id, activity_id=op.activity_id)
            await session.commit()
            ctx.progress.counts["pushed"] += 1
            return Settled.DONE
        if op.from_binding is not None and isinstance(result, errors.PreconditionFailed):
            # withdrawing from an unticked calendar, whose Google edits are not synced: the
            # event changed there since — delete that version in the next round
            assert op.from_calendar is not None
            try:
                event = await ctx.settings.client.get_event(op.from_calendar, link.google_event_id)
            except (errors.NotFound, errors.Deleted):
                await links.remove(session, link)
                await session.commit()
                return Settled.DONE
            except errors.GoogleError as exc:
                if exc.needs_reauth:
                    raise
                return Settled.DEFERRED
            link.google_etag = event.etag
            await session.commit()
            return Settled.AGAIN
        if isinstance(result, errors.Duplicate | errors.PreconditionFailed | errors.Deleted):
            # 409: our earlier insert landed (adopt it); 412/410: Google moved on — re-read it
            try:
                event = await ctx.settings.client.get_event(
                    ctx.settings.calendar_id, link.google_event_id
                )
            except errors.GoogleError as exc:
                if exc.needs_reauth:
                    raise
                return Settled.DEFERRED
            if isinstance(result, errors.Duplicate):
                ctx.progress.counts["adopted"] += 1
            else:
                ctx.progress.counts["refetched"] += 1
            await reconcile(ctx, session, event, link)
            await session.commit()
            return Settled.AGAIN
        if isinstance(result, errors.NotFound) and ctx.unread:
            # the calendar may be gone, or the event moved: the listing tells (sync.engine)
            ctx.progress.relist = True
            return Settled.DEFERRED
        if isinstance(result, errors.GoogleError) and (
            parks(result) or isinstance(result, errors.NotFound)
        ):
            if op.values is not None:
                link.crm_hash = content_hash(op.values)
            link.state = LinkState.PARKED
            await runs.report_issue(
                session,
                ctx.settings.tenant_id,
                ctx.settings.binding_id,
                ctx.settings.run_id,
                code=result.code,
                message=result.message,
                remedy=result.remedy,
                activity_id=op.activity_id,
                google_event_id=op.event_id,
            )
            await session.commit()
            ctx.progress.counts["issues"] += 1
            return Settled.PARKED
    log.info("push deferred", extra={"activity": str(op.activity_id), "error": str(result)})
    return Settled.DEFERRED
