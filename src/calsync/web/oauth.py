"""GET /oauth/google/callback: where Google sends the user's browser after the consent page.

The browser carries no API key; the single-use `state` (kept in the database, bound to the CRM
user who asked for the link) says whose connection this is. The answer is a small page saying
what happened and what to do next (JSON when the client asks for it).
"""

from __future__ import annotations

import html
import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from calsync.google import errors
from calsync.google.oauth import CALLBACK_PATH

from . import connection
from .errors import error_response
from .google_services import GoogleServices

log = logging.getLogger(__name__)
router = APIRouter(tags=["google"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}
.remedy{{background:#f4f4f4;padding:.75rem 1rem;border-radius:.5rem}}</style></head>
<body><h1>{title}</h1><p>{message}</p>{remedy}</body></html>
"""


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _page(title: str, message: str, remedy: str | None, status: int) -> HTMLResponse:
    extra = f'<p class="remedy">{html.escape(remedy)}</p>' if remedy else ""
    body = _PAGE.format(title=html.escape(title), message=html.escape(message), remedy=extra)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _failure(request: Request, exc: errors.GoogleError, status: int = 400) -> Response:
    if _wants_json(request):
        return error_response(status, exc.code, exc.message, exc.remedy)
    return _page("Google Calendar was not connected", exc.message, exc.remedy, status)


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
        auth = await oauth.complete(state=state, code=code, error=error)
        done = await connection.finish_oauth(request.app.state.db, services, auth)
    except errors.OAuthNotConfigured as exc:
        return _failure(request, exc, 409)
    except errors.GoogleError as exc:
        log.info("google sign-in failed: %s", exc.code)
        return _failure(request, exc, 400)
    if _wants_json(request):
        return JSONResponse(
            {
                "status": "connected",
                "user_id": str(done.user.id),
                "google_email": done.google_email,
                "account_changed": done.account_changed,
            }
        )
    note = (
        " This is a different Google account than before: calsync starts a fresh first sync "
        "and matches existing entries instead of duplicating them."
        if done.account_changed
        else ""
    )
    return _page(
        "Google Calendar connected",
        f"Connected as {done.google_email} — you can close this window.{note}",
        None,
        200,
    )
