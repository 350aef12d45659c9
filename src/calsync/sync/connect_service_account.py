"""Switching sync on through the company's service account (seeds 002/003): no sign-in, the
service account acts as the user's CRM e-mail.

A rule of connecting, not of the web: the settings API is its only caller today, but what it
stores (a service-account connection, the reset when the e-mail changed, the default calendar)
is the same connection `finish_oauth` stores for a sign-in (sync/connect.py).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.google import errors
from calsync.store import bindings, connections, google_settings
from calsync.store.models import GoogleConnection, Tenant, User

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
    s: AsyncSession,
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
            s, tenant.id, user.id, google_email=email, auth_mode="service_account"
        )
    else:
        if conn.google_email is not None and conn.google_email != email:
            await connections.reset_bindings(s, conn.id)
        await google_settings.switch_to_service_account(s, conn, email)
    await google_settings.set_enabled(s, conn, True)
    if not await bindings.for_connection(s, conn.id):
        await add_default_binding(s, tenant.id, conn, live)
    return conn
