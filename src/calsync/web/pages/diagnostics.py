"""Diagnostics: seed 000's troubleshooting checklist run for one user, with a support report."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from calsync import doctor, i18n

from .common import PageError, db_of, render, services_of, settings_of, viewer

router = APIRouter()
N_ = i18n.N_


async def _page(request: Request, user_id: uuid.UUID | None) -> Response:
    who = await viewer(request, admin=user_id is not None)
    target = user_id or who.user.id
    try:
        diagnosis = await doctor.diagnose(
            db_of(request),
            services_of(request).access,
            settings_of(request),
            who.tenant.id,
            target,
        )
    except LookupError as exc:
        raise PageError(
            404,
            N_("Not found"),
            N_("There is no such user in your company."),
        ) from exc
    return render(request, "diagnostics.html", {"diagnosis": diagnosis}, who=who)


@router.get("/diagnostics", include_in_schema=False)
async def my_diagnostics(request: Request) -> Response:
    return await _page(request, None)


@router.get("/diagnostics/{user_id}", include_in_schema=False)
async def user_diagnostics(request: Request, user_id: uuid.UUID) -> Response:
    """An admin looks at another user's checklist."""
    return await _page(request, user_id)
