"""Who the checks examine and what they share: the user with their company, connection,
calendars (bindings) and recent runs as stored, and — once the connection check proved a token
refresh — the token provider and the live calendar list the live checks reuse."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.google.auth import TokenProvider
from calsync.settings import Settings
from calsync.store import bindings, connections, google_settings
from calsync.store.db import Database
from calsync.store.models import CalendarBinding, GoogleConnection, SyncRun, Tenant, User
from calsync.store.statuses import BindingRole, ConnectionStatus
from calsync.sync.tokens import GoogleAccess


@dataclass
class Subject:
    db: Database
    access: GoogleAccess
    settings: Settings
    tenant: Tenant
    user: User
    #: talk to Google and the public URL (False: `calsync doctor --offline`)
    live: bool
    #: the client that asks the public URL (tests pass one); None: a fresh one per check
    http: httpx.AsyncClient | None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    conn: GoogleConnection | None = None
    stored: list[CalendarBinding] = field(default_factory=list)
    runs: list[SyncRun] = field(default_factory=list)
    # the provider whose refresh the connection check proved; the live checks reuse it
    tokens: TokenProvider | None = None

    async def load(self, s: AsyncSession) -> None:
        self.conn = await connections.for_user(s, self.user.id)
        if self.conn is not None:
            self.stored = list(await bindings.for_connection(s, self.conn.id))
        self.runs = list(await google_settings.recent_runs(s, [b.id for b in self.stored], 20))

    @property
    def no_account(self) -> bool:
        """No connection, or the user disconnected it (`google_settings.disconnect`)."""
        return self.conn is None or self.conn.status == ConnectionStatus.REVOKED

    @property
    def binding_ids(self) -> list[uuid.UUID]:
        return [b.id for b in self.stored]


def imports(binding: CalendarBinding) -> bool:
    """The calendar's Google events come into the CRM."""
    return binding.role in (BindingRole.IMPORT, BindingRole.BOTH)


def exports(binding: CalendarBinding) -> bool:
    """The calendar receives the CRM's entries."""
    return binding.role in (BindingRole.EXPORT, BindingRole.BOTH)


def name_of(binding: CalendarBinding) -> str:
    return binding.summary or binding.google_calendar_id
