"""REST API v1: one router per resource, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..errors import ERROR_RESPONSES
from . import (
    activities,
    activity_types,
    activity_writes,
    admission,
    changes,
    google,
    google_runs,
    portal_sessions,
    service_account,
    tenant,
    users,
    webhook_endpoints,
)

# every API request holds one of the process's slots (CALSYNC_API_MAX_CONCURRENT; admission)
router = APIRouter(
    prefix="/api/v1", responses=ERROR_RESPONSES, dependencies=[Depends(admission.admit)]
)
for module in (
    tenant,
    users,
    activity_types,
    activities,
    activity_writes,
    changes,
    google,
    google_runs,
    service_account,
    portal_sessions,
    webhook_endpoints,
):
    router.include_router(module.router)
