"""The troubleshooting checklist (seed 000) run for one user, in its order: the stored checks,
and where they leave something to ask, the live ones. `diagnose` is what the diagnostics page
shows; `run_cli` is `calsync doctor`."""

from __future__ import annotations

import uuid

import httpx

from calsync.settings import Settings
from calsync.store import tenants, users
from calsync.store.db import Database
from calsync.sync.tokens import GoogleAccess

from . import live as live_checks
from . import stored
from .report import Check, Diagnosis, print_diagnosis
from .subject import Subject


async def diagnose(
    db: Database,
    access: GoogleAccess,
    settings: Settings,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    live: bool = True,
    http: httpx.AsyncClient | None = None,
) -> Diagnosis:
    """Run every check for one user; `live` talks to Google and the public URL."""
    async with db.session() as session:
        tenant = await tenants.get(session, tenant_id)
        user = await users.get(session, tenant_id, user_id)
        if tenant is None or user is None:
            raise LookupError("no such user")
        subject = Subject(db, access, settings, tenant, user, live=live, http=http)
        await subject.load(session)
        await session.commit()
    return Diagnosis(
        tenant=tenant,
        user=user,
        connection=subject.conn,
        checks=await _checks(subject),
        checked_at=subject.now,
        recent_runs=subject.runs,
        settings=settings,
    )


async def _checks(subject: Subject) -> list[Check]:
    checks = [
        stored.module(subject),
        stored.credentials(subject),
        stored.connection(subject) or await live_checks.connection(subject),
        stored.account(subject),
        stored.enabled(subject),
        stored.direction(subject),
        stored.calendars(subject) or await live_checks.calendars(subject),
        stored.channels(subject),
        await live_checks.public_url(subject),
        stored.last_sync(subject),
    ]
    async with subject.db.session() as session:
        checks.append(await stored.rate_limits(subject, session))
        checks.append(await stored.parked(subject, session))
        checks.append(await stored.duplicates(subject, session))
    checks.append(await live_checks.other_sync(subject))
    return checks


async def run_cli(settings: Settings, db: Database, tenant: str, email: str, *, live: bool) -> int:
    """`calsync doctor`: 0 when nothing fails, 1 when a check fails, 2 for an unknown user."""
    from rich.console import Console

    from calsync.google.retry import RetryPolicy

    console = Console()
    access = GoogleAccess(settings, retry=RetryPolicy(max_attempts=2))
    try:
        async with db.session() as session:
            found = await tenants.find(session, tenant)
            member = await users.by_email(session, found.id, email) if found else None
            await session.commit()
        if found is None or member is None:
            console.print(f"[red]no user {email!r} in tenant {tenant!r}[/]")
            return 2
        diagnosis = await diagnose(db, access, settings, found.id, member.id, live=live)
        print_diagnosis(diagnosis, console)
        return 1 if diagnosis.failed else 0
    finally:
        await access.aclose()
        await db.dispose()
