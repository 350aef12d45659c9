"""Settings → Google Calendar: the user's status card, Connect / Reconnect / Disconnect, calendar
choices, direction, on/off, private entries, Sync now with live progress, runs and issues.

The page acts through the same handlers as the REST API (called in-process, as this user), so
its rules — who may switch on, which calendars are valid — are the API's, not a copy.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from calsync import i18n
from calsync.google import errors
from calsync.store import bindings, connections, runs
from calsync.store.models import SyncRun
from calsync.store.statuses import AuthMode

from .. import google_status, oauth_browser
from ..api import google as api
from ..api import google_runs
from ..errors import ApiError
from ..google_schemas import ConflictOut, ResumeIn, SettingsPatch, SettingsWarning, SyncIn, SyncOut
from .common import (
    PageError,
    Viewer,
    checked_form,
    db_of,
    flash,
    module_on,
    redirect,
    render,
    services_of,
    tr,
    viewer,
)

router = APIRouter()
PAGE = "/settings/google"
N_ = i18n.N_

# page texts for the API's error codes (the API's own remedies name API paths)
PAGE_ERRORS: dict[str, tuple[str, str | None]] = {
    "calendar_module_disabled": (
        N_("The Calendar module is switched off for this company."),
        N_("Enable the Calendar module: an admin switches it on in Admin → Integrations."),
    ),
    "not_connected": (
        N_("Google Calendar is not connected."),
        N_("Press Connect Google and allow access on Google's page."),
    ),
    "needs_reauth": (
        N_("Google no longer accepts calsync's access."),
        N_("Press Reconnect and allow access on Google's page; nothing in the CRM is lost."),
    ),
    "service_account_mode": (
        N_("Your company connects Google Calendar with a service account."),
        N_("No Google sign-in is needed: switch sync on below."),
    ),
    "unknown_calendar": (
        N_("One of the chosen calendars is not in your Google account any more."),
        N_("Reload the page and choose again."),
    ),
    "export_calendar_not_writable": (
        N_("calsync cannot write CRM entries to the chosen calendar."),
        N_(
            "Choose a calendar you own or may change; a separate calendar for CRM entries is recommended."
        ),
    ),
    "nothing_to_sync": (
        N_("No calendar is switched on for sync."),
        N_("Choose calendars and switch sync on, then press Save."),
    ),
    "enable_for_self_only": (
        N_("Only the user can switch Google Calendar sync on for themselves."),
        N_("Ask the user to switch sync on in their own settings."),
    ),
    "calendar_not_paused": (
        N_("This calendar is not paused any more."),
        N_("Nothing to do: it syncs again."),
    ),
    "calendar_not_found": (
        N_("This calendar is not among your calendars."),
        N_("Reload the page and choose again."),
    ),
    "validation_failed": (
        N_("Some of the values are not valid."),
        N_("Check the form and send it again."),
    ),
}


def problem_of(exc: ApiError) -> tuple[str, str | None]:
    return PAGE_ERRORS.get(exc.code, (exc.message, exc.remedy))


@dataclass
class PageSync:
    """A Sync now started from the page: its task, so the page can show progress and result."""

    task: asyncio.Task[SyncOut]
    started: float = field(default_factory=time.monotonic)
    calendars: list[str] = field(default_factory=list)


def _syncs(request: Request) -> dict[uuid.UUID, PageSync]:
    state = request.app.state
    if not hasattr(state, "page_syncs"):
        state.page_syncs = {}
    syncs: dict[uuid.UUID, PageSync] = state.page_syncs
    return syncs


def _sync_state(request: Request, who: Viewer) -> dict[str, Any]:
    """idle / running (with seconds) / finished (with outcome, counts and the error)."""
    item = _syncs(request).get(who.user.id)
    if item is None:
        return {"state": "idle"}
    elapsed = int(time.monotonic() - item.started)
    if not item.task.done():
        return {"state": "running", "elapsed": elapsed, "calendars": item.calendars}
    out: dict[str, Any] = {"state": "finished", "elapsed": elapsed}
    if item.task.cancelled():
        out.update(outcome="failed", error={"message": N_("The sync was cancelled.")})
        return out
    exc = item.task.exception()
    if isinstance(exc, ApiError):
        message, remedy = problem_of(exc)
        out.update(outcome="failed", error={"message": message, "remedy": remedy, "code": exc.code})
    elif exc is not None:
        out.update(outcome="failed", error={"message": N_("The sync failed unexpectedly.")})
    else:
        result = item.task.result()
        out["outcome"] = result.outcome or "ok"
        out["counts"] = result.counts.model_dump() if result.counts else {}
        if result.error is not None:
            out["error"] = result.error.model_dump()
    return out


async def _running_runs(request: Request, who: Viewer) -> list[SyncRun]:
    async with db_of(request).session() as session:
        conn = await connections.for_user(session, who.user.id)
        if conn is None:
            return []
        ids = [b.id for b in await bindings.for_connection(session, conn.id)]
        rows = await runs.running(session, ids)
        await session.commit()
    return list(rows)


async def _page(request: Request, who: Viewer, pending: dict[str, Any] | None = None) -> Response:
    """The settings page; `pending` is a Save waiting for confirmation (its warnings and the
    values to post again with confirm=yes)."""
    db, services = db_of(request), services_of(request)
    status = await google_status.status(db, services, who.tenant, who.user)
    async with who.acting(db) as (session, caller):
        recent = (await google_runs.list_runs(who.user.id, caller, session, limit=10)).runs
        issues = (await google_runs.list_issues(who.user.id, caller, session)).issues
        calendars = (await google_runs.list_calendars(who.user.id, caller, session)).calendars
        conflicts = (
            await google_runs.list_conflicts(who.user.id, caller, session, limit=5)
        ).conflicts
    sync = _sync_state(request, who)
    if sync["state"] == "finished":
        _syncs(request).pop(who.user.id, None)  # a result is shown once, not all login long
    return render(
        request,
        "google_settings.html",
        {
            "status": status,
            "runs": recent,
            "issues": issues,
            "paused": [c for c in calendars if c.state == "paused"],
            "conflicts": [_conflict_row(c) for c in conflicts],
            "sync": sync,
            "pending": pending,
            "service_account": who.tenant.auth_mode == AuthMode.SERVICE_ACCOUNT,
            "oauth_configured": services.oauth is not None,
        },
        who=who,
    )


# the merge units (domain/fields.py UNITS) by the names users know
UNIT_NAMES = {
    "summary": N_("Title"),
    "description": N_("Description"),
    "location": N_("Location"),
    "visibility": N_("Visibility"),
    "transparency": N_("Busy or free"),
    "schedule": N_("Time"),
    "status": N_("Status"),
}


def _value(value: Any) -> str:
    """A conflict's stored value (the unit's fields) as one short line."""
    parts = value if isinstance(value, list) else [value]
    shown = [
        ", ".join(map(str, p)) if isinstance(p, list) else str(p)
        for p in parts
        if p not in (None, "", [], False)
    ]
    return " · ".join(shown) or "—"


def _conflict_row(conflict: ConflictOut) -> dict[str, Any]:
    return {
        "decided_at": conflict.decided_at,
        "calendar": conflict.calendar_name or conflict.calendar_id,
        "field": UNIT_NAMES.get(conflict.field, conflict.field),
        "crm": _value(conflict.crm_value),
        "google": _value(conflict.google_value),
        "decision": conflict.decision,
    }


@router.get(PAGE, include_in_schema=False)
async def settings_page(request: Request) -> Response:
    who = await viewer(request)
    module_on(who)
    return await _page(request, who)


def _warning_text(warning: SettingsWarning) -> tuple[str, dict[str, Any]]:
    if warning.code == "nothing_to_sync":
        return N_(
            "No calendar is chosen: sync stays on but has nothing to do. Entries already "
            "synced stay in the CRM and in Google."
        ), {}
    return N_(
        "%(count)s entries made in the CRM will move from “%(old)s” to “%(new)s” in Google at "
        "the next sync."
    ), {"count": warning.count, "old": warning.from_calendar, "new": warning.to_calendar}


@router.post(PAGE, include_in_schema=False)
async def save_settings(request: Request) -> Response:
    who = await viewer(request)
    form = await checked_form(request)
    module_on(who)
    service_account = who.tenant.auth_mode == AuthMode.SERVICE_ACCOUNT
    values: dict[str, Any] = {"enabled": form.get("enabled") == "on"}
    if form.get("calendars") == "shown":
        values["import_calendar_ids"] = [str(v) for v in form.getlist("import")]
        export = str(form.get("export") or "")
        values["export_calendar_id"] = export or None
    if not service_account:
        if form.get("direction"):
            values["direction"] = str(form.get("direction"))
        if form.get("private_events"):
            values["private_events"] = str(form.get("private_events"))
    try:
        body = SettingsPatch(**values)
    except ValidationError:
        flash(request, "error", *PAGE_ERRORS["validation_failed"])
        return redirect(PAGE)
    db = db_of(request)
    if form.get("confirm") != "yes":
        # a Save with consequences is asked about first (the page, without JavaScript)
        async with who.acting(db) as (session, caller):
            preview = await api.preview_settings(
                who.user.id, body, caller, session, services_of(request), db
            )
        if preview.warnings:
            pending = {
                "warnings": [_warning_text(w) for w in preview.warnings],
                "fields": [
                    (k, str(v))
                    for k, v in form.multi_items()
                    if k not in ("csrf", "confirm") and isinstance(v, str)
                ],
            }
            return await _page(request, who, pending)
    try:
        async with who.acting(db) as (session, caller):
            await api.patch_settings(
                who.user.id, body, caller, session, services_of(request), db, api.job_queue(request)
            )
    except ApiError as exc:
        flash(request, "error", *problem_of(exc))
        return redirect(PAGE)
    except errors.GoogleError as exc:
        flash(request, "error", exc.message, exc.remedy)
        return redirect(PAGE)
    flash(request, "ok", N_("Your settings are saved."))
    return redirect(PAGE)


@router.post(PAGE + "/resume", include_in_schema=False)
async def resume(request: Request) -> Response:
    """A calendar the mass-delete guard paused: apply the deletions, or resume after the
    entries were restored in Google; its sync starts at once."""
    who = await viewer(request)
    form = await checked_form(request)
    module_on(who)
    choice = form.get("choice")
    try:
        binding_id = uuid.UUID(str(form.get("binding_id") or ""))
    except ValueError:
        binding_id = None
    if binding_id is None or choice not in ("deletions", "restored"):
        flash(request, "error", *PAGE_ERRORS["validation_failed"])
        return redirect(PAGE)
    db = db_of(request)
    try:
        async with who.acting(db) as (session, caller):
            await google_runs.resume_calendar(
                who.user.id,
                binding_id,
                ResumeIn(confirm_deletions=choice == "deletions"),
                caller,
                session,
                services_of(request),
                db,
                Response(),
                api.job_queue(request),
            )
    except ApiError as exc:
        flash(request, "error", *problem_of(exc))
        return redirect(PAGE)
    if choice == "deletions":
        flash(request, "ok", N_("Resumed: the sync that starts now applies the deletions."))
    else:
        flash(
            request,
            "ok",
            N_(
                "Resumed: the sync that starts now looks for the restored entries and deletes "
                "nothing. If they are still missing in Google, the calendar pauses again."
            ),
        )
    return redirect(PAGE)


@router.post(PAGE + "/connect", include_in_schema=False)
async def connect(request: Request) -> Response:
    """Connect and Reconnect: off to Google's consent page."""
    who = await viewer(request)
    await checked_form(request)
    module_on(who)
    services = services_of(request)
    if services.oauth is None:
        exc = errors.OAuthNotConfigured()
        raise PageError(409, N_("OAuth not configured"), exc.message, exc.remedy)
    nonce = oauth_browser.nonce_for(request)
    try:
        async with who.acting(db_of(request)) as (session, caller):
            out = await api.start_connect(
                who.user.id, caller, session, services, browser=oauth_browser.binding(nonce)
            )
    except ApiError as exc:
        flash(request, "error", *problem_of(exc))
        return redirect(PAGE)
    response = redirect(out.authorization_url)
    # the sign-in finishes only in this browser (a forwarded link is refused)
    oauth_browser.remember(response, nonce, services.settings)
    return response


