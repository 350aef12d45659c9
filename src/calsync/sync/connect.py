"""Connecting a user's Google account, the rules every entry point shares: finishing a sign-in
(the company's account policy, the reset when the Google account changes), queueing the first
sync, and disconnecting.

The web's callback and API, the cli and the sandbox all connect through here, so a sign-in
completed by any of them stores the same connection, bindings and push channels. Nothing here
knows HTTP: refusals are exceptions (`AccountRefused`, `errors.GoogleError`) that each caller
turns into its own answer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain import accounts
from calsync.domain.direction import Direction
from calsync.google import errors
from calsync.google.models import CalendarListEntry
from calsync.google.oauth import Authorization
from calsync.store import bindings, connections, google_settings, tenants, users
from calsync.store.db import Database
from calsync.store.models import CalendarBinding, GoogleConnection, Tenant, User
from calsync.store.statuses import AuthMode, BindingRole, ConnectionStatus
from calsync.sync.channels.kinds import EVENT_KINDS
from calsync.sync.channels.service import Channels

from .google_services import GoogleServices

log = logging.getLogger(__name__)


def user_key(tenant_id: uuid.UUID, user_id: uuid.UUID) -> str:
    """Whose sign-in this is, as the pending OAuth state keeps it."""
    return f"{tenant_id}:{user_id}"


def parse_user_key(key: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    tenant, _, user = key.partition(":")
    try:
        return uuid.UUID(tenant), uuid.UUID(user)
    except ValueError:
        return None


def _expiry(expires_at: float | None) -> datetime | None:
    return datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None


# -- talking to Google for a connection ---------------------------------------------------------


async def fetch_calendars(
    db: Database, services: GoogleServices, tenant: Tenant, connection: GoogleConnection
) -> list[CalendarListEntry]:
    """The account's calendar list, live (raises `errors.GoogleError`)."""
    client = services.access.client(services.access.tokens(db, tenant, connection))
    try:
        return [c for c in await client.calendars() if not c.deleted]
    finally:
        await client.aclose()


def primary_of(calendars: Sequence[CalendarListEntry]) -> CalendarListEntry | None:
    return next((c for c in calendars if c.primary), None)


async def add_default_binding(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    connection: GoogleConnection,
    calendars: Sequence[CalendarListEntry],
) -> CalendarBinding:
    """The primary calendar, both ways: what a user expects before choosing anything."""
    primary = primary_of(calendars)
    binding = await bindings.create(
        session,
        tenant_id,
        connection.id,
        primary.id if primary else (connection.google_email or "primary"),
        role=BindingRole.BOTH,
        direction=Direction.TWO_WAY,
        summary=primary.summary if primary else connection.google_email,
        time_zone=primary.time_zone if primary else None,
        access_role=primary.access_role if primary else "owner",
    )
    if not connection.sync_enabled:
        await google_settings.configure_binding(
            session, binding, role=binding.role, direction=binding.direction, enabled=False
        )
    return binding


# -- finishing a sign-in ----------------------------------------------------------------------


@dataclass(frozen=True)
class Connected:
    user: User
    connection_id: uuid.UUID
    google_email: str
    account_changed: bool
    previous_email: str | None = None


class AccountRefused(Exception):
    """The Google account that came back is not one the company lets this user link; nothing
    was stored (and the fresh grant was revoked unless a connection relies on it)."""

    def __init__(self, verdict: accounts.Verdict, revoked: bool) -> None:
        super().__init__(f"google account {verdict.google_email} refused")
        self.verdict = verdict
        self.revoked = revoked


