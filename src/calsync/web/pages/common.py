"""What every page shares: templates with gettext, the logged-in user from the session, CSRF
tokens checked on every POST, flash messages and the page error."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from calsync import __version__, i18n
from calsync.settings import Settings
from calsync.store import crypto, tenants, users
from calsync.store.db import Database
from calsync.store.models import Tenant, User
from calsync.store.statuses import RunOutcome, UserRole
from calsync.sync.errors import Outcome
from calsync.sync.google_services import GoogleServices

from ..deps import TenantPrincipal, with_rows

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SESSION_COOKIE = "calsync_session"
SESSION_MAX_AGE = 12 * 3600


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "xml"], default=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: i18n.current().gettext(message),
        lambda singular, plural, n: i18n.current().translations.ngettext(singular, plural, n),
        newstyle=True,
    )
    env.filters["when"] = i18n.format_when
    env.filters["clock"] = i18n.format_clock
    env.filters["day"] = i18n.format_day
    env.globals["tr_text"] = lambda text: tr_text(text)  # defined below
    env.globals["type_name"] = lambda name: type_name(name)
    env.globals["zone_names"] = i18n.zone_names
    return env


ENV = _environment()


def session_secret(settings: Settings) -> str:
    """Signs session cookies: derived from CALSYNC_SECRET_KEY (or the sandbox key file), never
    the key itself; without either, a per-process secret (sessions end on restart)."""
    material: str | None = None
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        material = settings.secret_key.get_secret_value().split(",")[0].strip()
    else:
        key_file = settings.data_dir / crypto.SANDBOX_KEY_FILE
        if settings.sandbox and key_file.exists():
            material = key_file.read_text().strip()
    if not material:
        return secrets.token_hex(32)
    return hmac.new(material.encode(), b"calsync web session v1", hashlib.sha256).hexdigest()


class PageError(Exception):
    """Rendered as a page: a title, what happened and what fixes it (message ids)."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        remedy: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        kind: str = "",
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.remedy = status, title, message, remedy
        self.params = params or {}
        self.kind = kind  # "module_off": the page says what is off and who switches it on


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Viewer:
    """The logged-in CRM user, and the same user as an API caller for the shared handlers."""

    tenant: Tenant
    user: User
    zone: str = "UTC"  # the IANA zone the pages show this user's times in

    @property
    def is_admin(self) -> bool:
        return self.user.role == UserRole.ADMIN

    @asynccontextmanager
    async def acting(self, db: Database) -> AsyncIterator[tuple[AsyncSession, TenantPrincipal]]:
        """A session and this user as an API caller whose tenant and user live in that session
        (the shared handlers change `caller.tenant` in place, as the API's own session does)."""
        async with db.sessions() as session:
            tenant = await tenants.get(session, self.tenant.id)
            user = await users.get(session, self.tenant.id, self.user.id)
            if tenant is None or user is None:
                raise LoginRequired("/")
            yield session, with_rows(tenant, user, self.is_admin)


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def services_of(request: Request) -> GoogleServices:
    services: GoogleServices = request.app.state.google
    return services


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def language_of(request: Request) -> str:
    code = i18n.negotiate(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))
    i18n.activate(code)
    return code


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after its CSRF token matched the session's (403 otherwise)."""
    language_of(request)
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if (
        not isinstance(sent, str)
        or not isinstance(expected, str)
        or not hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise PageError(
            403,
            i18n.N_("The form has expired"),
            i18n.N_("This form was not sent from calsync's own page, or your session ended."),
            i18n.N_("Go back, reload the page and send the form again."),
        )
    return form


def _ids(uid: Any, tid: Any) -> tuple[uuid.UUID, uuid.UUID] | None:
    if not isinstance(uid, str) or not isinstance(tid, str):
        return None
    try:
        return uuid.UUID(uid), uuid.UUID(tid)
    except ValueError:
        return None


async def viewer(request: Request, *, admin: bool = False) -> Viewer:
    """The logged-in user (LoginRequired otherwise); admin pages need the admin role."""
    language_of(request)
    uid, tid = request.session.get("uid"), request.session.get("tid")
    found: Viewer | None = None
    ids = _ids(uid, tid)
    if ids is not None:
        user_id, tenant_id = ids
        async with db_of(request).session() as session:
            tenant = await tenants.get(session, tenant_id)
            user = await users.get(session, tenant_id, user_id)
            zone = await users.shown_zone(session, user) if user is not None else "UTC"
            await session.commit()
        if tenant is not None and user is not None:
            found = Viewer(tenant, user, zone)
            i18n.activate_zone(zone)
    if found is None:
        request.session.pop("uid", None)
        request.session.pop("tid", None)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    if admin and not found.is_admin:
        raise PageError(
            403,
            i18n.N_("Admins only"),
            i18n.N_("This page is for the company's admins."),
            i18n.N_("Ask an admin of your company for help."),
        )
    return found


async def current_viewer(request: Request) -> Viewer | None:
    """The logged-in user, or None: never raises (error pages use it, even when the database
    is what failed)."""
    if "session" not in request.scope:
        return None
    ids = _ids(request.session.get("uid"), request.session.get("tid"))
    if ids is None:
        return None
    user_id, tenant_id = ids
    try:
        async with db_of(request).session() as session:
            tenant = await tenants.get(session, tenant_id)
            user = await users.get(session, tenant_id, user_id)
            await session.commit()
    except Exception:
        return None
    return Viewer(tenant, user) if tenant is not None and user is not None else None


def module_on(who: Viewer) -> None:
    """The Google pages answer with a clear error while the Calendar module is off."""
    if not who.tenant.calendar_module_enabled:
        raise PageError(
            403,
            i18n.N_("The Calendar module is off"),
            i18n.N_("The Calendar module is switched off for this company."),
            i18n.N_("Enable the Calendar module: an admin switches it on in Admin → Integrations."),
            kind="module_off",
        )


def flash(
    request: Request,
    kind: str,
    message: str,
    remedy: str | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """A message for the next page (message ids, translated when shown)."""
    items = list(request.session.get("flash", []))
    items.append({"kind": kind, "message": message, "remedy": remedy, "params": params or {}})
    request.session["flash"] = items[-5:]


def safe_next(path: str | None, default: str = "/settings/google") -> str:
    """Only local paths: a login link must not send anyone elsewhere."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    return path


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    who: Viewer | None = None,
    status: int = 200,
) -> HTMLResponse:
    code = language_of(request)
    flashes = request.session.pop("flash", []) if "session" in request.scope else []
    base = {
        "request": request,
        "who": who,
        "csrf": csrf_token(request) if "session" in request.scope else "",
        "lang": code,
        "languages": i18n.LANGUAGES,
        "flashes": flashes,
        "version": __version__,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "tr": tr,
        "portal_back": portal_back(request),
    }
    body = ENV.get_template(template).render({**base, **(context or {})})
    headers = {
        "Cache-Control": "no-store",
        "Content-Language": code,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        **framing_headers(settings_of(request)),
    }
    return HTMLResponse(body, status_code=status, headers=headers)


def framing_headers(settings: Settings) -> dict[str, str]:
    """Who may frame the pages: nobody by default; the origins of CALSYNC_FRAME_ANCESTORS
    otherwise (then no X-Frame-Options, which cannot name a list)."""
    if settings.frame_ancestors is None:
        return {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"}
    return {"Content-Security-Policy": f"frame-ancestors {settings.frame_ancestors}"}


def cookie_same_site(settings: Settings) -> Literal["lax", "none"]:
    """The pages' cookies: SameSite=None (with Secure) when a CRM frames them over https."""
    return "none" if settings.framed else "lax"


def portal_back(request: Request) -> dict[str, str] | None:
    """The "Back to <CRM>" link of a session opened from a portal link (web/pages/portal.py)."""
    if "session" not in request.scope:
        return None
    url, label = request.session.get("portal_return"), request.session.get("portal_label")
    if not isinstance(url, str) or not isinstance(label, str):
        return None
    return {"url": url, "label": label}


# the words of a sync run's outcome, shown in the history and in diagnostics
OUTCOMES: dict[str, str] = {
    Outcome.OK: i18n.N_("Finished"),
    Outcome.PARTIAL: i18n.N_("Finished with issues"),
    Outcome.FAILED: i18n.N_("Failed"),
    Outcome.NEEDS_REAUTH: i18n.N_("Needs reconnect"),
    Outcome.BACKOFF: i18n.N_("Waiting to retry"),
    Outcome.PAUSED: i18n.N_("Paused"),
    Outcome.DISABLED: i18n.N_("Calendar disabled"),
    Outcome.SKIPPED: i18n.N_("Skipped"),
    RunOutcome.RUNNING: i18n.N_("Running"),
}
# the built-in activity types' stored names (domain.activity.BUILT_IN_TYPES), for extraction
TYPE_NAMES = (
    i18n.N_("Meeting"),
    i18n.N_("Call"),
    i18n.N_("Task"),
    i18n.N_("Personal"),
    i18n.N_("Project task"),
)


def type_name(name: str) -> str:
    """A built-in activity type's name in the current language; a company's own stays."""
    return i18n.current().gettext(name) if name in TYPE_NAMES else name


# parameters that carry a stored message (Google's errors, remedies): translated when known
STORED_TEXTS = frozenset({"reason", "error", "message"})


def _shown(key: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return i18n.format_when(value)
    if key == "outcome" and isinstance(value, str):
        return i18n.current().gettext(OUTCOMES.get(value, value))
    if key in STORED_TEXTS and isinstance(value, str) and value:
        return i18n.current().gettext(value)  # a stored English message; unknown ones stay
    return value


def tr_text(text: Any) -> str:
    """A doctor.Text (message id, parameters, maybe a plural) in the current language: times
    in the user's zone, outcome words translated."""
    lang = i18n.current()
    params = {key: _shown(key, value) for key, value in text.params.items()}
    if text.plural is not None:
        message = lang.translations.ngettext(text.msgid, text.plural, text.n)
        params["num"] = text.n
    else:
        message = lang.gettext(text.msgid) if text.msgid else ""
    try:
        return str(message % params) if params else str(message)
    except (KeyError, TypeError, ValueError):
        return str(text.render())


def tr(message: str | None, params: dict[str, Any] | None = None) -> str:
    """A message id (or a stored English text) in the current language; unknown texts stay."""
    if not message:
        return ""
    text = i18n.current().gettext(message)
    if params:
        try:
            return text % params
        except (KeyError, TypeError, ValueError):
            return message % params
    return text


# the error pages for errors outside the pages' own (web/errors.py calls `error_page` for
# browsers): unknown addresses, ids of the wrong form, anything unexpected
_STATUS_PAGES: dict[int, tuple[str, str, str | None]] = {
    403: (
        i18n.N_("Not allowed"),
        i18n.N_("You may not open this page."),
        i18n.N_("Ask an admin of your company for help."),
    ),
    404: (
        i18n.N_("Page not found"),
        i18n.N_("There is no page at this address."),
        i18n.N_("Check the address, or go on from one of the links below."),
    ),
    422: (
        i18n.N_("This address is not valid"),
        i18n.N_("Part of this address or form has a value calsync cannot read: %(fields)s."),
        i18n.N_("Check the link you followed, or go on from one of the links below."),
    ),
    500: (
        i18n.N_("Something went wrong"),
        i18n.N_("calsync hit an unexpected error; the server log has the details."),
        i18n.N_(
            "Try again in a moment. If it happens again, tell your admin the time and the address "
            "of this page."
        ),
    ),
}
_OTHER_4XX = (
    i18n.N_("This request cannot be answered"),
    i18n.N_("calsync cannot answer this request (HTTP %(status)s)."),
    i18n.N_("Go on from one of the links below."),
)


async def error_page(
    request: Request, status: int, fields: list[str] | None = None, headers: Any = None
) -> Response:
    """An HTML error page for a browser, in its language, with the navigation."""
    title, message, remedy = _STATUS_PAGES.get(
        status, _OTHER_4XX if status < 500 else _STATUS_PAGES[500]
    )
    params = {"status": status, "fields": ", ".join(fields or []) or "-"}
    response = await page_error(request, PageError(status, title, message, remedy, params))
    for name, value in dict(headers or {}).items():
        if name.lower() in ("allow", "retry-after"):
            response.headers[name] = value
    return response


def _ways_forward(request: Request, who: Viewer | None, exc: PageError) -> list[dict[str, str]]:
    """Links that lead somewhere else than this page (no loop back to it)."""
    links: list[tuple[str, str]] = []
    if who is None:
        links.append(("/login", i18n.N_("Log in")))
    else:
        if exc.kind == "module_off" and who.is_admin:
            links.append(
                (
                    "/admin/integrations#module-heading",
                    i18n.N_("Switch the Calendar module on in Integrations"),
                )
            )
        if who.tenant.calendar_module_enabled:
            links.append(("/settings/google", i18n.N_("Google Calendar")))
        links.append(("/calendar", i18n.N_("Calendar")))
        links.append(("/diagnostics", i18n.N_("Diagnostics")))
    here = request.url.path
    return [
        {"href": href, "label": label}
        for href, label in links
        if href.split("#")[0].split("?")[0] != here
    ]


async def _admins(who: Viewer, request: Request) -> list[str]:
    try:
        async with db_of(request).session() as session:
            people = await users.list_(session, who.tenant.id)
            await session.commit()
    except Exception:
        return []
    return sorted(u.email for u in people if u.role == UserRole.ADMIN)


async def page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    who = await current_viewer(request)
    admins = await _admins(who, request) if who is not None and exc.kind == "module_off" else []
    return render(
        request,
        "error.html",
        {"error": exc, "forward": _ways_forward(request, who, exc), "admins": admins},
        who=who,
        status=exc.status,
    )


async def login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return redirect("/login?next=" + quote(exc.next_path, safe="/"))
