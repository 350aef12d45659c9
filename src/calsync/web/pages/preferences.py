"""The user's own preferences on the pages: the time zone every time is shown in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from calsync import i18n
from calsync.store import users

from .common import PageError, checked_form, db_of, flash, redirect, safe_next, viewer

router = APIRouter()
N_ = i18n.N_
PATH = "/settings/time-zone"


@router.post(PATH, include_in_schema=False)
async def save_time_zone(request: Request) -> Response:
    """Empty: back to the default (the primary Google calendar's zone, else UTC)."""
    who = await viewer(request)
    form = await checked_form(request)
    chosen = str(form.get("time_zone") or "").strip()
    if chosen and not i18n.valid_zone(chosen):
        raise PageError(
            422,
            N_("Unknown time zone"),
            N_("“%(zone)s” is not a time zone calsync knows; nothing was changed."),
            N_("Choose a time zone from the list, for example Europe/Oslo."),
            params={"zone": chosen[:64]},
        )
    async with db_of(request).session() as session:
        user = await users.get(session, who.tenant.id, who.user.id)
        if user is not None:
            await users.set_time_zone(session, user, chosen or None)
        await session.commit()
    if chosen:
        flash(request, "ok", N_("Times are now shown in %(zone)s."), params={"zone": chosen})
    else:
        flash(request, "ok", N_("Times follow your Google calendar's time zone again."))
    return redirect(safe_next(str(form.get("next") or ""), "/settings/google"))
