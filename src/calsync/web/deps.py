"""Request dependencies: the database session and who is calling (bearer API key)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.store import apikeys, users
from calsync.store.activities import Viewer
from calsync.store.apikeys import KeyUser
from calsync.store.db import Database
from calsync.store.models import Tenant, User

from .errors import ApiError, not_found

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer csk_...`")


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


#: the API's methods that change nothing: their handlers read through Database.reads(), which
#: refuses a write (WriteInReads; tests/calsync/test_api_reads.py)
READS = frozenset({"GET", "HEAD"})


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; handlers commit what they change, the rest is rolled back. A
    GET's reads on PostgreSQL run without a transaction (`Database.reads`)."""
    db = database(request)
    if request.method in READS:
        async with db.reads() as s:
            yield s
        return
    async with db.sessions() as s:
        yield s


Session = Annotated[AsyncSession, Depends(session)]


@dataclass(frozen=True)
class Principal:
    """The caller: a tenant admin (tenant key, or key of an admin user) or one user."""

    tenant_id: uuid.UUID
    user: KeyUser | None
    is_admin: bool

    @property
    def viewer(self) -> Viewer | None:
        """None for admins (they see the tenant); else the user's own view."""
        if self.is_admin or self.user is None:
            return None
        return Viewer(self.user.id, self.user.email)


@dataclass(frozen=True)
class TenantPrincipal(Principal):
    """The caller with its tenant and its user as rows of the request's session, for the
    handlers that read or change them (the Google connection's, the service account's, the
    activity types')."""

    tenant: Tenant
    user_row: User | None


def _unauthorized(code: str, message: str, remedy: str) -> ApiError:
    return ApiError(401, code, message, remedy, headers={"WWW-Authenticate": "Bearer"})


def _presented(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized(
            "unauthorized",
            "an API key is required",
            "send `Authorization: Bearer <key>`; create a key with `calsync apikey create`",
        )
    return credentials.credentials


def _unknown_key() -> ApiError:
    return _unauthorized(
        "invalid_api_key",
        "the API key is unknown or revoked",
        "check the key, or create a new one with `calsync apikey create`",
    )


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def principal(s: Session, credentials: Credentials) -> Principal:
    """Who is calling, from plain values (most calls need no more; see `TenantCaller`)."""
    found = await apikeys.identify(s, _presented(credentials))
    if found is None:
        raise _unknown_key()
    return Principal(found.tenant_id, found.user, found.is_admin)


async def tenant_principal(s: Session, credentials: Credentials) -> TenantPrincipal:
    """Who is calling, with the tenant and the user loaded into the request's session (the
    same one statement)."""
    owner = await apikeys.authenticate(s, _presented(credentials))
    if owner is None:
        raise _unknown_key()
    return with_rows(owner.tenant, owner.user, owner.is_admin)


def with_rows(tenant: Tenant, user: User | None, is_admin: bool) -> TenantPrincipal:
    """A caller made of a session's tenant and user rows."""
    ref = None if user is None else apikeys.KeyUser(user.id, user.email, user.role)
    return TenantPrincipal(tenant.id, ref, is_admin, tenant, user)


Caller = Annotated[Principal, Depends(principal)]
TenantCaller = Annotated[TenantPrincipal, Depends(tenant_principal)]


async def admin(caller: Caller) -> Principal:
    if not caller.is_admin:
        raise ApiError(
            403, "admin_required", "this needs an admin key", "use a tenant (admin) API key"
        )
    return caller


Admin = Annotated[Principal, Depends(admin)]


async def tenant_admin(caller: TenantCaller) -> TenantPrincipal:
    await admin(caller)
    return caller


TenantAdmin = Annotated[TenantPrincipal, Depends(tenant_admin)]


async def visible_user(caller: Principal, s: AsyncSession, user_id: uuid.UUID) -> User:
    """The tenant's user `user_id` as the caller may see it: an admin sees every user, a user
    key only its own; any other id (another tenant's, a deleted one) answers 404."""
    if not caller.is_admin and (caller.user is None or caller.user.id != user_id):
        raise not_found("user")
    user = await users.get(s, caller.tenant_id, user_id)
    if user is None:
        raise not_found("user")
    return user
