"""Tenants (companies) and their activity types."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.activity import BUILT_IN_TYPES, PERSONAL

from .errors import AlreadyExists
from .models import ActivityType, Tenant

# issue 6 and seed 002: the admin chooses what reaches Google; meetings and calls by default
DEFAULT_EXPORTED_TYPES = ["meeting", "call"]


async def create(session: AsyncSession, name: str) -> Tenant:
    """A tenant with the built-in activity types; flushes, the caller commits."""
    if await by_name(session, name) is not None:
        raise AlreadyExists(f"a tenant named {name!r} exists")
    tenant = Tenant(
        name=name,
        exported_type_keys=list(DEFAULT_EXPORTED_TYPES),
        default_import_type_key="meeting",
        personal_import_type_key=PERSONAL,
        change_seq=0,
    )
    session.add(tenant)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"a tenant named {name!r} exists") from exc
    for key, label in BUILT_IN_TYPES.items():
        session.add(ActivityType(tenant_id=tenant.id, key=key, name=label, built_in=True))
    await session.flush()
    return tenant


async def get(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def by_name(session: AsyncSession, name: str) -> Tenant | None:
    return await session.scalar(select(Tenant).where(Tenant.name == name))


async def find(session: AsyncSession, name_or_id: str) -> Tenant | None:
    """By id when it parses as one, else by name (for the CLI)."""
    try:
        tenant = await get(session, uuid.UUID(name_or_id))
    except ValueError:
        tenant = None
    return tenant or await by_name(session, name_or_id)


async def update(session: AsyncSession, tenant: Tenant, changes: dict[str, Any]) -> Tenant:
    for name, value in changes.items():
        setattr(tenant, name, value)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists("a tenant with this name exists") from exc
    return tenant


async def store_service_account_key(
    session: AsyncSession,
    tenant: Tenant,
    raw: bytes,
    *,
    key_format: str,
    password: str | None,
    client_email: str,
) -> str:
    """The company's service-account key (encrypted by its columns) with a new version, the
    one place it is written: a process's token source built from another version is rebuilt
    at its next use (sync.tokens.GoogleAccess). Flushes; the caller commits. The version."""
    version = uuid.uuid4().hex
    await update(
        session,
        tenant,
        {
            "service_account_key": raw,
            "service_account_key_format": key_format,
            "service_account_key_password": password,
            "service_account_email": client_email,
            "service_account_key_version": version,
        },
    )
    return version


async def activity_types(session: AsyncSession, tenant_id: uuid.UUID) -> Sequence[ActivityType]:
    result = await session.scalars(
        select(ActivityType)
        .where(ActivityType.tenant_id == tenant_id)
        .order_by(ActivityType.built_in.desc(), ActivityType.key)
    )
    return result.all()


async def activity_type(
    session: AsyncSession, tenant_id: uuid.UUID, key: str
) -> ActivityType | None:
    return await session.scalar(
        select(ActivityType).where(ActivityType.tenant_id == tenant_id, ActivityType.key == key)
    )


async def add_activity_type(
    session: AsyncSession, tenant_id: uuid.UUID, key: str, name: str
) -> ActivityType:
    if await activity_type(session, tenant_id, key) is not None:
        raise AlreadyExists(f"the activity type {key!r} exists")
    item = ActivityType(tenant_id=tenant_id, key=key, name=name, built_in=False)
    session.add(item)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"the activity type {key!r} exists") from exc
    return item
