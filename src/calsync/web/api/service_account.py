"""/api/v1/tenant/google/service-account: the company-level connection (seeds 002/003).

The admin uploads the service account's key (JSON, or P12 with its password and the service
account's e-mail); it is stored encrypted and the company's auth mode becomes service_account.
"Test" impersonates one Workspace user and reports the first thing that fails, with its remedy.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, File, Form, UploadFile
from fastapi.responses import JSONResponse

from calsync.google import errors
from calsync.google.service_account import SCOPE_CALENDAR
from calsync.store.statuses import AuthMode
from calsync.sync import connect_service_account as service_account

from ..deps import Session, TenantAdmin
from ..errors import ApiError
from ..google_schemas import ServiceAccountOut, ServiceAccountTestIn, ServiceAccountTestOut
from .google import Services

router = APIRouter(tags=["google"])

MAX_KEY_BYTES = 64 * 1024  # Google's keys are 2-3 KB


def _key_error(exc: errors.GoogleError) -> ApiError:
    return ApiError(422, exc.code, exc.message, exc.remedy)


@router.put("/tenant/google/service-account", response_model=ServiceAccountOut)
async def upload_key(
    caller: TenantAdmin,
    session: Session,
    services: Services,
    file: Annotated[UploadFile, File(description="The .json or .p12 key from Google Cloud")],
    password: Annotated[str | None, Form(description="P12 password (Google's: notasecret)")] = None,
    client_email: Annotated[
        str | None, Form(description="The service account's e-mail (needed with a P12 key)")
    ] = None,
    key_format: Annotated[
        Literal["json", "p12"] | None, Form(description="Default: guessed from the file")
    ] = None,
) -> ServiceAccountOut:
    """Upload the service account's key (admin only); stored encrypted, never shown again."""
    raw = await file.read(MAX_KEY_BYTES + 1)
    if len(raw) > MAX_KEY_BYTES:
        raise ApiError(
            413, "too_large", "The key file is too large to be a Google key.", "Upload the key."
        )
    try:
        stored = await service_account.store_key(
            session,
            services,
            caller.tenant,
            raw,
            filename=file.filename or "",
            key_format=key_format,
            password=password,
            client_email=client_email,
        )
    except errors.GoogleError as exc:
        raise _key_error(exc) from exc
    return ServiceAccountOut(
        auth_mode=AuthMode.SERVICE_ACCOUNT,
        service_account_email=stored.service_account_email,
        client_id=stored.client_id,
        key_format=stored.key_format,  # type: ignore[arg-type]
        scopes=[SCOPE_CALENDAR],
    )


@router.post(
    "/tenant/google/service-account/test",
    response_model=ServiceAccountTestOut,
    responses={
        422: {"description": 'It does not work: `{"ok": false, "error": {code, message, remedy}}`'}
    },
)
async def test_key(
    caller: TenantAdmin,
    session: Session,
    services: Services,
    body: Annotated[ServiceAccountTestIn | None, Body()] = None,
) -> ServiceAccountTestOut | JSONResponse:
    """The "Test" button: act as a Workspace user and read their calendar list."""
    tenant = caller.tenant
    email = (body.email if body and body.email else None) or (
        caller.user.email if caller.user is not None else None
    )
    await session.commit()
    if not email:
        raise ApiError(
            422,
            "email_required",
            "Which Workspace user should the test act as?",
            'Send {"email": "someone@your-domain"} (a user whose CRM e-mail is their Google one).',
        )
    email = email.strip().lower()
    try:
        works = await service_account.try_key(services, tenant, email)
    except service_account.ServiceAccountUnusable as exc:
        return _failed(exc.error, email, 409)
    except service_account.ServiceAccountRefused as exc:
        return _failed(exc.error, email)
    return ServiceAccountTestOut(
        ok=True,
        email=email,
        service_account_email=works.service_account_email,
        calendars=works.calendars,
    )


def _failed(exc: errors.GoogleError, email: str, status: int = 422) -> JSONResponse:
    return JSONResponse(
        {
            "ok": False,
            "email": email,
            "error": {"code": exc.code, "message": exc.message, "remedy": exc.remedy},
        },
        status_code=status,
    )
