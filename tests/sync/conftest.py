"""Scenario fixtures: a tenant with one user connected (real OAuth flow) to the emulator, a
binding of the user's primary calendar, and helpers to act as the CRM, as the person in Google,
and to count the Google requests a sync made."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from calsync.domain.activity import ActivityDraft, Attendee, validate
from calsync.google.calendar import CalendarClient
from calsync.google.models import Event
from calsync.google.oauth import GoogleOAuth, MemoryStateStore
from calsync.google.retry import RetryPolicy
from calsync.settings import Settings
from calsync.store import activities, bindings, connections, links, tenants, users
from calsync.store.db import Database
from calsync.store.models import Activity, CalendarBinding, EventLink
from calsync.sync.engine import RunResult, sync_binding
from calsync.sync.tokens import GoogleAccess
from tests.calsync.conftest import backend, db, db_url, keyring  # noqa: F401  (fixtures reused)
from tests.calsync.google.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    PUBLIC_URL,
    REDIRECT_URI,
    ControlTokens,
    connect,
)
from tests.conftest import Emulator

ZONE = "Europe/Oslo"


async def no_sleep(_: float) -> None:
    return None


def retry_policy(attempts: int = 4) -> RetryPolicy:
    """Retries without waiting: tests never sleep."""
    return RetryPolicy(max_attempts=attempts, max_seconds=1e9, sleep=no_sleep)


def emulator_settings(emulator: Emulator, timeout: float = 5.0) -> Settings:
    return Settings(
        google_emulator_url=emulator.url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr(CLIENT_SECRET),
        public_url=PUBLIC_URL,
        google_timeout_seconds=timeout,
        google_requests_per_minute=0,
        google_batch_size=50,
    )


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time `day` days from today in Oslo (future appointments by default)."""
    base = date.today() + timedelta(days=day)
    return datetime(base.year, base.month, base.day, hour, minute)


