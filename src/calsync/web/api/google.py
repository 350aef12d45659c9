"""/api/v1/users/{user_id}/google: a user's Google Calendar connection.

Connect (OAuth link), status with the live calendar list, settings (calendars by id, direction,
private events, on/off), sync now, runs, issues, disconnect. A user key acts on its own user
only; an admin key on any user of its tenant — except that in service-account mode nobody but
the user switches sync on for them (seeds 002/003).
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from calsync.google import errors
from calsync.jobs.port import JobQueue
from calsync.store import connections
from calsync.store.db import Database
from calsync.store.models import GoogleConnection, Tenant, User
from calsync.store.statuses import AuthMode, ConnectionStatus
from calsync.sync import connect as connecting
from calsync.sync import connect_calendars
from calsync.sync.codes import remedy_for
from calsync.sync.connect_calendars import SettingsChange
from calsync.sync.connect_service_account import ServiceAccountRefused, ServiceAccountUnusable
from calsync.sync.google_services import GoogleServices

from .. import google_status, sync_requests
from ..deps import Principal, Session, TenantCaller, TenantPrincipal, database, visible_user
from ..errors import ApiError, FieldProblem
from ..google_schemas import (
    ConnectionOut,
    ConnectOut,
    DisconnectOut,
    Problem,
    SettingsPatch,
    SettingsPreview,
    SettingsWarning,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["google"])

UPSTREAM: dict[int | str, dict[str, Any]] = {
    502: {"model": Problem, "description": "Google did not answer as expected"}
}


def google_services(request: Request) -> GoogleServices:
    services: GoogleServices = request.app.state.google
    return services


def job_queue(request: Request) -> JobQueue | None:
    """The app's runner once its lifespan started it (None in apps embedded without one)."""
    jobs: JobQueue | None = getattr(request.app.state, "jobs", None)
    return jobs


Services = Annotated[GoogleServices, Depends(google_services)]
Db = Annotated[Database, Depends(database)]


async def target(
    caller: TenantPrincipal, session: AsyncSession, user_id: uuid.UUID
) -> tuple[Tenant, User]:
    """The tenant and the user acted on; ends the read so Google calls hold no transaction."""
    user = await visible_user(caller, session, user_id)
    tenant = caller.tenant
    await session.commit()
    return tenant, user


def _is_self(caller: Principal, user: User) -> bool:
    return caller.user is not None and caller.user.id == user.id


def module_on(tenant: Tenant) -> None:
    if not tenant.calendar_module_enabled:
        raise ApiError(
            403,
            "calendar_module_disabled",
            "The Calendar module is switched off for this company.",
            "An admin switches it on: PATCH /api/v1/tenant/settings "
            '{"calendar_module_enabled": true}.',
        )


def _google_error(exc: errors.GoogleError, status: int = 409) -> ApiError:
    return ApiError(status, exc.code, exc.message, exc.remedy)


def not_connected(conn: GoogleConnection | None, tenant: Tenant, user: User) -> ApiError:
    if conn is not None and conn.status == ConnectionStatus.NEEDS_REAUTH:
        remedy = remedy_for(conn.last_error_code) or errors.GrantRevoked.remedy
        return ApiError(
            409,
            "needs_reauth",
            conn.last_error_message or "Google no longer accepts calsync's access.",
            remedy,
        )
    if tenant.auth_mode == AuthMode.SERVICE_ACCOUNT:
        remedy = (
            f"{user.email} switches sync on for themselves: PATCH "
            f'/api/v1/users/{user.id}/google/settings {{"enabled": true}} with their own key.'
        )
    else:
        remedy = (
            f"Connect first: POST /api/v1/users/{user.id}/google/connect and open the "
            "authorization_url in the user's browser."
        )
    return ApiError(409, "not_connected", "Google Calendar is not connected for this user.", remedy)


# -- connect ----------------------------------------------------------------------------------


