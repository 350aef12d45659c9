"""Login and logout for CRM users (server-side sessions named by a signed cookie; failed logins
throttled per account and per address), and the language switcher."""

from __future__ import annotations

import math
import secrets
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from calsync import i18n
from calsync.store import login_throttle, users
from calsync.store.models import User
from calsync.store.passwords import verify_password
from calsync.store.users import normalise_email

from .common import (
    SESSION_MAX_AGE,
    checked_form,
    cookie_same_site,
    current_viewer,
    db_of,
    flash,
    redirect,
    render,
    safe_next,
    settings_of,
)
from .sessions import begin as begin_session
from .sessions import end as end_session

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    """The start page: the Google Calendar settings, or the calendar while the Calendar module
    is off (the settings page would only say so, and its links must not loop back here)."""
    who = await current_viewer(request)
    if who is None:
        return redirect("/login")
    return redirect("/settings/google" if who.tenant.calendar_module_enabled else "/calendar")


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "email": "", "company": ""})


THROTTLED = i18n.N_(
    "Too many failed logins for this account or from this address. "
    "Try again in %(minutes)s minutes."
)


def _address(request: Request) -> str:
    """The client's address (behind a proxy: what uvicorn's --forwarded-allow-ips trusts)."""
    return request.client.host if request.client else "unknown"


def _throttled(request: Request, context: dict[str, object], wait: int) -> Response:
    response = render(
        request,
        "login.html",
        {**context, "error": THROTTLED, "error_params": {"minutes": max(1, math.ceil(wait / 60))}},
        status=429,
    )
    response.headers["Retry-After"] = str(wait)
    return response


def _check(password: str, candidates: list[User]) -> list[User]:
    """The users whose password this is (scrypt: run in a worker thread, never on the loop)."""
    if not candidates:
        verify_password(password, None)  # the same time whether or not the e-mail exists
    return [u for u in candidates if verify_password(password, u.password_hash)]


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    form = await checked_form(request)
    email = normalise_email(str(form.get("email") or ""))
    password = str(form.get("password") or "")
    company = str(form.get("company") or "").strip()
    target = safe_next(str(form.get("next") or ""))
    context: dict[str, object] = {"next": target, "email": email, "company": company}
    settings = settings_of(request)
    limits = login_throttle.Limits(
        settings.login_failures_per_account,
        settings.login_failures_per_address,
        timedelta(seconds=settings.login_throttle_window_seconds),
    )
    address = _address(request)
    db = db_of(request)
    async with db.session() as session:
        attempt = await login_throttle.begin(session, email, address, limits)
        await session.commit()
    if isinstance(attempt, int):
        return _throttled(request, context, attempt)
    async with db.session() as session:  # parallel guesses that passed `begin` together
        wait = await login_throttle.over_limit(session, attempt, email, address, limits)
        await session.commit()
    if wait is not None:
        return _throttled(request, context, wait)
    async with db.session() as session:
        candidates = list(await users.login_candidates(session, email, company))
        await session.commit()
    matches = await run_in_threadpool(_check, password, candidates)
    if matches:  # the password was right: no failure, and the account starts afresh
        async with db.session() as session:
            await login_throttle.succeeded(session, attempt, email)
            await session.commit()
    error = None
    if not matches:
        error = i18n.N_("The e-mail or the password is wrong.")
    elif len(matches) > 1:
        error = i18n.N_("This e-mail belongs to several companies: enter the company's name too.")
    if error is not None:  # the attempt stays recorded as a failure
        return render(request, "login.html", {**context, "error": error}, status=401)
    found = matches[0]
    # a fresh session on login (no fixation): a new server-side session and CSRF token
    await end_session(db, request.session)
    request.session.clear()
    await begin_session(db, request.session, found.id, found.tenant_id, SESSION_MAX_AGE)
    request.session["csrf"] = secrets.token_urlsafe(32)
    return redirect(target)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    await checked_form(request)
    await end_session(db_of(request), request.session)
    request.session.clear()
    flash(request, "ok", i18n.N_("You are logged out."))
    return redirect("/login")


@router.post("/language", include_in_schema=False)
async def choose_language(request: Request) -> Response:
    form = await checked_form(request)
    code = str(form.get("lang") or "")
    response = redirect(safe_next(str(form.get("next") or ""), "/"))
    if code in i18n.LANGUAGES:
        settings = settings_of(request)
        response.set_cookie(
            i18n.COOKIE,
            code,
            max_age=365 * 24 * 3600,
            samesite=cookie_same_site(settings),
            secure=settings.framed,
            httponly=True,
        )
    return response
