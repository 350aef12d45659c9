"""The HTML pages users see (server-rendered; they work without JavaScript)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from calsync.settings import Settings

from . import admin, calendar, diagnostics, google, login, portal, preferences
from .common import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    LoginRequired,
    PageError,
    cookie_same_site,
    session_secret,
)
from .common import error_page as _error_page
from .common import login_required as _login_required
from .common import page_error as _page_error
from .sessions import ServerSessions

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)
for module in (login, portal, google, admin, diagnostics, calendar, preferences):
    router.include_router(module.router)


def install(app: FastAPI, settings: Settings) -> None:
    """Sessions (a signed cookie naming a server-side session), the static files, the pages and
    their error pages."""
    app.add_middleware(ServerSessions)  # added first: runs inside SessionMiddleware
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        # framed by a CRM (CALSYNC_FRAME_ANCESTORS, https): a third-party iframe only gets a
        # SameSite=None; Secure cookie (every form still carries its CSRF token)
        same_site=cookie_same_site(settings),
        https_only=settings.public_url.lower().startswith("https://"),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(LoginRequired, _login_required)
    # browsers get HTML error pages for unknown addresses, bad ids and the unexpected
    # (web/errors.py; API clients keep the JSON errors)
    app.state.error_page = _error_page
    app.include_router(router)
