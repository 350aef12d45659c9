"""The state of one running sync: settings read at the start, counters, and test hooks."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from calsync.domain.merge import Policy
from calsync.google.calendar import CalendarClient
from calsync.store.activities import Source
from calsync.store.db import Database
from calsync.store.models import Tenant

Hook = Callable[..., Awaitable[None]]


@dataclass
class Hooks:
    """Injection points for tests (a crash right after a Google write, a concurrent edit)."""

    after_pull: Hook | None = None
    after_google_write: Hook | None = None  # (ctx, calls, results)

    async def fire(self, name: str, *args: Any) -> None:
        hook = getattr(self, name)
        if hook is not None:
            await hook(*args)


@dataclass
class Ctx:
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
    time_zone: str | None
    sync_token: str | None
    push_seq: int
    run_id: uuid.UUID
    now: datetime
    lookback: timedelta
    policy: Policy
    hooks: Hooks
    lock_owner: str
    allow_mass_delete: bool = False
    full: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    #: activities the pull found need Google writing (a merge's CRM side, a restore)
    to_push: set[uuid.UUID] = field(default_factory=set)
    #: activities whose Google event was deleted while the CRM edited them: undelete in Google
    restore: set[uuid.UUID] = field(default_factory=set)
    #: the connection's private-events policy (import / busy / skip) and Google account
    private_events: str = "import"
    google_email: str | None = None
    #: the policy changed since the links were made: re-apply it to every listed event
    reapply: bool = False
    #: activities the push can only write after another write lands (a new master's
    #: exceptions): planned again in the next round
    later: set[uuid.UUID] = field(default_factory=set)

    @property
    def source(self) -> Source:
        """What activities this calendar imports record as their origin."""
        return Source(self.calendar_id, self.google_email)

    @property
    def window_start(self) -> datetime:
        return self.now - self.lookback

    @property
    def pulls(self) -> bool:
        return self.direction != "crm_to_google"

    @property
    def applies_to_crm(self) -> bool:
        return self.direction != "crm_to_google"

    @property
    def pushes(self) -> bool:
        return self.direction != "google_to_crm"

    @property
    def exports(self) -> bool:
        """New CRM activities go to this calendar (the export target)."""
        return self.pushes and self.role in ("export", "both")
