"""REST API v1: one router per resource, installed under /api/v1.

`install` puts each route on the app's own router, as FastAPI's include would make it (the
prefix, the error responses, the admission dependency before the route's own), rather than
`app.include_router`: FastAPI keeps an included router as a nested router that every request
walks again (matched once to pick it, once more to pick the route, at each level), which cost
the API's requests a few per cent of their CPU (docs/deploy.md "Capacity"). The OpenAPI
document is the same either way (pinned by tests/calsync/test_api_statements.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute

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

PREFIX = "/api/v1"
ROUTERS: tuple[APIRouter, ...] = tuple(
    module.router
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
    )
)
# every API request holds one of the process's slots (CALSYNC_API_MAX_CONCURRENT; admission)
ADMISSION = Depends(admission.admit)


def install(app: FastAPI) -> None:
    """Every API route on the app's router, in the routers' order."""
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"{route!r}: only API routes are installed under {PREFIX}")
            app.router.add_api_route(
                PREFIX + route.path,
                route.endpoint,
                response_model=route.response_model,
                status_code=route.status_code,
                tags=list(route.tags),
                dependencies=[ADMISSION, *route.dependencies],
                summary=route.summary,
                description=route.description,
                response_description=route.response_description,
                responses={**ERROR_RESPONSES, **route.responses},
                deprecated=route.deprecated,
                methods=sorted(route.methods or ()),
                operation_id=route.operation_id,
                response_model_include=route.response_model_include,
                response_model_exclude=route.response_model_exclude,
                response_model_by_alias=route.response_model_by_alias,
                response_model_exclude_unset=route.response_model_exclude_unset,
                response_model_exclude_defaults=route.response_model_exclude_defaults,
                response_model_exclude_none=route.response_model_exclude_none,
                include_in_schema=route.include_in_schema,
                response_class=route.response_class,
                name=route.name,
                callbacks=route.callbacks,
                openapi_extra=route.openapi_extra,
                generate_unique_id_function=route.generate_unique_id_function,
                strict_content_type=route.strict_content_type,
                max_body_size=route.max_body_size,
            )
