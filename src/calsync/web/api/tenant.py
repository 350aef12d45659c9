"""GET/PATCH /api/v1/tenant/settings: the company's calendar settings (admin keys)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from calsync.domain import accounts
from calsync.domain.activity import PROJECT_TASK
from calsync.domain.merge import Policy
from calsync.store import tenants
from calsync.store.errors import AlreadyExists
from calsync.store.models import Tenant
from calsync.store.statuses import AuthMode

from ..deps import Admin, Session
from ..errors import ApiError, FieldProblem
from ..schemas import TenantSettings, TenantSettingsPatch

router = APIRouter(tags=["tenant"])


def settings_out(tenant: Tenant) -> TenantSettings:
    return TenantSettings(
        id=tenant.id,
        name=tenant.name,
        calendar_module_enabled=tenant.calendar_module_enabled,
        auth_mode=AuthMode(tenant.auth_mode),
        service_account_email=tenant.service_account_email,
        service_account_configured=tenant.service_account_key is not None,
        exported_activity_types=list(tenant.exported_type_keys),
        default_import_type=tenant.default_import_type_key,
        personal_import_type=tenant.personal_import_type_key,
        poll_interval_seconds=tenant.poll_interval_seconds,
        lookback_days=tenant.lookback_days,
        conflict_policy=Policy(tenant.conflict_policy),
        google_account_policy=tenant.google_account_policy,  # type: ignore[arg-type]
        google_domains=list(tenant.google_domains or []),
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
    )


def _type_problems(
    field: str, key: str, known: set[str], code: str, message: str
) -> list[FieldProblem]:
    """What is wrong with `key` as a value of `field`: no such type, or a project task (built
    in, so always known), which never syncs; `code` and `message` say which way."""
    if key not in known:
        return [FieldProblem(field=field, code="unknown_type", message=f"no activity type {key!r}")]
    if key == PROJECT_TASK:
        return [FieldProblem(field=field, code=code, message=message)]
    return []


@router.get("/tenant/settings", response_model=TenantSettings)
async def get_settings(caller: Admin, session: Session) -> TenantSettings:
    """The tenant's calendar settings."""
    tenant = await tenants.get(session, caller.tenant_id)
    assert tenant is not None
    return settings_out(tenant)


@router.patch("/tenant/settings", response_model=TenantSettings)
async def patch_settings(
    body: TenantSettingsPatch, caller: Admin, session: Session
) -> TenantSettings:
    """Change some settings; only the fields sent change."""
    tenant = await tenants.get(session, caller.tenant_id)
    assert tenant is not None
    sent = body.model_dump(exclude_unset=True)
    known = {t.key for t in await tenants.activity_types(session, tenant.id)}
    problems: list[FieldProblem] = []
    changes: dict[str, Any] = {}
    for name, value in sent.items():
        if value is None:
            problems.append(FieldProblem(field=name, code="null", message="must not be null"))
            continue
        if name == "exported_activity_types":
            for key in value:
                problems += _type_problems(
                    name, key, known, "not_exportable", "project tasks never sync to Google"
                )
            changes["exported_type_keys"] = sorted(set(value))
        elif name in ("default_import_type", "personal_import_type"):
            problems += _type_problems(
                name, value, known, "not_importable", "Google entries never become project tasks"
            )
            changes[f"{name}_key"] = value
        elif (
            name == "auth_mode"
            and value == AuthMode.SERVICE_ACCOUNT
            and not tenant.service_account_key
        ):
            problems.append(
                FieldProblem(
                    field=name,
                    code="no_service_account_key",
                    message="upload the service account's key first "
                    "(PUT /api/v1/tenant/google/service-account); uploading it switches the "
                    "company to the service account",
                )
            )
        elif name == "google_domains":
            try:
                changes[name] = accounts.clean_domains(value)
            except ValueError as exc:
                problems.append(FieldProblem(field=name, code="not_a_domain", message=str(exc)))
        else:
            changes[name] = value
    if problems:
        raise ApiError(
            422, "validation_failed", "invalid settings", "fix the listed fields", problems
        )
    try:
        await tenants.update(session, tenant, changes)
        await session.commit()
    except AlreadyExists as exc:
        raise ApiError(409, "name_taken", str(exc), "choose another name") from exc
    await session.refresh(tenant)
    return settings_out(tenant)
