"""/api/v1/users: the tenant's CRM users (admins manage them; a user key sees itself)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from calsync.store import users
from calsync.store.errors import AlreadyExists
from calsync.store.models import User
from calsync.store.statuses import UserRole

from ..deps import Admin, Caller, Session, TenantCaller, visible_user
from ..errors import ApiError
from ..schemas import UserIn, UserList, UserOut, UserPatch

router = APIRouter(tags=["users"])


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=UserRole(user.role),
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _taken(exc: AlreadyExists) -> ApiError:
    return ApiError(409, "email_taken", str(exc), "e-mail addresses are unique within a company")


@router.get("/users", response_model=UserList)
async def list_users(caller: TenantCaller, session: Session) -> UserList:
    """All live users (admin), or just the caller (user key)."""
    if not caller.is_admin and caller.user_row is not None:
        return UserList(users=[user_out(caller.user_row)])
    return UserList(users=[user_out(u) for u in await users.list_(session, caller.tenant_id)])


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, caller: Admin, session: Session, response: Response) -> UserOut:
    """Add a user; the e-mail must be unique in the company (and equal their Google e-mail)."""
    try:
        user = await users.create(
            session, caller.tenant_id, body.email, name=body.name, role=body.role
        )
        await session.commit()
    except AlreadyExists as exc:
        raise _taken(exc) from exc
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return user_out(user)


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, caller: Caller, session: Session) -> UserOut:
    """One user; a user key sees only itself."""
    return user_out(await visible_user(caller, session, user_id))


@router.patch("/users/{user_id}", response_model=UserOut)
async def patch_user(
    user_id: uuid.UUID, body: UserPatch, caller: Admin, session: Session
) -> UserOut:
    """Change e-mail, name or role."""
    user = await visible_user(caller, session, user_id)
    sent = body.model_fields_set
    if ("email" in sent and body.email is None) or ("role" in sent and body.role is None):
        raise ApiError(422, "validation_failed", "email and role cannot be null", "send a value")
    try:
        await users.update_(
            session,
            user,
            email=body.email,
            name=body.name,
            role=body.role,
            clear_name="name" in sent and body.name is None,
        )
        await session.commit()
    except AlreadyExists as exc:
        raise _taken(exc) from exc
    await session.refresh(user)
    return user_out(user)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: uuid.UUID, caller: Admin, session: Session) -> Response:
    """Remove a user: its keys stop working, its activities stay (as a tombstoned owner's)."""
    user = await visible_user(caller, session, user_id)
    await users.delete(session, user)
    await session.commit()
    return Response(status_code=204)
