"""CRM users of a tenant; deleting one leaves a tombstone so its activities keep an owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .base import utcnow
from .errors import AlreadyExists
from .models import ApiKey, CalendarBinding, GoogleConnection, Tenant, User
from .statuses import UserRole


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def create(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    email: str,
    *,
    name: str | None = None,
    role: str = UserRole.USER,
) -> User:
    email = normalise_email(email)
    if await by_email(session, tenant_id, email) is not None:
        raise AlreadyExists(f"a user with e-mail {email} exists")
    user = User(tenant_id=tenant_id, email=email, name=name, role=role)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"a user with e-mail {email} exists") from exc
    return user


async def get(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
    """A live user of this tenant (another tenant's id is simply not found)."""
    return await session.scalar(
        select(User).where(
            User.id == user_id, User.tenant_id == tenant_id, User.deleted_at.is_(None)
        )
    )


async def by_email(session: AsyncSession, tenant_id: uuid.UUID, email: str) -> User | None:
    return await session.scalar(
        select(User).where(
            User.tenant_id == tenant_id,
            User.email == normalise_email(email),
            User.deleted_at.is_(None),
        )
    )


async def login_candidates(
    session: AsyncSession, email: str, company: str | None = None
) -> Sequence[User]:
    """The live users, of any tenant, who may be logging in as `email` (in `company` when the
    login form names it): the password check then decides among them."""
    query = select(User).where(User.email == email, User.deleted_at.is_(None))
    if company:
        query = query.join(Tenant, Tenant.id == User.tenant_id).where(Tenant.name == company)
    return (await session.scalars(query)).all()


async def list_(session: AsyncSession, tenant_id: uuid.UUID) -> Sequence[User]:
    result = await session.scalars(
        select(User)
        .where(User.tenant_id == tenant_id, User.deleted_at.is_(None))
        .order_by(User.email)
    )
    return result.all()


async def update_(
    session: AsyncSession,
    user: User,
    *,
    email: str | None = None,
    name: str | None = None,
    role: str | None = None,
    clear_name: bool = False,
) -> User:
    if email is not None:
        email = normalise_email(email)
        other = await by_email(session, user.tenant_id, email)
        if other is not None and other.id != user.id:
            raise AlreadyExists(f"a user with e-mail {email} exists")
        user.email = email
    if name is not None or clear_name:
        user.name = name
    if role is not None:
        user.role = role
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists("a user with this e-mail exists") from exc
    return user


async def delete(session: AsyncSession, user: User) -> None:
    """Tombstone the user and revoke its API keys; its activities stay."""
    now = utcnow()
    user.deleted_at = now
    await session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()


async def shown_zone(session: AsyncSession, user: User) -> str:
    """The time zone the pages show this user's times in: the user's own choice; else the
    connected primary Google calendar's zone (else another chosen calendar's); else UTC."""
    if user.time_zone:
        return user.time_zone
    conn = await session.scalar(
        select(GoogleConnection).where(
            GoogleConnection.user_id == user.id, GoogleConnection.tenant_id == user.tenant_id
        )
    )
    if conn is None:
        return "UTC"
    rows = (
        await session.execute(
            select(CalendarBinding.google_calendar_id, CalendarBinding.time_zone)
            .where(CalendarBinding.connection_id == conn.id, CalendarBinding.time_zone.is_not(None))
            .order_by(CalendarBinding.google_calendar_id)
        )
    ).all()
    zones = {calendar_id: zone for calendar_id, zone in rows}
    primary = (conn.google_email or "").lower()
    for calendar_id, zone in zones.items():
        if calendar_id.lower() == primary:
            return str(zone)
    return str(next(iter(zones.values()), "UTC"))


async def set_time_zone(session: AsyncSession, user: User, time_zone: str | None) -> User:
    """Choose the zone the pages show times in (an IANA name the caller has checked); None
    goes back to the default (shown_zone)."""
    user.time_zone = time_zone or None
    await session.flush()
    return user
