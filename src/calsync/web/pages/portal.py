"""GET /portal/<token>: a one-time link from the CRM (POST /api/v1/users/{id}/portal-sessions)
signs its user in without a password. The user gets their normal page session with their own
role (an admin in calsync stays one), and while it lasts the pages show "Back to <CRM>". A link
used before, expired or unknown signs nobody in and ends whatever login the browser had, so a
page opened from the CRM never shows someone else's pages."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from calsync import i18n
from calsync.store import portal_sessions, tenants, users
from calsync.store.models import PortalSession

from .common import SESSION_MAX_AGE, PageError, db_of, language_of, redirect
from .sessions import begin as begin_session
from .sessions import end as end_session

router = APIRouter()

# the cookie session's keys for "Back to": dropped with the login (sessions.LOGIN_KEYS)
RETURN_URL, RETURN_LABEL = "portal_return", "portal_label"

USED_TITLE = i18n.N_("This link has expired or was already used")
USED_MESSAGE = i18n.N_(
    "A link from your CRM signs you in once, within a few minutes of being made."
)
USED_REMEDY = i18n.N_("Open the Google Calendar settings again from %(crm)s.")
USED_REMEDY_ANY = i18n.N_("Open the Google Calendar settings again from your CRM.")


def return_name(url: str, label: str | None) -> str:
    """What "Back to …" says: the CRM's label, else return_url's host."""
    return label or urlsplit(url).hostname or url


def _refused(found: PortalSession | None) -> PageError:
    if found is not None and found.return_url:
        crm = return_name(found.return_url, found.return_label)
        return PageError(410, USED_TITLE, USED_MESSAGE, USED_REMEDY, {"crm": crm})
    return PageError(404 if found is None else 410, USED_TITLE, USED_MESSAGE, USED_REMEDY_ANY)


@router.get("/portal/{token}", include_in_schema=False)
async def open_link(request: Request, token: str) -> Response:
    language_of(request)
    db = db_of(request)
    plausible = len(token) <= 128  # a token is 43 characters; anything long is no token
    async with db.session() as session:
        used = await portal_sessions.consume(session, token) if plausible else None
        user = await users.get(session, used.tenant_id, used.user_id) if used is not None else None
        seen = await portal_sessions.find(session, token) if user is None and plausible else None
        await session.commit()
    # whoever was signed in on this browser is signed out: the link decides who this is
    await end_session(db, request.session)
    request.session.clear()
    if used is None or user is None:
        raise _refused(used or seen)
    await begin_session(db, request.session, user.id, user.tenant_id, SESSION_MAX_AGE)
    request.session["csrf"] = secrets.token_urlsafe(32)
    if used.return_url:
        request.session[RETURN_URL] = used.return_url
        request.session[RETURN_LABEL] = return_name(used.return_url, used.return_label)
    async with db.session() as session:
        tenant = await tenants.get(session, user.tenant_id)
    module_on = tenant is not None and tenant.calendar_module_enabled
    return redirect("/settings/google" if module_on else "/calendar")
