"""API keys: shown once, stored only as a SHA-256 digest.

A plain (unsalted, fast) SHA-256 is the right tool here: the keys are 256 random bits, so
there is nothing to brute-force or look up in a table, unlike passwords, which need a slow
salted KDF. A digest is also indexable, so authentication is one lookup. It deliberately does
not depend on CALSYNC_SECRET_KEY, so rotating that key never invalidates API keys.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ApiKey, Tenant, User
from .statuses import UserRole

PREFIX = "csk_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyOwner:
    """Whom a presented key acts for: a tenant (admin) or one of its users."""

    key_id: uuid.UUID
    tenant: Tenant
    user: User | None

    @property
    def is_admin(self) -> bool:
        return self.user is None or self.user.role == UserRole.ADMIN


async def create(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None = None,
    name: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key; the plain key is returned here and never again."""
    plain = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        tenant_id=tenant_id, user_id=user_id, name=name, key_hash=digest(plain), prefix=plain[:12]
    )
    session.add(row)
    await session.flush()
    return row, plain


@dataclass(frozen=True, slots=True)
class KeyUser:
    """The user a key acts for, as far as deciding what the call may do needs it."""

    id: uuid.UUID
    email: str
    role: str


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Whom a presented key acts for, as plain values (`identify`)."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    user: KeyUser | None

    @property
    def is_admin(self) -> bool:
        return self.user is None or self.user.role == UserRole.ADMIN


async def identify(session: AsyncSession, plain: str) -> KeyIdentity | None:
    """`authenticate` without ORM objects: the ids, the user's e-mail and role, in one Core
    statement on the session's connection — what most API calls need of their caller, at less
    CPU than loading the tenant and the user into the session. The same keys pass."""
    if not plain.startswith(PREFIX) or len(plain) > 200:
        return None
    connection = await session.connection()
    row = (await connection.execute(_identity_statement(), {"key_hash": digest(plain)})).first()
    if row is None:
        return None
    key_id, tenant_id, user_id, found_user, email, role, deleted_at = row
    if user_id is None:
        return KeyIdentity(key_id, tenant_id, None)
    if found_user is None or deleted_at is not None:
        return None
    return KeyIdentity(key_id, tenant_id, KeyUser(found_user, email, role))


@functools.cache
def _identity_statement() -> Select[
    uuid.UUID, uuid.UUID, uuid.UUID | None, uuid.UUID, str, str, datetime | None
]:
    """Built once: most API requests run it (the tenant's row joined, as `authenticate` does)."""
    return (
        select(
            ApiKey.id,
            Tenant.id,
            ApiKey.user_id,
            User.id,
            User.email,
            User.role,
            User.deleted_at,
        )
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .outerjoin(User, User.id == ApiKey.user_id)
        .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
    )


async def authenticate(session: AsyncSession, plain: str) -> KeyOwner | None:
    """Whom the key acts for, read in one statement (the key with its tenant and its user);
    None for an unknown or revoked key, and for a user's key whose user is deleted — such a
    key must never pass as a tenant key, which has no user either."""
    if not plain.startswith(PREFIX) or len(plain) > 200:
        return None
    row = (await session.execute(_key_statement(), {"key_hash": digest(plain)})).first()
    if row is None:
        return None
    key_id, user_id, tenant, user = row
    if user_id is not None and (user is None or user.deleted_at is not None):
        return None
    return KeyOwner(key_id, tenant, user)


@functools.cache
def _key_statement() -> Select[uuid.UUID, uuid.UUID | None, Tenant, User | None]:
    """Built once: every API request runs it."""
    return (
        select(ApiKey.id, ApiKey.user_id, Tenant, User)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .outerjoin(User, User.id == ApiKey.user_id)
        .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
    )
