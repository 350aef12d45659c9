"""The company's service account (seeds 002/003): storing its key, testing it as one Workspace
user, and switching sync on through it — no sign-in, the service account acts as the user's CRM
e-mail.

A rule of connecting, not of the web: the settings API is its only caller today, but what it
stores (a service-account connection, the reset when the e-mail changed, the default calendar)
is the same connection `finish_oauth` stores for a sign-in (sync/connect.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.google import errors
from calsync.google.service_account import ServiceAccountKey, p12_client_id
from calsync.store import bindings, connections, google_settings, tenants
from calsync.store.models import GoogleConnection, Tenant, User
from calsync.store.statuses import AuthMode

from .connect import add_default_binding
from .google_services import GoogleServices


class ServiceAccountUnusable(Exception):
    """The company's key cannot be loaded (none uploaded, unreadable): an admin's job."""

    def __init__(self, error: errors.GoogleError) -> None:
        super().__init__(error.message)
        self.error = error


class ServiceAccountRefused(Exception):
    """Google refused the service account acting as the user (no domain-wide delegation, no
    such Workspace user …); `error` says which and what to do."""

    def __init__(self, error: errors.GoogleError) -> None:
        super().__init__(error.message)
        self.error = error


async def enable_service_account(
    session: AsyncSession,
    services: GoogleServices,
    tenant: Tenant,
    user: User,
    conn: GoogleConnection | None,
) -> GoogleConnection:
    """Switch sync on through the company's service account, acting as the CRM e-mail; a
    connection that acted as another e-mail before starts over (its calendars and links are
    that account's). The caller commits."""
    try:
        tokens = services.service_account(tenant)
    except errors.GoogleError as exc:
        raise ServiceAccountUnusable(exc) from exc
    email = user.email.strip().lower()
    try:
        live = await services.calendars_as(tokens, email)
    except errors.GoogleError as exc:
        raise ServiceAccountRefused(exc) from exc
    if conn is None:
        conn = await connections.create(
            session, tenant.id, user.id, google_email=email, auth_mode=AuthMode.SERVICE_ACCOUNT
        )
    else:
        if conn.google_email is not None and conn.google_email != email:
            await connections.reset_bindings(session, conn.id)
        await google_settings.switch_to_service_account(session, conn, email)
    await google_settings.set_enabled(session, conn, True)
    if not await bindings.for_connection(session, conn.id):
        await add_default_binding(session, tenant.id, conn, live)
    return conn


# -- the company's key ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredKey:
    service_account_email: str
    client_id: str | None
    key_format: str  # json | p12


async def store_key(
    session: AsyncSession,
    services: GoogleServices,
    tenant: Tenant,
    raw: bytes,
    *,
    filename: str,
    key_format: str | None = None,
    password: str | None = None,
    client_email: str | None = None,
) -> StoredKey:
    """Check and store the service account's key (encrypted by the store), and make the
    company's auth mode service_account; every process's token source for the previous key
    is replaced at its next use (the key's version changed). A key that is not one raises
    `errors.GoogleError` (ServiceAccountKeyError)."""
    fmt = key_format or (
        "json" if filename.lower().endswith(".json") or raw.lstrip()[:1] == b"{" else "p12"
    )
    if fmt == "json":
        key = ServiceAccountKey.from_json(raw, filename=filename or "the JSON key file")
        client_id = key.client_id
    else:
        email = (client_email or tenant.service_account_email or "").strip()
        key = ServiceAccountKey.from_p12(
            raw, client_email=email, password=password, filename=filename or "the P12 key file"
        )
        client_id = p12_client_id(raw, password)
    await tenants.store_service_account_key(
        session,
        tenant,
        raw,
        key_format=fmt,
        password=password if fmt == "p12" else None,
        client_email=key.client_email,
    )
    await tenants.update(session, tenant, {"auth_mode": AuthMode.SERVICE_ACCOUNT})
    await session.commit()
    # this process lets go of the previous key's token source at once; every other one
    # rebuilds its own at its next sync, on seeing the key's new version
    services.access.forget_service_account(tenant.id)
    return StoredKey(key.client_email, client_id, fmt)


@dataclass(frozen=True)
class KeyWorks:
    service_account_email: str
    calendars: int


async def try_key(services: GoogleServices, tenant: Tenant, email: str) -> KeyWorks:
    """The "Test" button: act as `email` and read their calendar list. Raises
    `ServiceAccountUnusable` or `ServiceAccountRefused` with the first thing that fails."""
    try:
        tokens = services.service_account(tenant)
    except errors.GoogleError as exc:
        raise ServiceAccountUnusable(exc) from exc
    try:
        calendars = await services.calendars_as(tokens, email)
    except errors.GoogleError as exc:
        raise ServiceAccountRefused(exc) from exc
    return KeyWorks(tokens.key.client_email, len(calendars))