@router.post(PAGE + "/disconnect", include_in_schema=False)
async def disconnect(request: Request) -> Response:
    who = await viewer(request)
    await checked_form(request)
    db = db_of(request)
    async with who.acting(db) as (session, caller):
        out = await api.disconnect(who.user.id, caller, session, services_of(request), db)
    current = _syncs(request).get(who.user.id)
    if current is not None and current.task.done():
        _syncs(request).pop(who.user.id, None)  # its result belongs to the old connection
    flash(
        request,
        "ok",
        N_("Google Calendar is disconnected. Your CRM entries stay; connect again at any time."),
    )
    for warning in out.warnings:
        flash(request, "warn", warning.message, warning.remedy)
    return redirect(PAGE)


@router.post(PAGE + "/sync", include_in_schema=False)
async def sync_now(request: Request) -> Response:
    """Start Sync now in the background; the page shows its progress and then its result."""
    who = await viewer(request)
    await checked_form(request)
    module_on(who)
    syncs = _syncs(request)
    current = syncs.get(who.user.id)
    if current is not None and not current.task.done():
        return redirect(PAGE + "#sync")
    db, services = db_of(request), services_of(request)

    async def work() -> SyncOut:
        async with who.acting(db) as (session, caller):
            return await google_runs.sync_now(
                who.user.id, caller, session, services, db, Response(), SyncIn(wait=True)
            )

    task = services.spawn(work())
    syncs[who.user.id] = PageSync(task)
    # let a quick sync finish before the page is drawn (no flicker for small calendars)
    await asyncio.wait({task}, timeout=0.5)
    return redirect(PAGE + "#sync")


@router.get(PAGE + "/sync/status", include_in_schema=False)
async def sync_status(request: Request) -> Response:
    """For the page's small script: progress while running, the result when finished."""
    who = await viewer(request)
    state = _sync_state(request, who)
    if state["state"] == "running":
        state["running"] = [
            {"binding_id": str(r.binding_id), "pulled": r.pulled, "pushed": r.pushed}
            for r in await _running_runs(request, who)
        ]
    if "error" in state:
        error = dict(state["error"])
        error["message"] = tr(error.get("message"))
        if error.get("remedy"):
            error["remedy"] = tr(error["remedy"])
        state["error"] = error
    return JSONResponse(state, headers={"Cache-Control": "no-store"})
