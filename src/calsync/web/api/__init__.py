"""REST API v1: one router per resource, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from ..errors import ERROR_RESPONSES
from . import (
    activities,
    activity_types,
    activity_writes,
    changes,
    google,
    google_runs,
    portal_sessions,
    service_account,
    tenant,
    users,
    webhook_endpoints,
)

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
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
