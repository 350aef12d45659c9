"""The app's Google objects, made once per app from settings: the OAuth client (with pending
sign-ins kept in the database), the engine's `GoogleAccess`, and background syncs in flight.

In sync/, not web/: the service layer (sync/connect.py) takes them, and the cli and the sandbox
call that layer as the web does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from calsync.google import errors
from calsync.google.auth import TokenProvider
from calsync.google.calendar import CalendarClient
from calsync.google.models import CalendarListEntry
from calsync.google.oauth import STATE_TTL_SECONDS, GoogleOAuth, PendingAuthorization
from calsync.google.retry import RetryPolicy
from calsync.google.service_account import ServiceAccountTokens
from calsync.settings import Settings
from calsync.store import oauth_states
from calsync.store.db import Database
from calsync.store.models import Tenant
from calsync.sync.tokens import GoogleAccess, load_service_account_key

log = logging.getLogger(__name__)
DRAIN_SECONDS = 30.0


class DbStateStore:
    """`StateStore` in the database: the callback may land on any web process, and a state
    is taken once — a second use, another process's use or an expired one finds nothing."""

    def __init__(self, db: Database, ttl: float) -> None:
        self.db = db
        self.ttl = ttl

    async def put(self, pending: PendingAuthorization) -> None:
        created = datetime.fromtimestamp(pending.created_at, UTC)
        async with self.db.session() as session:
            await oauth_states.put(
                session,
                pending.state,
                user_key=pending.user_key,
                code_verifier=pending.code_verifier,
                redirect_uri=pending.redirect_uri,
                login_hint=pending.login_hint,
                browser_hash=pending.browser,
                created_at=created,
                expires_at=created + timedelta(seconds=self.ttl),
            )
            await session.commit()

    async def take(self, state: str) -> PendingAuthorization | None:
        async with self.db.session() as session:
            found = await oauth_states.take(session, state)
            await session.commit()
        if found is None:
            return None
        return PendingAuthorization(
            state=state,
            user_key=found.user_key,
            code_verifier=found.code_verifier,
            redirect_uri=found.redirect_uri,
            created_at=found.created_at.timestamp(),
            login_hint=found.login_hint,
            browser=found.browser_hash,
        )


@dataclass
class GoogleServices:
    settings: Settings
    access: GoogleAccess
    oauth: GoogleOAuth | None
    retry: RetryPolicy | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def create(
        cls, settings: Settings, db: Database, *, retry: RetryPolicy | None = None
    ) -> GoogleServices:
        oauth: GoogleOAuth | None = None
        if settings.oauth_configured:
            store = DbStateStore(db, STATE_TTL_SECONDS)
            oauth = GoogleOAuth(settings, state_store=store, retry=retry)
        access = GoogleAccess(settings, oauth=oauth, retry=retry)
        return cls(settings, access, oauth, retry)

    def require_oauth(self) -> GoogleOAuth:
        if self.oauth is None:
            raise errors.OAuthNotConfigured()
        return self.oauth

    def service_account(self, tenant: Tenant) -> ServiceAccountTokens:
        """A fresh token source for the tenant's current key (the Test button, enabling)."""
        return ServiceAccountTokens(
            load_service_account_key(tenant), settings=self.settings, retry=self.retry
        )

    def calendar_client(self, tokens: TokenProvider) -> CalendarClient:
        """A Calendar client of its own (the caller closes it) on the app's retry policy and
        request rate limiter."""
        return CalendarClient(
            tokens,
            settings=self.settings,
            retry=self.retry,
            rate_limiter=self.access.rate_limiter,
        )

    async def calendars_as(
        self, tokens: ServiceAccountTokens, email: str
    ) -> list[CalendarListEntry]:
        """Act as `email` through the service account and read their calendar list (the Test
        button, enabling); closes `tokens`. Google's refusals raise `GoogleError`."""
        try:
            await tokens.check(email)
            client = self.calendar_client(tokens.for_user(email))
            try:
                return await client.calendars()
            finally:
                await client.aclose()
        finally:
            await tokens.aclose()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run in the background (until a job runner exists); kept referenced until done."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for background work (shutdown, tests), at most DRAIN_SECONDS."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self.tasks), timeout=max(0.0, deadline - time.monotonic()))

    async def aclose(self) -> None:
        await self.drain()
        for task in list(self.tasks):
            task.cancel()
        await self.access.aclose()
