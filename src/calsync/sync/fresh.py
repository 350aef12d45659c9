"""New Google events nothing in the CRM matches, stored: the special ones one by one
(importing.py), the rest in bulk, a chunk per transaction (store.bulk_import's Core inserts).

Pipelined: chunk k+1 is validated and mapped while chunk k's transaction runs (in aiosqlite's
thread or PostgreSQL's server), and in a streamed pull the last chunk of a page is still being
written while the next page is parsed, read and mapped (`Writes`). The chunk transactions stay
one at a time, in order (changes.reserve numbers them so); an invalid event is parked after the
chunks before it committed; and nothing is left writing when the listing ends or fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection

from calsync.domain.activity import ActivityInvalid, validate
from calsync.domain.fields import SyncFields, canonical_json, content_hash, digest
from calsync.google.models import Event
from calsync.store import bulk_import
from calsync.store.statuses import ChangeOrigin

from . import importing, mapping
from .context import Ctx

IMPORT_CHUNK = 500  # new events stored per transaction (a few ms of bulk inserts)
#: while a chunk is mapped, the event loop gets a turn every so many events (`_checked`)
YIELD_EVERY = 50


class Writes:
    """The import's chunk transactions: at most one running, each started after the one
    before it ended. The last one may still run when `import_fresh` returns, so a streamed
    pull parses and reads its next page meanwhile; whatever needs that chunk committed waits
    for it first (`wait`, or `wait_for` when it concerns some of its events)."""

    def __init__(self) -> None:
        self._running: asyncio.Future[None] | None = None
        self._ids: frozenset[str] = frozenset()

    async def start(self, ctx: Ctx, checked: list[bulk_import.ImportedEvent]) -> None:
        """Write `checked` in a transaction of its own, once the one running has ended."""
        await self.wait()
        self._running = asyncio.ensure_future(_store(ctx, checked))
        self._ids = frozenset(item.google_event_id for item in checked)

    @property
    def pending(self) -> int:
        """Events in the chunk still being written (counted as created once it commits)."""
        running = self._running
        return len(self._ids) if running is not None and not running.done() else 0

    async def wait(self) -> None:
        """Until the chunk being written has committed (its error, if it failed, raised)."""
        running, self._running, self._ids = self._running, None, frozenset()
        if running is not None:
            await running

    async def wait_for(self, event_ids: Collection[str]) -> None:
        """`wait` if one of these Google events is in the chunk being written (a listing
        that names an event twice sees the first one's link, as it did unpipelined)."""
        if self._running is not None and not self._ids.isdisjoint(event_ids):
            await self.wait()

    async def settle(self) -> None:
        """Something else failed: the write in flight ends (committed or not) before that
        error leaves; the write's own error, if any, is seen but not raised over it."""
        running, self._running, self._ids = self._running, None, frozenset()
        if running is None:
            return
        if not running.done():
            with contextlib.suppress(Exception):
                await running
        elif not running.cancelled():
            running.exception()


async def import_fresh(
    ctx: Ctx, fields: list[tuple[Event, SyncFields]], writes: Writes | None = None
) -> None:
    """Import these new events. With `writes` (a streamed pull's), the last chunk may still
    be written when this returns; without, every write has ended."""
    own = writes is None
    pipeline = Writes() if writes is None else writes
    fresh = []
    for event, g in fields:
        if importing.special(ctx, event):
            try:
                await importing.import_one(ctx, event, g)
            except ActivityInvalid as exc:
                await importing.park_event(ctx, event, str(exc))
        else:
            fresh.append((event, g))
    try:
        for i in range(0, len(fresh), IMPORT_CHUNK):
            checked, invalid = await _checked(ctx, fresh[i : i + IMPORT_CHUNK])
            if invalid:
                await pipeline.wait()  # parked after the chunks before them committed
            for event, why in invalid:
                await importing.park_event(ctx, event, why)
            if checked:
                await pipeline.start(ctx, checked)
        if own:
            await pipeline.wait()
    except BaseException:
        await pipeline.settle()
        raise


async def _checked(
    ctx: Ctx, chunk: list[tuple[Event, SyncFields]]
) -> tuple[list[bulk_import.ImportedEvent], list[tuple[Event, str]]]:
    """New Google events as rows of new activities of the default import type (`_store`;
    the link's merge base and hashes are reconcile.agree's, from the validated values), and
    those the CRM cannot hold, with why. Yields to the loop every YIELD_EVERY events, so the
    previous chunk's write goes on with its next statement meanwhile."""
    checked: list[bulk_import.ImportedEvent] = []
    invalid: list[tuple[Event, str]] = []
    for n, (event, g) in enumerate(chunk, 1):
        assert event.id is not None
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        try:
            values = validate(mapping.draft(g, None, ctx.settings.time_zone))
        except ActivityInvalid as exc:
            invalid.append((event, str(exc)))
            continue
        crm = mapping.imported_fields(g, values)
        snapshot = canonical_json(g.to_json())  # stored as it is hashed: encoded once
        google_hash = digest(snapshot)
        checked.append(
            bulk_import.ImportedEvent(
                values=values,
                google_event_id=event.id,
                organizer_email=event.organizer.email if event.organizer else None,
                snapshot_json=snapshot,
                google_hash=google_hash,
                crm_hash=google_hash if crm is g or crm == g else content_hash(crm),
                google_etag=event.etag,
                google_updated=event.updated,
                ical_uid=event.i_cal_uid,
            )
        )
    return checked, invalid


async def _store(ctx: Ctx, checked: list[bulk_import.ImportedEvent]) -> None:
    """A chunk in one transaction (store.bulk_import's Core inserts): atomic like one event
    per transaction (after a crash the unchanged sync token lists them again), without a
    commit per event on an initial import of thousands."""
    async with ctx.settings.db.session() as session:
        await bulk_import.insert_imported(
            session,
            ctx.settings.tenant_id,
            ctx.settings.binding_id,
            checked,
            type_key=ctx.settings.tenant.default_import_type_key,
            owner_id=ctx.settings.user_id,
            source=ctx.settings.source,
            origin=ChangeOrigin.SYNC,
        )
        await session.commit()
    ctx.progress.counts["created"] += len(checked)
