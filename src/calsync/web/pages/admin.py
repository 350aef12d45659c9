"""Admin → Integrations: the Calendar module, OAuth status, the service-account key with Test,
the company's sync filters, and every user's connection at a glance."""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile as FormFile

from calsync import i18n
from calsync.domain.activity import PROJECT_TASK
from calsync.store import reports, tenants, users, webhooks
from calsync.store import webhook_deliveries as deliveries
from calsync.store.statuses import AuthMode, ConnectionStatus, DeliveryStatus

from ..api import service_account as sa_api
from ..api import tenant as tenant_api
from ..errors import ApiError
from ..google_schemas import ServiceAccountTestIn, ServiceAccountTestOut
from ..schemas import TenantSettingsPatch
from .common import (
    Viewer,
    checked_form,
    db_of,
    flash,
    redirect,
    render,
    services_of,
    settings_of,
    viewer,
)

router = APIRouter()
PAGE = "/admin/integrations"
N_ = i18n.N_
# domain/accounts.py: which Google account a user may link
ACCOUNT_POLICIES = {
    "company": N_("The user's own e-mail, or any address in the company's Google domains"),
    "own_email": N_("Only the user's own e-mail"),
    "any": N_("Any Google account (not recommended)"),
}
POLICIES = {
    "latest_wins": N_("The latest change wins"),
    "crm_wins": N_("The CRM wins"),
    "google_wins": N_("Google wins"),
}


async def _overview(request: Request, tenant_id: Any) -> list[dict[str, Any]]:
    """Each user: connection status, Google e-mail, last sync, open issues."""
    async with db_of(request).session() as session:
        people = list(await users.list_(session, tenant_id))
        overview = await reports.connection_overview(session, tenant_id)
        await session.commit()
    conns, last_sync, open_issues = overview.by_user, overview.last_sync, overview.open_issues
    rows = []
    for person in people:
        conn = conns.get(person.id)
        state = "not_connected"
        if conn is not None and conn.status in (
            ConnectionStatus.CONNECTED,
            ConnectionStatus.NEEDS_REAUTH,
            ConnectionStatus.ERROR,
        ):
            state = conn.status
        rows.append(
            {
                "user": person,
                "state": state,
                "google_email": conn.google_email
                if conn is not None and state != "not_connected"
                else None,
                "error": conn.last_error_message if conn is not None else None,
                "last_sync": last_sync.get(conn.id) if conn is not None else None,
                "issues": open_issues.get(conn.id, 0) if conn is not None else 0,
                "enabled": bool(conn.sync_enabled) if conn is not None else False,
            }
        )
    return rows


# outbound webhooks' delivery states, as the admin page shows them
DELIVERY_STATES = {
    DeliveryStatus.PENDING: N_("waiting"),
    DeliveryStatus.FAILED: N_("failed, will retry"),
    DeliveryStatus.SUCCEEDED: N_("delivered"),
    DeliveryStatus.EXHAUSTED: N_("gave up"),
}


async def _webhooks(request: Request, tenant_id: Any) -> list[dict[str, Any]]:
    """Each outbound webhook endpoint with its state and its last few deliveries."""
    async with db_of(request).session() as session:
        rows = []
        for endpoint in await webhooks.endpoints(session, tenant_id):
            rows.append(
                {"endpoint": endpoint, "log": await deliveries.log(session, endpoint.id, 5)}
            )
        await session.commit()
    return rows


@router.get(PAGE, include_in_schema=False)
async def integrations(request: Request) -> Response:
    who = await viewer(request, admin=True)
    settings = settings_of(request)
    async with db_of(request).session() as session:
        types = list(await tenants.activity_types(session, who.tenant.id))
        await session.commit()
    test = request.session.pop("sa_test", None)
    return render(
        request,
        "admin.html",
        {
            "tenant": who.tenant,
            "types": types,
            "project_task": PROJECT_TASK,
            "policies": POLICIES,
            "account_policies": ACCOUNT_POLICIES,
            "oauth_configured": settings.oauth_configured,
            "redirect_uri": settings.public_url.rstrip("/") + "/oauth/google/callback",
            "people": await _overview(request, who.tenant.id),
            "webhooks": await _webhooks(request, who.tenant.id),
            "delivery_states": DELIVERY_STATES,
            "test": test,
        },
        who=who,
    )


async def _patch(request: Request, who: Viewer, values: dict[str, Any]) -> bool:
    try:
        body = TenantSettingsPatch(**values)
        async with who.acting(db_of(request)) as (session, caller):
            await tenant_api.patch_settings(body, caller, session)
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e.get("loc"))
        flash(
            request,
            "error",
            N_("Some of the values are not valid: %(fields)s"),
            params={"fields": fields},
        )
        return False
    except ApiError as exc:
        detail = "; ".join(f.message for f in exc.fields or []) or exc.message
        flash(
            request,
            "error",
            N_("Some of the values are not valid: %(fields)s"),
            params={"fields": detail},
        )
        return False
    return True


