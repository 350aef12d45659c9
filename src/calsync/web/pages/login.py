"""Login and logout for CRM users (a signed session cookie), and the language switcher."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from calsync.store.models import Tenant, User
from calsync.store.users import normalise_email

from .. import i18n
from .common import (
    checked_form,
    db_of,
    flash,
    redirect,
    render,
    safe_next,
)
from .passwords import verify_password

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    return redirect("/settings/google" if request.session.get("uid") else "/login")


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "email": "", "company": ""})


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    form = await checked_form(request)
    email = normalise_email(str(form.get("email") or ""))
    password = str(form.get("password") or "")
    company = str(form.get("company") or "").strip()
    target = safe_next(str(form.get("next") or ""))
    query = select(User).where(User.email == email, User.deleted_at.is_(None))
    if company:
        query = query.join(Tenant, Tenant.id == User.tenant_id).where(Tenant.name == company)
    async with db_of(request).session() as s:
        candidates = (await s.scalars(query)).all()
        await s.commit()
    matches = [u for u in candidates if verify_password(password, u.password_hash)]
    if not candidates:
        verify_password(password, None)
    error = None
    if not matches:
        error = i18n.N_("The e-mail or the password is wrong.")
    elif len(matches) > 1:
        error = i18n.N_("This e-mail belongs to several companies: enter the company's name too.")
    if error is not None:
        return render(
            request,
            "login.html",
            {"next": target, "email": email, "company": company, "error": error},
            status=401,
        )
    found = matches[0]
    # a fresh session on login (no fixation): new CSRF token too
    request.session.clear()
    request.session["uid"] = str(found.id)
    request.session["tid"] = str(found.tenant_id)
    request.session["csrf"] = secrets.token_urlsafe(32)
    return redirect(target)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    flash(request, "ok", i18n.N_("You are logged out."))
    return redirect("/login")


@router.post("/language", include_in_schema=False)
async def choose_language(request: Request) -> Response:
    form = await checked_form(request)
    code = str(form.get("lang") or "")
    response = redirect(safe_next(str(form.get("next") or ""), "/"))
    if code in i18n.LANGUAGES:
        response.set_cookie(
            i18n.COOKIE, code, max_age=365 * 24 * 3600, samesite="lax", httponly=True
        )
    return response
