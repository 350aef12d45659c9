"""API keys: shown once, stored only as a SHA-256 digest.

A plain (unsalted, fast) SHA-256 is the right tool here: the keys are 256 random bits, so
there is nothing to brute-force or look up in a table, unlike passwords, which need a slow
salted KDF. A digest is also indexable, so authentication is one lookup. It deliberately does
not depend on CALSYNC_SECRET_KEY, so rotating that key never invalidates API keys.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
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


async def authenticate(session: AsyncSession, plain: str) -> KeyOwner | None:
    if not plain.startswith(PREFIX) or len(plain) > 200:
        return None
    row = await session.scalar(
        select(ApiKey).where(ApiKey.key_hash == digest(plain), ApiKey.revoked_at.is_(None))
    )
    if row is None:
        return None
    tenant = await session.get(Tenant, row.tenant_id)
    if tenant is None:
        return None
    user = None
    if row.user_id is not None:
        user = await session.scalar(
            select(User).where(User.id == row.user_id, User.deleted_at.is_(None))
        )
        if user is None:
            return None
    return KeyOwner(row.id, tenant, user)