async def _refuse(
    db: Database, services: GoogleServices, auth: Authorization, verdict: accounts.Verdict
) -> AccountRefused:
    """Undo the sign-in at Google, unless the grant is shared (see `grant_in_use`)."""
    async with db.session() as session:
        shared = await connections.grant_in_use(session, auth.email)
        await session.commit()
    revoked = False
    token = auth.refresh_token or auth.token.access_token
    if not shared and token:
        try:
            await services.require_oauth().revoke(token)
            revoked = True
        except errors.GoogleError as exc:  # the tokens are forgotten either way
            log.warning("revoking a refused sign-in failed: %s", exc.code)
    log.info("google account refused by the company's policy (revoked: %s)", revoked)
    return AccountRefused(verdict, revoked)


async def release_old_account(
    db: Database, services: GoogleServices, user_id: uuid.UUID, new_email: str
) -> None:
    """Before a connection moves to another Google account (DESIGN rule 10): stop the old
    account's push channels while its tokens still work, and revoke calsync's grant there
    unless another connection relies on it. Best effort: what fails here ends at its expiry,
    and the old account's notifications are then answered as unknown."""
    async with db.session() as session:
        conn = await connections.for_user(session, user_id)
        old_email = conn.google_email if conn is not None else None
        if conn is None or old_email is None or old_email == new_email.strip().lower():
            await session.commit()
            return
        watched = [
            b.id
            for b in await bindings.for_connection(session, conn.id)
            if b.channel_id or b.twin_channel_id
        ]
        token = (
            (conn.refresh_token or conn.access_token) if conn.auth_mode == AuthMode.OAUTH else None
        )
        shared = await connections.grant_in_use(session, old_email, besides=conn.id)
        connection_id = conn.id
        await session.commit()
    channels = Channels(db, services.access, services.settings)
    for binding_id in watched:
        for kind in EVENT_KINDS:  # both twins
            await channels.unwatch(binding_id, kind)
    await channels.unwatch_list(connection_id)
    if token and not shared and services.oauth is not None:
        try:
            await services.oauth.revoke(token)
        except errors.GoogleError as exc:
            log.warning("revoking the replaced account's grant failed: %s", exc.code)


async def finish_oauth(db: Database, services: GoogleServices, auth: Authorization) -> Connected:
    """Store a completed sign-in: create the connection, or reconnect (a different Google
    account resets the calendars and links; the same one keeps them, so nothing duplicates).

    The account is first checked against the company's policy (domain/accounts.py); a refused
    one raises `AccountRefused` with nothing stored."""
    ids = parse_user_key(auth.user_key)
    if ids is None:
        raise errors.InvalidState()
    tenant_id, user_id = ids
    oauth = services.require_oauth()
    async with db.session() as session:
        tenant = await tenants.get(session, tenant_id)
        user = await users.get(session, tenant_id, user_id)
        if tenant is None or user is None:
            raise errors.InvalidState("The CRM user who started this sign-in no longer exists.")
        verdict = accounts.check(
            tenant.google_account_policy, tenant.google_domains, user.email, auth.email
        )
        await session.commit()
    if not verdict.allowed:
        raise await _refuse(db, services, auth, verdict)
    await release_old_account(db, services, user_id, auth.email)
    calendars: list[CalendarListEntry] = []
    client = services.calendar_client(
        oauth.credentials(auth.refresh_token or "", account=auth.email, token=auth.token)
    )
    try:
        calendars = await client.calendars()
    except errors.GoogleError as exc:  # the primary calendar's id is the e-mail anyway
        log.warning("calendar list after connect failed: %s", exc)
    finally:
        await client.aclose()
    async with db.session() as session:
        tenant = await tenants.get(session, tenant_id)
        user = await users.get(session, tenant_id, user_id)
        if tenant is None or user is None:
            raise errors.InvalidState("The CRM user who started this sign-in no longer exists.")
        conn = await connections.for_user(session, user.id)
        token = auth.token
        changed = False
        previous: str | None = None
        if conn is None:
            conn = await connections.create(
                session,
                tenant.id,
                user.id,
                google_email=auth.email,
                refresh_token=token.refresh_token,
                access_token=token.access_token,
                access_token_expires_at=_expiry(token.expires_at),
                scopes=sorted(token.scopes),
            )
        else:
            previous = conn.google_email
            changed = await connections.reconnect(
                session,
                conn,
                google_email=auth.email,
                refresh_token=token.refresh_token,
                access_token=token.access_token,
                access_token_expires_at=_expiry(token.expires_at),
                scopes=sorted(token.scopes),
            )
            conn.auth_mode = AuthMode.OAUTH
        if not await bindings.for_connection(session, conn.id):
            await add_default_binding(session, tenant.id, conn, calendars)
        await session.commit()
        done = Connected(user, conn.id, auth.email, changed, previous if changed else None)
    # push channels for the import calendars and a fresh calendarList channel (re-registered
    # on reconnect: the account may have changed)
    await Channels(db, services.access, services.settings).reconcile_connection(
        done.connection_id, renew_list=True
    )
    return done