@router.post("/users/{user_id}/google/connect", response_model=ConnectOut)
async def connect(
    user_id: uuid.UUID, caller: TenantCaller, session: Session, services: Services
) -> ConnectOut:
    """A Google consent link for the user (single-use, bound to this user, valid 10 minutes).

    The CRM sends its user's browser to the link; the Google account that signs in must be one
    the company's account policy allows (GET /api/v1/tenant/settings)."""
    return await start_connect(user_id, caller, session, services)


async def start_connect(
    user_id: uuid.UUID,
    caller: TenantCaller,
    session: AsyncSession,
    services: GoogleServices,
    *,
    browser: str | None = None,
) -> ConnectOut:
    """`connect`, and for the pages bound to the browser that asked (`oauth_browser`)."""
    tenant, user = await target(caller, session, user_id)
    module_on(tenant)
    if services.oauth is None:
        raise _google_error(errors.OAuthNotConfigured())
    if tenant.auth_mode == AuthMode.SERVICE_ACCOUNT:
        raise ApiError(
            409,
            "service_account_mode",
            "This company connects Google Calendar with a service account, not per user.",
            f"No Google sign-in is needed: {user.email} switches sync on with PATCH "
            f'/api/v1/users/{user.id}/google/settings {{"enabled": true}}.',
        )
    url = await services.oauth.authorization_url(
        connecting.user_key(tenant.id, user.id), login_hint=user.email, browser=browser
    )
    return ConnectOut(
        authorization_url=url,
        redirect_uri=services.oauth.redirect_uri,
        expires_in=int(services.oauth.state_ttl),
    )


# -- status -----------------------------------------------------------------------------------


@router.get("/users/{user_id}/google", response_model=ConnectionOut)
async def get_connection(
    user_id: uuid.UUID, caller: TenantCaller, session: Session, services: Services, db: Db
) -> ConnectionOut:
    """Status, the live calendar list (stored choices if Google fails), last run and error."""
    tenant, user = await target(caller, session, user_id)
    return await google_status.status(db, services, tenant, user)


# -- settings ---------------------------------------------------------------------------------


def _change(body: SettingsPatch) -> SettingsChange:
    return SettingsChange(
        sent=frozenset(body.model_fields_set),
        enabled=body.enabled,
        import_calendar_ids=body.import_calendar_ids,
        export_calendar_id=body.export_calendar_id,
        direction=body.direction,
        private_events=body.private_events,
    )


def _unknown_calendars(exc: connect_calendars.UnknownCalendars, user: User) -> ApiError:
    listing = f"GET /api/v1/users/{user.id}/google lists the calendars with their ids"
    problems: list[FieldProblem] = []
    for p in exc.problems:
        hint = ""
        if p.id_of_name is not None:
            hint = f"; {p.calendar_id!r} is a calendar's name, its id is {p.id_of_name!r}"
        problems.append(
            FieldProblem(
                field=p.field,
                code="unknown_calendar",
                message=f"no calendar with the id {p.calendar_id!r} in the Google account{hint}",
            )
        )
    return ApiError(
        422,
        "unknown_calendar",
        "; ".join(p.message for p in problems),
        f"Choose calendars by their id, never by name: {listing}.",
        problems,
    )


def _not_writable(exc: connect_calendars.ExportNotWritable) -> ApiError:
    entry = exc.entry
    return ApiError(
        422,
        "export_calendar_not_writable",
        f"calsync cannot write CRM entries to {entry.summary or entry.id!r}: the Google "
        f"account's access is {entry.access_role or 'none'}.",
        "Choose a calendar the user owns or may change (access_role owner or writer); a "
        "separate calendar for CRM entries is recommended.",
        [
            FieldProblem(
                field="export_calendar_id",
                code="not_writable",
                message=f"access_role is {entry.access_role}, needs owner or writer",
            )
        ],
    )


