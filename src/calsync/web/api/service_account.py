"""/api/v1/tenant/google/service-account: the company-level connection (seeds 002/003).

The admin uploads the service account's key (JSON, or P12 with its password and the service
account's e-mail); it is stored encrypted and the company's auth mode becomes service_account.
"Test" impersonates one Workspace user and reports the first thing that fails, with its remedy.
"""

from __future__ import annotations

from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Body, File, Form, UploadFile
from fastapi.responses import JSONResponse

from calsync.google import errors
from calsync.google.service_account import (
    DEFAULT_P12_PASSWORD,
    SCOPE_CALENDAR,
    ServiceAccountKey,
)
from calsync.store import tenants

from ..deps import Admin, Session
from ..errors import ApiError
from ..google_schemas import ServiceAccountOut, ServiceAccountTestIn, ServiceAccountTestOut
from .google import Services

router = APIRouter(tags=["google"])

MAX_KEY_BYTES = 64 * 1024  # Google's keys are 2-3 KB


def _p12_client_id(data: bytes, password: str | None) -> str | None:
    """Google puts the service account's client ID in the P12 certificate's common name."""
    try:
        _, cert, _ = pkcs12.load_key_and_certificates(
            data, (password or DEFAULT_P12_PASSWORD).encode("utf-8")
        )
    except ValueError:
        return None
    if not isinstance(cert, x509.Certificate):
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) and value.isdigit() else None


def _key_error(exc: errors.GoogleError) -> ApiError:
    return ApiError(422, exc.code, exc.message, exc.remedy)


@router.put("/tenant/google/service-account", response_model=ServiceAccountOut)
async def upload_key(
    caller: Admin,
    s: Session,
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
    name = file.filename or ""
    fmt = key_format or (
        "json" if name.lower().endswith(".json") or raw.lstrip()[:1] == b"{" else "p12"
    )
    tenant = caller.tenant
    try:
        if fmt == "json":
            key = ServiceAccountKey.from_json(raw, filename=name or "the JSON key file")
            client_id = key.client_id
        else:
            email = (client_email or tenant.service_account_email or "").strip()
            key = ServiceAccountKey.from_p12(
                raw, client_email=email, password=password, filename=name or "the P12 key file"
            )
            client_id = _p12_client_id(raw, password)
    except errors.GoogleError as exc:
        raise _key_error(exc) from exc
    await tenants.update(
        s,
        tenant,
        {
            "service_account_key": raw,
            "service_account_key_format": fmt,
            "service_account_key_password": password if fmt == "p12" else None,
            "service_account_email": key.client_email,
            "auth_mode": "service_account",
        },
    )
    await s.commit()
    services.key_replaced(tenant.id)
    return ServiceAccountOut(
        auth_mode="service_account",
        service_account_email=key.client_email,
        client_id=client_id,
        key_format=fmt,  # type: ignore[arg-type]
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
    caller: Admin,
    s: Session,
    services: Services,
    body: Annotated[ServiceAccountTestIn | None, Body()] = None,
) -> ServiceAccountTestOut | JSONResponse:
    """The "Test" button: act as a Workspace user and read their calendar list."""
    tenant = caller.tenant
    email = (body.email if body and body.email else None) or (
        caller.user.email if caller.user is not None else None
    )
    await s.commit()
    if not email:
        raise ApiError(
            422,
            "email_required",
            "Which Workspace user should the test act as?",
            'Send {"email": "someone@your-domain"} (a user whose CRM e-mail is their Google one).',
        )
    email = email.strip().lower()
    try:
        tokens = services.service_account(tenant)
    except errors.GoogleError as exc:
        return _failed(exc, email, 409)
    try:
        calendars = await services.calendars_as(tokens, email)
    except errors.GoogleError as exc:
        return _failed(exc, email)
    return ServiceAccountTestOut(
        ok=True,
        email=email,
        service_account_email=tokens.key.client_email,
        calendars=len(calendars),
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