@router.post(PAGE + "/module", include_in_schema=False)
async def module(request: Request) -> Response:
    who = await viewer(request, admin=True)
    form = await checked_form(request)
    enabled = form.get("calendar_module_enabled") == "on"
    if await _patch(request, who, {"calendar_module_enabled": enabled}):
        flash(
            request,
            "ok",
            N_("The Calendar module is switched on.")
            if enabled
            else N_("The Calendar module is switched off for this company."),
        )
    return redirect(PAGE)


@router.post(PAGE + "/settings", include_in_schema=False)
async def company_settings(request: Request) -> Response:
    who = await viewer(request, admin=True)
    form = await checked_form(request)

    def number(name: str) -> int | None:
        raw = str(form.get(name) or "").strip()
        try:
            return int(raw)
        except ValueError:
            return -1  # rejected by validation with the field named

    values: dict[str, Any] = {
        "exported_activity_types": [str(v) for v in form.getlist("exported")],
        "default_import_type": str(form.get("default_import_type") or ""),
        "personal_import_type": str(form.get("personal_import_type") or ""),
        "conflict_policy": str(form.get("conflict_policy") or ""),
    }
    minutes = number("poll_interval_minutes")
    if minutes is not None:
        values["poll_interval_seconds"] = minutes * 60 if minutes > 0 else minutes
    values["lookback_days"] = number("lookback_days")
    if form.get("auth_mode") in (AuthMode.OAUTH, AuthMode.SERVICE_ACCOUNT):
        values["auth_mode"] = str(form.get("auth_mode"))
    if await _patch(request, who, values):
        flash(request, "ok", N_("The company settings are saved."))
    return redirect(PAGE)


@router.post(PAGE + "/accounts", include_in_schema=False)
async def account_policy(request: Request) -> Response:
    """Which Google account users may link: the policy and the company's Google domains."""
    who = await viewer(request, admin=True)
    form = await checked_form(request)
    domains = [d for d in str(form.get("google_domains") or "").replace(",", "\n").split() if d]
    values: dict[str, Any] = {
        "google_account_policy": str(form.get("google_account_policy") or ""),
        "google_domains": domains,
    }
    if await _patch(request, who, values):
        flash(request, "ok", N_("The Google account policy is saved."))
    return redirect(PAGE + "#accounts")


@router.post(PAGE + "/service-account", include_in_schema=False)
async def upload_key(request: Request) -> Response:
    who = await viewer(request, admin=True)
    form = await checked_form(request)
    upload = form.get("key")
    if not isinstance(upload, FormFile) or not upload.filename:
        flash(request, "error", N_("Choose the key file (.json or .p12) first."))
        return redirect(PAGE + "#service-account")
    password = str(form.get("password") or "") or None
    client_email = str(form.get("client_email") or "").strip() or None
    mode_before = who.tenant.auth_mode
    try:
        async with who.acting(db_of(request)) as (session, caller):
            out = await sa_api.upload_key(
                caller,
                session,
                services_of(request),
                file=cast(UploadFile, upload),
                password=password,
                client_email=client_email,
                key_format=None,
            )
    except ApiError as exc:
        flash(request, "error", exc.message, exc.remedy)
        return redirect(PAGE + "#service-account")
    flash(
        request,
        "ok",
        N_(
            "The key of %(email)s is saved. Authorise client ID %(client)s for domain-wide "
            "delegation, then press Test."
        ),
        params={"email": out.service_account_email, "client": out.client_id or "-"},
    )
    if mode_before != out.auth_mode:  # the upload switched the company: say so, and the way back
        flash(
            request,
            "warn",
            N_(
                "The whole company now connects through the service account %(email)s instead "
                "of each user's own Google sign-in. To go back, choose “Each user signs in with "
                "Google” under “How users connect”."
            ),
            params={"email": out.service_account_email},
        )
    return redirect(PAGE + "#service-account")


@router.post(PAGE + "/service-account/test", include_in_schema=False)
async def test_key(request: Request) -> Response:
    who = await viewer(request, admin=True)
    form = await checked_form(request)
    email = str(form.get("email") or "").strip() or who.user.email
    try:
        async with who.acting(db_of(request)) as (session, caller):
            out = await sa_api.test_key(
                caller, session, services_of(request), ServiceAccountTestIn(email=email)
            )
    except ApiError as exc:
        request.session["sa_test"] = {
            "ok": False,
            "email": email,
            "message": exc.message,
            "remedy": exc.remedy,
        }
        return redirect(PAGE + "#test")
    if isinstance(out, ServiceAccountTestOut):
        request.session["sa_test"] = {"ok": True, "email": out.email, "calendars": out.calendars}
    elif isinstance(out, JSONResponse):
        body = json.loads(bytes(out.body))
        error = body.get("error", {})
        request.session["sa_test"] = {
            "ok": False,
            "email": email,
            "code": error.get("code"),
            "message": error.get("message"),
            "remedy": error.get("remedy"),
        }
    return redirect(PAGE + "#test")
