"""/api/v1/activity-types: built-in and custom activity types of the tenant."""

from __future__ import annotations

from fastapi import APIRouter

from calsync.store import tenants
from calsync.store.errors import AlreadyExists
from calsync.store.models import ActivityType, Tenant

from ..deps import Session, TenantAdmin, TenantCaller
from ..errors import ApiError
from ..schemas import ActivityTypeIn, ActivityTypeList, ActivityTypeOut

router = APIRouter(tags=["activity types"])


def type_out(item: ActivityType, tenant: Tenant) -> ActivityTypeOut:
    return ActivityTypeOut(
        key=item.key,
        name=item.name,
        built_in=item.built_in,
        exported=item.key in tenant.exported_type_keys,
    )


@router.get("/activity-types", response_model=ActivityTypeList)
async def list_types(caller: TenantCaller, session: Session) -> ActivityTypeList:
    """Every activity type, built-in first."""
    items = await tenants.activity_types(session, caller.tenant_id)
    return ActivityTypeList(activity_types=[type_out(i, caller.tenant) for i in items])


@router.post("/activity-types", response_model=ActivityTypeOut, status_code=201)
async def create_type(
    body: ActivityTypeIn, caller: TenantAdmin, session: Session
) -> ActivityTypeOut:
    """Add a custom type (not exported to Google until listed in the tenant settings)."""
    try:
        item = await tenants.add_activity_type(session, caller.tenant_id, body.key, body.name)
        await session.commit()
    except AlreadyExists as exc:
        raise ApiError(409, "type_exists", str(exc), "choose another key") from exc
    return type_out(item, caller.tenant)