class Harness:
    def __init__(
        self,
        emulator: Emulator,
        database: Database,
        settings: Settings,
        oauth: GoogleOAuth,
        email: str = "alice@example.com",
    ) -> None:
        self.emu = emulator
        self.db = database
        self.settings = settings
        self.oauth = oauth
        self.email = email
        self.google = GoogleAccess(settings, oauth=oauth, retry=retry_policy(), rate_limiter=None)
        self.person = CalendarClient(
            ControlTokens(emulator, email),
            settings=settings,
            retry=retry_policy(),
            rate_limiter=None,
        )
        self.calendar_id = email
        self.tenant_id = uuid.uuid4()
        self.user_id = uuid.uuid4()
        self.connection_id = uuid.uuid4()
        self.binding_id = uuid.uuid4()

    async def setup(
        self,
        *,
        direction: str = "two_way",
        policy: str = "latest_wins",
        tenant_id: uuid.UUID | None = None,
    ) -> None:
        """Connect the user; with `tenant_id` as another user of that tenant."""
        self.emu.account(self.email, self.email.split("@")[0].title())
        auth = await connect(self.oauth, self.email)
        async with self.db.session() as s:
            if tenant_id is None:
                tenant = await tenants.create(s, f"tenant-{uuid.uuid4()}")
                tenant.conflict_policy = policy
            else:
                found = await tenants.get(s, tenant_id)
                assert found is not None
                tenant = found
            user = await users.create(s, tenant.id, self.email)
            conn = await connections.create(
                s,
                tenant.id,
                user.id,
                google_email=auth.email,
                refresh_token=auth.refresh_token,
                access_token=auth.token.access_token,
                access_token_expires_at=_expiry(auth.token.expires_at),
            )
            binding = await bindings.create(
                s, tenant.id, conn.id, self.calendar_id, role="both", direction=direction
            )
            await s.commit()
        self.tenant_id, self.user_id = tenant.id, user.id
        self.connection_id, self.binding_id = conn.id, binding.id

    async def aclose(self) -> None:
        await self.person.aclose()

    # -- the CRM side ---------------------------------------------------------------------------

    async def activity(
        self,
        subject: str,
        start: datetime | date,
        end: datetime | date | None = None,
        *,
        type_key: str = "meeting",
        attendees: tuple[str, ...] = (),
        description: str | None = None,
    ) -> uuid.UUID:
        if end is None:
            assert isinstance(start, datetime)
            end = start + timedelta(hours=1)
        values = validate(
            ActivityDraft(
                start=start,
                end=end,
                subject=subject,
                description=description,
                time_zone=ZONE,
                attendees=tuple(Attendee(a) for a in attendees),
            )
        )
        async with self.db.session() as s:
            row = await activities.create(
                s, self.tenant_id, type_key=type_key, owner_id=self.user_id, values=values
            )
            await s.commit()
        return row.id

    async def get(self, activity_id: uuid.UUID) -> Activity:
        async with self.db.session() as s:
            row = await activities.get(s, self.tenant_id, activity_id)
        assert row is not None
        return row

    async def edit(self, activity_id: uuid.UUID, **changes: Any) -> None:
        async with self.db.session() as s:
            row = await activities.get(s, self.tenant_id, activity_id)
            assert row is not None
            parent = None
            original: date | datetime | None = None
            if row.recurring_parent_id is not None:
                master = await activities.get(s, self.tenant_id, row.recurring_parent_id)
                assert master is not None and row.original_start_local is not None
                parent = activities.series(master)
                original = row.original_start_local
                if row.all_day:
                    original = original.date()
            start, end = row.start_local, row.end_local
            draft = ActivityDraft(
                start=changes.pop("start", start.date() if row.all_day else start),
                end=changes.pop("end", end.date() if row.all_day else end),
                subject=changes.pop("subject", row.subject),
                description=changes.pop("description", row.description),
                location=changes.pop("location", row.location),
                time_zone=row.time_zone,
                all_day=row.all_day,
                status=changes.pop("status", row.status),
                attendees=tuple(
                    Attendee(a.email, a.display_name, a.response_status, a.optional)
                    for a in row.attendees
                ),
                recurrence=row.recurrence,
                original_start=original,
            )
            assert not changes, changes
            await activities.update(s, row, validate(draft, parent))
            await s.commit()

    async def delete(self, activity_id: uuid.UUID) -> None:
        """Delete as the REST API does: an exception's occurrence is cancelled in its place."""
        async with self.db.session() as s:
            row = await activities.get(s, self.tenant_id, activity_id)
            assert row is not None
            if row.recurring_parent_id is not None:
                await activities.delete_exception(s, row)
            else:
                await activities.delete(s, row)
            await s.commit()

    async def set_direction(self, direction: str) -> None:
        """The calendar's direction written as the settings page stores it (no transition)."""
        async with self.db.session() as s:
            await s.execute(
                update(CalendarBinding)
                .where(CalendarBinding.id == self.binding_id)
                .values(direction=direction)
            )
            await s.commit()

    async def live_activities(self) -> list[Activity]:
        async with self.db.session() as s:
            rows = await activities.list_(s, self.tenant_id, owner_id=self.user_id, limit=100_000)
        return list(rows)

    async def link(self, activity_id: uuid.UUID) -> EventLink | None:
        async with self.db.session() as s:
            return await links.by_activity(s, self.binding_id, activity_id)

    # -- the Google side (as the person) --------------------------------------------------------

    async def events(self, *, deleted: bool = False) -> list[Event]:
        out: list[Event] = []
        async for page in self.person.list_events(self.calendar_id, show_deleted=deleted):
            out.extend(page.items)
        return out

    async def ginsert(self, summary: str, start: datetime, end: datetime | None = None) -> Event:
        end = end or start + timedelta(hours=1)
        body = {
            "summary": summary,
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": end.isoformat(), "timeZone": ZONE},
        }
        return await self.person.insert_event(self.calendar_id, body)

    async def gpatch(self, event_id: str, body: dict[str, Any]) -> Event:
        return await self.person.patch_event(self.calendar_id, event_id, body)

    async def gdelete(self, event_id: str) -> None:
        await self.person.delete_event(self.calendar_id, event_id)

    # -- syncing and counting ------------------------------------------------------------------

    async def sync(self, **kwargs: Any) -> RunResult:
        return await sync_binding(self.db, self.binding_id, self.google, **kwargs)

    def mark(self) -> int:
        return int(self.emu.control("GET", "/requests?after=999999999").json()["last_seq"])

    def requests_since(self, mark: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.emu.control("GET", f"/requests?after={mark}").json()[
            "items"
        ]
        return items

    def emails(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.emu.control("GET", "/emails?after=0").json()["items"]
        return items


def _expiry(expires_at: float | None) -> datetime | None:
    return datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None


@pytest.fixture
def sync_settings(emulator: Emulator) -> Settings:
    emulator.control(
        "POST",
        "/oauth-clients",
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT_URI]},
    )
    return emulator_settings(emulator)


@pytest.fixture
async def oauth_flow(sync_settings: Settings) -> AsyncIterator[GoogleOAuth]:
    flow = GoogleOAuth(sync_settings, state_store=MemoryStateStore(), retry=retry_policy())
    yield flow
    await flow.aclose()


@pytest.fixture
async def h(
    emulator: Emulator,
    db: Database,  # noqa: F811
    sync_settings: Settings,
    oauth_flow: GoogleOAuth,
) -> AsyncIterator[Harness]:
    harness = Harness(emulator, db, sync_settings, oauth_flow)
    await harness.setup()
    yield harness
    await harness.aclose()
