"""The state of one running sync, in two parts: what the run was started with (`RunSettings`,
frozen: no module can change a setting halfway through a run) and what it accumulates as it
goes (`RunProgress`: counters, entries owed a Google write, the push cursor)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from calsync.domain.direction import Direction
from calsync.domain.merge import Policy
from calsync.google.calendar import CalendarClient
from calsync.store.activities import Source
from calsync.store.db import Database
from calsync.store.models import Tenant
from calsync.store.statuses import BindingRole, PrivateEvents

Hook = Callable[..., Awaitable[None]]


@dataclass
class Hooks:
    """Injection points for tests (a crash right after a Google write, a concurrent edit)."""

    after_pull: Hook | None = None
    after_google_write: Hook | None = None  # (ctx, calls, results)
    # the runner's lock keeper: from the moment the binding's lock is taken until just before
    # it is released (jobs/execute.py), so it never mistakes its own release for a loss
    after_lock: Hook | None = None
    before_release: Hook | None = None
    # () before every request that changes Google (CalendarClient.before_write): the runner's
    # check that its lock was not taken while the process stalled; it raises to stop the run
    before_google_write: Hook | None = None

    async def fire(self, name: str, *args: Any) -> None:
        hook = getattr(self, name)
        if hook is not None:
            await hook(*args)


@dataclass(frozen=True)
class RunSettings:
    """Everything the run reads from the tenant, connection and binding at its start."""

    db: Database
    client: CalendarClient
    tenant: Tenant
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    connection_id: uuid.UUID
    binding_id: uuid.UUID
    calendar_id: str
    role: str
    direction: str
    #: the calendar's zone; a run that starts without one learns it from the first listing
    #: (`Ctx.learn_time_zone`) before anything is written
    time_zone: str | None
    #: the token the pull lists changes after (None: a full listing of the window)
    sync_token: str | None
    run_id: uuid.UUID
    now: datetime
    lookback: timedelta
    policy: Policy
    hooks: Hooks
    lock_owner: str
    allow_mass_delete: bool = False
    #: the connection's private-events policy (import / busy / skip) and Google account
    private_events: str = PrivateEvents.IMPORT
    google_email: str | None = None
    #: the policy changed since the links were made: re-apply it to every listed event
    reapply: bool = False
    #: the digest of the settings the push's scans depend on (sync.scans.settings_key)
    scan_key: str = ""

    @property
    def source(self) -> Source:
        """What activities this calendar imports record as their origin."""
        return Source(self.calendar_id, self.google_email)

    @property
    def window_start(self) -> datetime:
        return self.now - self.lookback

    @property
    def pulls(self) -> bool:
        return self.direction != Direction.CRM_TO_GOOGLE

    @property
    def applies_to_crm(self) -> bool:
        return self.direction != Direction.CRM_TO_GOOGLE

    @property
    def pushes(self) -> bool:
        return self.direction != Direction.GOOGLE_TO_CRM

    @property
    def exports(self) -> bool:
        """New CRM activities go to this calendar (the export target)."""
        return self.pushes and self.role in (BindingRole.EXPORT, BindingRole.BOTH)


@dataclass(frozen=True)
class Listed:
    """A listing read to its end: the token the next one starts from, the calendar's zone."""

    sync_token: str | None
    time_zone: str | None


@dataclass
class RunProgress:
    """What the run accumulates: the counts it reports and the work one stage leaves to the
    next (the pull's owed writes for the push, the push's next round)."""

    #: the binding's push cursor (the change-feed seq the push has written up to)
    push_seq: int
    #: the run lists the whole window (asked for, no token yet, or Google expired the token)
    full: bool = False
    #: the push reads every entry of the window, not only the change feed and the owed links
    #: (a first sync, a 410, a full sync asked for, a setting changed: sync.scans)
    scan: bool = False
    #: the scan ran and everything it found was written: the engine stores `scan_key` with
    #: the push cursor at the run's end (sync.scans)
    scanned: bool = False
    #: the pull applied every page of its listing: the engine stores the new sync token (and
    #: the private-events policy it applied) with the run's end
    listed: Listed | None = None
    counts: Counter[str] = field(default_factory=Counter)
    #: activities the pull found need Google writing (a merge's CRM side, a restore)
    to_push: set[uuid.UUID] = field(default_factory=set)
    #: activities whose Google event was deleted while the CRM edited them: undelete in Google
    restore: set[uuid.UUID] = field(default_factory=set)
    #: activities the push can only write after another write lands (a new master's
    #: exceptions): planned again in the next round
    later: set[uuid.UUID] = field(default_factory=set)
    #: a write found no event or no calendar at Google while the run had not listed Google
    #: (`Ctx.unread`): the engine lists now (a calendar gone disables the binding) and pushes
    #: again
    relist: bool = False


@dataclass
class Ctx:
    """One run: its fixed settings and its progress, passed to every sync module."""

    settings: RunSettings
    progress: RunProgress

    @property
    def unread(self) -> bool:
        """The run pulls but has not listed Google (a CRM change's, sync.engine
        `_reads_google`): a write Google answers 404 waits for a listing instead of being
        parked (`RunProgress.relist`)."""
        return self.settings.pulls and self.progress.listed is None

    def learn_time_zone(self, zone: str | None) -> None:
        """The calendar's zone as Google's listing states it, for a binding stored without one
        (read before the first write, so every write of the run sees the same zone)."""
        if self.settings.time_zone is None:
            self.settings = replace(self.settings, time_zone=zone)
