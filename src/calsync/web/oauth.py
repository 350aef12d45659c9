"""GET /oauth/google/callback: where Google sends the user's browser after the consent page.

The browser carries no API key; the single-use `state` (kept in the database, bound to the CRM
user who asked for the link, and — for a sign-in started from the pages — to the browser that
started it, see oauth_browser.py) says whose connection this is. The Google account that comes
back must be one the company's policy allows (domain/accounts.py); otherwise nothing is stored
and the page says which account to use. A connect or reconnect queues a sync at once.

A browser logged in to the pages as that user goes back to Settings → Google Calendar with the
result as a notice; any other browser gets a page in its language saying what happened, what to
do and where to go on (JSON when the client asks for it).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from calsync import i18n
from calsync.google import errors
from calsync.google.oauth import CALLBACK_PATH
from calsync.jobs.port import JobQueue
from calsync.store.statuses import ConnectionStatus
from calsync.sync import connect
from calsync.sync.google_services import GoogleServices

from . import oauth_browser, sync_requests
from .errors import error_response
from .pages.common import flash, language_of, redirect, render

log = logging.getLogger(__name__)
router = APIRouter(tags=["google"])
N_ = i18n.N_

SETTINGS_PAGE = "/settings/google"
CONNECTED = N_("Google Calendar is now connected to %(email)s.")
ACCOUNT_CHANGED = N_(
    "This is a different Google account than before (%(previous)s): calsync no longer syncs "
    "with %(previous)s. Entries imported from it stay in the CRM and are never copied to "
    "%(email)s; your own CRM entries are written to %(email)s's calendar in the sync that starts "
    "now."
)
REFUSED = N_("Your company does not allow linking the Google account %(email)s.")
REFUSED_REMEDY = N_(
    "Connect again and sign in on Google's page with %(expected)s. Nothing was stored or synced."
)
# what calsync.google.oauth says when the person cancels on Google's page
CANCELLED = N_("You cancelled on Google's page, so Google Calendar was not connected.")


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _logged_in(request: Request) -> tuple[str, str] | None:
    """The pages' login (user id, tenant id) this browser carries, if any."""
    if "session" not in request.scope:
        return None
    uid, tid = request.session.get("uid"), request.session.get("tid")
    if isinstance(uid, str) and isinstance(tid, str) and uid and tid:
        return uid, tid
    return None


def _problem(exc: errors.GoogleError) -> tuple[str, str]:
    """The failure as catalogue messages: a message the catalogue does not know (a detail
    Google sent) is shown as its kind's general message in other languages than English."""
    message = exc.message
    lang = i18n.current()
    if lang.code != i18n.DEFAULT and lang.gettext(message) == message:
        message = exc.default_message
    return message, exc.remedy


def _page(request: Request, context: dict[str, Any], status: int) -> Response:
    return render(request, "oauth_callback.html", context, status=status)


def _failure(request: Request, exc: errors.GoogleError, status: int = 400) -> Response:
    if _wants_json(request):
        return error_response(status, exc.code, exc.message, exc.remedy)
    language_of(request)
    message, remedy = _problem(exc)
    if _logged_in(request) is not None:
        flash(request, "error", message, remedy)
        return redirect(SETTINGS_PAGE)
    return _page(request, {"ok": False, "message": message, "remedy": remedy}, status)


def _refused(request: Request, exc: connect.AccountRefused) -> Response:
    verdict = exc.verdict
    params = {"email": verdict.google_email, "expected": verdict.expected}
    if _wants_json(request):
        return error_response(
            403,
            "google_account_refused",
            REFUSED % params,
            REFUSED_REMEDY % params,
        )
    language_of(request)
    if _logged_in(request) is not None:
        flash(request, "error", REFUSED, REFUSED_REMEDY, params=params)
        return redirect(SETTINGS_PAGE)
    context = {"ok": False, "message": REFUSED, "remedy": REFUSED_REMEDY, "params": params}
    return _page(request, context, 403)


@router.get(CALLBACK_PATH, include_in_schema=False)
async def google_callback(
    request: Request,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    """Finish connecting: check the state, trade the code for tokens, store the connection."""
    services: GoogleServices = request.app.state.google
    try:
        oauth = services.require_oauth()
        auth = await oauth.complete(
            state=state, code=code, error=error, browser=oauth_browser.of(request)
        )
        done = await connect.finish_oauth(request.app.state.db, services, auth)
    except connect.AccountRefused as exc:
        return _refused(request, exc)
    except errors.OAuthNotConfigured as exc:
        return _failure(request, exc, 409)
    except errors.GoogleError as exc:
        log.info("google sign-in failed: %s", exc.code)
        return _failure(request, exc, 400)
    jobs: JobQueue | None = getattr(request.app.state, "jobs", None)
    await sync_requests.enqueue_sync(request.app.state.db, jobs, done.connection_id)
    if _wants_json(request):
        return JSONResponse(
            {
                "status": ConnectionStatus.CONNECTED,
                "user_id": str(done.user.id),
                "google_email": done.google_email,
                "account_changed": done.account_changed,
                "previous_google_email": done.previous_email,
            }
        )
    params = {"email": done.google_email or "", "previous": done.previous_email or ""}
    if _logged_in(request) == (str(done.user.id), str(done.user.tenant_id)):
        flash(request, "ok", CONNECTED, params=params)
        if done.account_changed:
            flash(request, "warn", ACCOUNT_CHANGED, params=params)
        return redirect(SETTINGS_PAGE)
    # another browser (or someone else's login): say who was connected, and where to go on
    return _page(
        request,
        {
            "ok": True,
            "message": N_("Connected as %(email)s"),
            "params": params,
            "note": ACCOUNT_CHANGED if done.account_changed else None,
            "note_params": params,
        },
        200,
    )