@router.patch(
    "/users/{user_id}/google/settings", response_model=ConnectionOut, responses={**UPSTREAM}
)
async def patch_settings(
    user_id: uuid.UUID,
    body: SettingsPatch,
    caller: TenantCaller,
    session: Session,
    services: Services,
    db: Db,
    jobs: Annotated[JobQueue | None, Depends(job_queue)] = None,
) -> ConnectionOut:
    """Change what syncs; calendars by id, the export calendar must be writable. Choosing
    calendars or switching sync on queues a sync at once."""
    tenant, user = await target(caller, session, user_id)
    module_on(tenant)
    try:
        to_sync = await connect_calendars.update_settings(
            session, db, services, tenant, user, _change(body), by_self=_is_self(caller, user)
        )
    except connect_calendars.EnableForSelfOnly as exc:
        raise ApiError(
            403,
            "enable_for_self_only",
            f"Only {user.email} can switch Google Calendar sync on for themselves; nobody can "
            "switch it on for someone else.",
            "Ask the user to switch sync on in their own settings (with their own API key).",
        ) from exc
    except ServiceAccountUnusable as exc:
        raise ApiError(
            409,
            exc.error.code,
            f"The company's service account cannot be used: {exc.error.message}",
            "An admin uploads the service account's key: PUT /api/v1/tenant/google/service-account.",
        ) from exc
    except ServiceAccountRefused as exc:
        raise _google_error(exc.error) from exc
    except connect_calendars.NotConnected as exc:
        raise not_connected(exc.connection, tenant, user) from exc
    except connect_calendars.UnknownCalendars as exc:
        raise _unknown_calendars(exc, user) from exc
    except connect_calendars.ExportNotWritable as exc:
        raise _not_writable(exc) from exc
    except errors.GoogleError as exc:  # the live calendar list
        raise _google_error(exc, 409 if exc.needs_reauth else 502) from exc
    if to_sync is not None:
        await sync_requests.enqueue_sync(db, jobs, to_sync)
    return await google_status.status(db, services, tenant, user)


@router.post("/users/{user_id}/google/settings/preview", response_model=SettingsPreview)
async def preview_settings(
    user_id: uuid.UUID,
    body: SettingsPatch,
    caller: TenantCaller,
    session: Session,
    services: Services,
    db: Db,
) -> SettingsPreview:
    """What PATCH .../google/settings with this body would do that deserves a confirmation
    (nothing left to sync; CRM entries moving to another calendar, with how many). Changes
    nothing; the settings page asks before such a Save."""
    tenant, user = await target(caller, session, user_id)
    module_on(tenant)
    found = await connect_calendars.preview(session, db, services, tenant, user, _change(body))
    return SettingsPreview(
        warnings=[
            SettingsWarning(
                code=w.code,  # type: ignore[arg-type]
                message=w.message,
                count=w.count,
                from_calendar=w.from_calendar,
                to_calendar=w.to_calendar,
            )
            for w in found
        ]
    )


# -- disconnect -------------------------------------------------------------------------------


@router.delete("/users/{user_id}/google", response_model=DisconnectOut)
async def disconnect(
    user_id: uuid.UUID, caller: TenantCaller, session: Session, services: Services, db: Db
) -> DisconnectOut:
    """Revoke at Google, stop push channels, forget the tokens; CRM activities and the links
    stay, so connecting the same Google account again duplicates nothing."""
    tenant, user = await target(caller, session, user_id)
    conn = await connections.for_user(session, user.id)
    if conn is None or conn.status == ConnectionStatus.REVOKED:
        return DisconnectOut(
            status="not_connected", revoked_at_google=False, channels_stopped=0, warnings=[]
        )
    done = await connecting.disconnect(session, db, services, tenant, conn)
    return DisconnectOut(
        status="not_connected",
        revoked_at_google=done.revoked_at_google,
        channels_stopped=done.channels_stopped,
        warnings=[google_status.problem(exc) for exc in done.warnings],
    )