async def bindings_to_sync(db: Database, connection_id: uuid.UUID) -> list[uuid.UUID]:
    """The calendars a connect, reconnect, choice of calendars or switching sync on should
    sync at once (every switched-on one of a connected connection with sync on): the first
    import, and what changed while the grant was revoked, do not wait for the next poll. The
    caller queues them on its job runner (jobs sit above this layer)."""
    async with db.session() as session:
        conn = await connections.get(session, connection_id)
        ids = (
            [b.id for b in await bindings.for_connection(session, connection_id) if b.enabled]
            if conn is not None and conn.status == ConnectionStatus.CONNECTED and conn.sync_enabled
            else []
        )
        await session.commit()
    return ids


# -- disconnecting ----------------------------------------------------------------------------


@dataclass
class Disconnected:
    """What a disconnect did at Google; `warnings` are what failed there (nothing to retry:
    the tokens are forgotten either way)."""

    revoked_at_google: bool = False
    channels_stopped: int = 0
    warnings: list[errors.GoogleError] = field(default_factory=list)


async def disconnect(
    session: AsyncSession,
    db: Database,
    services: GoogleServices,
    tenant: Tenant,
    conn: GoogleConnection,
) -> Disconnected:
    """Revoke at Google, stop push channels, forget the tokens; CRM activities and the links
    stay, so connecting the same Google account again duplicates nothing."""
    listed = await bindings.for_connection(session, conn.id)
    channels = [b for b in listed if b.channel_id or b.twin_channel_id]
    # both twins of each binding: (channel id, resource id)
    stops = [
        (channel_id, resource_id)
        for b in channels
        for channel_id, resource_id in (
            (b.channel_id, b.channel_resource_id),
            (b.twin_channel_id, b.twin_channel_resource_id),
        )
        if channel_id and resource_id
    ]
    await session.commit()
    done = Disconnected()
    if stops:
        try:
            client = services.access.client(services.access.tokens(db, tenant, conn))
            try:
                for channel_id, resource_id in stops:
                    try:
                        await client.stop_channel(channel_id, resource_id)
                        done.channels_stopped += 1
                    except errors.NotFound:
                        pass  # expired or stopped already
            finally:
                await client.aclose()
        except errors.GoogleError as exc:
            log.warning("stopping push channels failed: %s", exc)
            done.warnings.append(exc)
    # the calendarList channel too, while the tokens still work
    list_stopped = await Channels(db, services.access, services.settings).unwatch_list(conn.id)
    done.channels_stopped += bool(list_stopped)
    token = conn.refresh_token or conn.access_token
    if conn.auth_mode == AuthMode.OAUTH and token and services.oauth is not None:
        try:
            await services.oauth.revoke(token)
            done.revoked_at_google = True
        except errors.GoogleError as exc:
            log.warning("revoking at Google failed: %s", exc)
            done.warnings.append(exc)
    for binding in channels:
        await google_settings.clear_channel(session, binding.id)
    await google_settings.disconnect(session, conn)
    await session.commit()
    return done
