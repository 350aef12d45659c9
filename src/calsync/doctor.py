"""The troubleshooting checklist (seed 000) run for real: each check passes, warns or fails and
says what fixes it. The diagnostics page and `calsync doctor` show the same `Diagnosis`.

Texts are gettext message ids with %(name)s parameters, so the page shows them in the reader's
language and the terminal in English; `Text.render` does either.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from calsync import __version__
from calsync.google import errors
from calsync.google.auth import TokenProvider
from calsync.google.models import CalendarListEntry, Event
from calsync.settings import Settings
from calsync.store import bindings, connections, google_settings, tenants, users
from calsync.store.db import Database
from calsync.store.models import (
    CalendarBinding,
    EventLink,
    GoogleConnection,
    SyncIssue,
    SyncRun,
    Tenant,
    User,
)
from calsync.sync.connect_calendars import exports, imports
from calsync.sync.mapping import ACTIVITY_KEY
from calsync.sync.tokens import GoogleAccess, NotConnected
from calsync.web.google_status import remedy_for
from calsync.web.i18n import N_, Nn_

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
# a check that cannot pass in the sandbox by design (the emulator is not Google): neither a
# failure nor a warning there
SANDBOX = "sandbox"
RATE_CODES = ("google.rate_limited", "google.quota_exceeded")
CHANNEL_MARGIN = timedelta(hours=1)
DUPLICATE_SCAN_DAYS = 90
DUPLICATE_SCAN_PAGES = 4
Translate = Callable[[str], str]

_SECRET = re.compile(
    r"(ya29\.[\w.-]+|1//[\w.-]+|csk_[\w-]+|gAAAAA[\w=-]+|GOCSPX-[\w-]+|"
    r"-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----|"
    r"(?i:(?:token|secret|password|key)\s*[=:]\s*)\S+)"
)


def redact(text: str) -> str:
    """Tokens, keys and passwords out of anything headed for a support e-mail."""
    return _SECRET.sub("[redacted]", text)


@dataclass(frozen=True)
class Text:
    """A message id and its parameters; rendered in a language at the last moment."""

    msgid: str
    params: dict[str, Any] = field(default_factory=dict)
    # a singular/plural pair: msgid is the singular, `plural` the plural, `n` picks the form
    # (and is the message's %(num)s)
    plural: str | None = None
    n: int = 0

    @classmethod
    def counted(cls, forms: tuple[str, str], n: int, params: dict[str, Any] | None = None) -> Text:
        return cls(forms[0], dict(params or {}), forms[1], n)

    def render(self, translate: Translate | None = None) -> str:
        """In English (the support report), or through `translate` for singular messages."""
        params = {k: _iso(v) if isinstance(v, datetime) else v for k, v in self.params.items()}
        if self.plural is not None:
            params["num"] = self.n
            text = self.msgid if self.n == 1 else self.plural
        else:
            text = translate(self.msgid) if translate else self.msgid
        return text % params if params else text


@dataclass(frozen=True)
class Check:
    key: str
    title: str  # message id
    status: str
    detail: Text
    remedy: Text | None = None
    code: str | None = None  # the error code behind a failure, for support


@dataclass
class Diagnosis:
    tenant: Tenant
    user: User
    connection: GoogleConnection | None
    checks: list[Check]
    checked_at: datetime
    recent_runs: list[SyncRun]
    settings: Settings

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    @property
    def worst(self) -> str:
        for status in (FAIL, WARN):
            if any(c.status == status for c in self.checks):
                return status
        return PASS

    def report(self) -> str:
        """What seed 000 says support needs — status, exact errors, since when, what was tried,
        versions — as plain English text with secrets redacted."""
        conn = self.connection
        lines = [
            "calsync support report",
            f"generated: {self.checked_at.isoformat(timespec='seconds')}",
            f"calsync version: {__version__}",
            f"company: {self.tenant.name}",
            f"CRM user: {self.user.email}",
            "integration: Google Calendar",
            f"auth mode: {conn.auth_mode if conn else self.tenant.auth_mode}",
            f"connection status: {conn.status if conn else 'not connected'}",
            f"Google account: {(conn.google_email if conn else None) or '-'}",
            f"connected since: {_iso(conn.connected_at) if conn else '-'}",
            f"public URL: {self.settings.public_url}",
        ]
        if conn is not None and (conn.last_error_code or conn.last_error_message):
            lines.append(
                f"last connection error: {conn.last_error_code or ''} "
                f"{conn.last_error_message or ''} (since {_iso(conn.last_error_at)})"
            )
        lines.append("")
        lines.append("checks:")
        for check in self.checks:
            line = f"  [{check.status.upper()}] {check.title}: {check.detail.render()}"
            if check.code:
                line += f" ({check.code})"
            lines.append(line)
        failing = [r for r in self.recent_runs if r.error_code]
        if failing:
            first = failing[-1]
            lines.append("")
            lines.append(f"errors since: {_iso(first.started_at)}")
        lines.append("")
        lines.append("recent syncs (what was tried):")
        for run in self.recent_runs[:10]:
            error = f" {run.error_code}: {run.error_message}" if run.error_code else ""
            lines.append(
                f"  {_iso(run.started_at)} {run.trigger} {'full ' if run.full_sync else ''}"
                f"{run.outcome} pulled={run.pulled} pushed={run.pushed}{error}"
            )
        if not self.recent_runs:
            lines.append("  none")
        return redact("\n".join(lines))


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _error_check(key: str, title: str, exc: errors.GoogleError) -> Check:
    return Check(key, title, FAIL, Text(exc.message), Text(exc.remedy), exc.code)


class _Doctor:
    def __init__(
        self,
        db: Database,
        access: GoogleAccess,
        settings: Settings,
        tenant: Tenant,
        user: User,
        *,
        live: bool,
        http: httpx.AsyncClient | None,
    ) -> None:
        self.db, self.access, self.settings = db, access, settings
        self.tenant, self.user, self.live, self.http = tenant, user, live, http
        self.now = datetime.now(UTC)
        self.checks: list[Check] = []
        self.conn: GoogleConnection | None = None
        self.stored: list[CalendarBinding] = []
        self.runs: list[SyncRun] = []
        # the provider whose refresh the connection check proved; the live checks reuse it
        self.tokens: TokenProvider | None = None
        self.live_calendars: list[CalendarListEntry] | None = None

    def add(self, check: Check) -> None:
        self.checks.append(check)

    async def load(self, s: AsyncSession) -> None:
        self.conn = await connections.for_user(s, self.user.id)
        if self.conn is not None:
            self.stored = list(await bindings.for_connection(s, self.conn.id))
        self.runs = list(await google_settings.recent_runs(s, [b.id for b in self.stored], 20))

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.status == connections.CONNECTED

    # -- the checks, in seed 000's order -------------------------------------------------------

    def module(self) -> None:
        title = N_("Calendar module")
        if self.tenant.calendar_module_enabled:
            self.add(Check("module", title, PASS, Text(N_("The Calendar module is switched on."))))
        else:
            self.add(
                Check(
                    "module",
                    title,
                    FAIL,
                    Text(N_("The Calendar module is switched off for this company.")),
                    Text(N_("An admin switches it on in Admin → Integrations.")),
                    "calendar_module_disabled",
                )
            )

    def credentials(self) -> None:
        title = N_("Google credentials")
        if self.tenant.auth_mode == "service_account":
            if self.tenant.service_account_key is not None:
                self.add(
                    Check(
                        "credentials",
                        title,
                        PASS,
                        Text(
                            N_("The company's service account %(email)s is configured."),
                            {"email": self.tenant.service_account_email or "-"},
                        ),
                    )
                )
            else:
                self.add(
                    Check(
                        "credentials",
                        title,
                        FAIL,
                        Text(N_("No service-account key has been uploaded.")),
                        Text(N_("An admin uploads the key in Admin → Integrations and tests it.")),
                        errors.ServiceAccountKeyError.code,
                    )
                )
            return
        if self.settings.oauth_configured:
            self.add(
                Check(
                    "credentials",
                    title,
                    PASS,
                    Text(
                        N_("OAuth is configured (client %(client)s)."),
                        {"client": self.settings.google_client_id or ""},
                    ),
                )
            )
        else:
            self.add(
                Check(
                    "credentials",
                    title,
                    FAIL,
                    Text(N_("OAuth not configured: the server has no Google client id/secret.")),
                    Text(
                        N_(
                            "The server admin sets CALSYNC_GOOGLE_CLIENT_ID and "
                            "CALSYNC_GOOGLE_CLIENT_SECRET (from Google Cloud console → "
                            "Credentials) and registers %(redirect)s as an authorised "
                            "redirect URI, then restarts calsync."
                        ),
                        {"redirect": self._redirect_uri()},
                    ),
                    errors.OAuthNotConfigured.code,
                )
            )

    def _redirect_uri(self) -> str:
        return self.settings.public_url.rstrip("/") + "/oauth/google/callback"

    async def connection(self) -> None:
        title = N_("Connection and token")
        conn = self.conn
        connect = Text(N_("Connect Google in Settings → Google Calendar."))
        if self.tenant.auth_mode == "service_account":
            connect = Text(N_("Switch sync on in Settings → Google Calendar."))
        if conn is None or conn.status in (google_settings.REVOKED, "disconnected"):
            self.add(
                Check(
                    "connection", title, FAIL, Text(N_("Not connected.")), connect, "not_connected"
                )
            )
            return
        if conn.status == connections.NEEDS_REAUTH:
            code = conn.last_error_code or errors.GrantRevoked.code
            message = conn.last_error_message or errors.GrantRevoked.default_message
            self.add(
                Check(
                    "connection",
                    title,
                    FAIL,
                    Text(N_("Needs reconnect: %(reason)s"), {"reason": message}),
                    Text(remedy_for(code) or errors.GrantRevoked.remedy),
                    code,
                )
            )
            return
        if not self.live:
            self.add(Check("connection", title, SKIP, Text(N_("Not checked (offline)."))))
            return
        try:
            tokens = self.access.tokens(self.db, self.tenant, conn)
            # a real refresh: the cached token counts as rejected, so Google is asked
            await tokens.refresh(rejected=await tokens.access_token())
        except NotConnected:
            self.add(
                Check(
                    "connection", title, FAIL, Text(N_("Not connected.")), connect, "not_connected"
                )
            )
            return
        except errors.GoogleError as exc:
            if exc.needs_reauth:
                async with self.db.session() as s:
                    await connections.mark_error(
                        s,
                        conn.id,
                        status=connections.NEEDS_REAUTH,
                        code=exc.code,
                        message=exc.message,
                    )
                    await s.commit()
                conn.status = connections.NEEDS_REAUTH
            self.add(_error_check("connection", title, exc))
            return
        self.tokens = tokens
        self.add(
            Check(
                "connection",
                title,
                PASS,
                Text(N_("Connected; Google issued a fresh access token just now.")),
            )
        )

    def account(self) -> None:
        title = N_("Google account")
        conn = self.conn
        if conn is None or not conn.google_email or conn.status == google_settings.REVOKED:
            self.add(Check("account", title, SKIP, Text(N_("No Google account is connected."))))
            return
        email = conn.google_email
        if conn.auth_mode == "service_account" and email != self.user.email.lower():
            self.add(
                Check(
                    "account",
                    title,
                    FAIL,
                    Text(
                        N_("calsync acts as %(google)s, but the CRM e-mail is %(crm)s."),
                        {"google": email, "crm": self.user.email},
                    ),
                    Text(N_("With a service account the CRM e-mail must equal the Google e-mail.")),
                )
            )
            return
        self.add(
            Check("account", title, PASS, Text(N_("Connected as %(email)s."), {"email": email}))
        )

    def enabled(self) -> None:
        title = N_("Sync enabled")
        if self.conn is None or self.conn.status == google_settings.REVOKED:
            self.add(Check("enabled", title, SKIP, Text(N_("No Google account is connected."))))
        elif self.conn.sync_enabled and any(b.enabled for b in self.stored):
            self.add(Check("enabled", title, PASS, Text(N_("Sync is switched on."))))
        else:
            self.add(
                Check(
                    "enabled",
                    title,
                    FAIL,
                    Text(N_("Sync is switched off.")),
                    Text(N_("Switch sync on in Settings → Google Calendar.")),
                )
            )

    def direction(self) -> None:
        title = N_("Direction")
        if not self.stored:
            self.add(Check("direction", title, SKIP, Text(N_("No calendar is chosen yet."))))
            return
        direction = self.stored[0].direction
        texts = {
            bindings.TWO_WAY: N_("Two-way: changes flow both ways."),
            bindings.GOOGLE_TO_CRM: N_("One-way: only Google changes reach the CRM."),
            bindings.CRM_TO_GOOGLE: N_("One-way: only CRM changes reach Google."),
        }
        status = PASS if direction == bindings.TWO_WAY else WARN
        remedy = None
        if status == WARN:
            remedy = Text(N_("Choose two-way in Settings → Google Calendar if both should sync."))
        self.add(Check("direction", title, status, Text(texts.get(direction, direction)), remedy))

    async def calendars(self) -> None:
        title = N_("Calendars selected and accessible")
        choose = Text(N_("Choose calendars in Settings → Google Calendar."))
        if self.conn is None or self.conn.status == google_settings.REVOKED:
            self.add(Check("calendars", title, SKIP, Text(N_("No Google account is connected."))))
            return
        if not any(imports(b) for b in self.stored) and not any(exports(b) for b in self.stored):
            self.add(Check("calendars", title, FAIL, Text(N_("No calendar is chosen.")), choose))
            return
        for b in self.stored:
            if b.stage in (bindings.PAUSED, bindings.DISABLED):
                self.add(
                    Check(
                        "calendars",
                        title,
                        FAIL,
                        Text(
                            N_("%(calendar)s is paused: %(reason)s"),
                            {
                                "calendar": b.summary or b.google_calendar_id,
                                "reason": b.paused_reason or b.stage,
                            },
                        ),
                        Text(remedy_for(f"calsync.binding_{b.stage}") or choose.msgid),
                        f"calsync.binding_{b.stage}",
                    )
                )
                return
        if self.tokens is None:
            names = ", ".join(b.summary or b.google_calendar_id for b in self.stored)
            self.add(
                Check(
                    "calendars",
                    title,
                    SKIP,
                    Text(N_("Chosen: %(names)s (not checked at Google)."), {"names": names}),
                )
            )
            return
        client = self.access.client(self.tokens)
        try:
            self.live_calendars = [c for c in await client.calendars() if not c.deleted]
        except errors.GoogleError as exc:
            self.add(_error_check("calendars", title, exc))
            return
        finally:
            await client.aclose()
        known = {c.id: c for c in self.live_calendars}
        gone = [b for b in self.stored if b.google_calendar_id not in known]
        if gone:
            self.add(
                Check(
                    "calendars",
                    title,
                    FAIL,
                    Text(
                        N_("Google no longer lists %(names)s for this account."),
                        {"names": ", ".join(b.summary or b.google_calendar_id for b in gone)},
                    ),
                    Text(
                        N_(
                            "Check the calendar's sharing in Google Calendar, or choose another "
                            "calendar in Settings → Google Calendar."
                        )
                    ),
                    errors.NotFound.code,
                )
            )
            return
        for b in self.stored:
            if exports(b) and not known[b.google_calendar_id].writable:
                self.add(
                    Check(
                        "calendars",
                        title,
                        FAIL,
                        Text(
                            N_("calsync may not write to %(calendar)s."),
                            {"calendar": b.summary or b.google_calendar_id},
                        ),
                        Text(N_("Choose a calendar you own as the target for CRM entries.")),
                        "export_calendar_not_writable",
                    )
                )
                return
        self.add(
            Check(
                "calendars",
                title,
                PASS,
                Text.counted(
                    Nn_(
                        "%(num)s calendar chosen; Google lists it.",
                        "%(num)s calendars chosen; Google lists all of them.",
                    ),
                    len(self.stored),
                ),
            )
        )

    def channels(self) -> None:
        title = N_("Push channel (webhook)")
        importing = [b for b in self.stored if imports(b) and b.enabled]
        if not importing:
            self.add(Check("channel", title, SKIP, Text(N_("No calendar imports from Google."))))
            return
        minutes = max(1, self.tenant.poll_interval_seconds // 60)
        for b in importing:
            expires = _aware(b.channel_expires_at)
            name = b.summary or b.google_calendar_id
            if not b.channel_id or expires is None or expires <= self.now:
                self.add(
                    Check(
                        "channel",
                        title,
                        WARN,
                        Text.counted(
                            Nn_(
                                "No active push channel for %(calendar)s: Google changes arrive "
                                "by polling every minute.",
                                "No active push channel for %(calendar)s: Google changes arrive "
                                "by polling every %(num)s minutes.",
                            ),
                            minutes,
                            {"calendar": name},
                        ),
                        Text(
                            N_(
                                "Push channels are registered on connect; make sure the public "
                                "URL is https and reachable, then reconnect."
                            )
                        ),
                    )
                )
                return
            if expires - self.now < CHANNEL_MARGIN:
                self.add(
                    Check(
                        "channel",
                        title,
                        WARN,
                        Text(
                            N_("The push channel for %(calendar)s expires at %(when)s."),
                            {"calendar": name, "when": expires},
                        ),
                        Text(
                            N_(
                                "calsync renews channels before they expire; if this stays, "
                                "check that the worker is running."
                            )
                        ),
                    )
                )
                return
        self.add(
            Check(
                "channel",
                title,
                PASS,
                Text.counted(
                    Nn_(
                        "Google pushes changes in real time (%(num)s channel).",
                        "Google pushes changes in real time (%(num)s channels).",
                    ),
                    len(importing),
                ),
            )
        )

    async def public_url(self) -> None:
        title = N_("Webhook address (public URL)")
        url = self.settings.public_url.rstrip("/")
        if self.settings.sandbox and not url.lower().startswith("https://"):
            self.add(
                Check(
                    "webhook",
                    title,
                    SANDBOX,
                    Text(
                        N_(
                            "The public URL %(url)s is not https. That is fine in the sandbox: "
                            "its Google emulator delivers push notifications over http. Real "
                            "Google needs an https address."
                        ),
                        {"url": url},
                    ),
                )
            )
            return
        if not url.lower().startswith("https://"):
            self.add(
                Check(
                    "webhook",
                    title,
                    FAIL,
                    Text(
                        N_(
                            "The public URL %(url)s is not https: Google delivers push "
                            "notifications only to https addresses."
                        ),
                        {"url": url},
                    ),
                    Text(
                        N_(
                            "Set CALSYNC_PUBLIC_URL to calsync's https address (with a valid "
                            "certificate) and make sure the firewall lets Google reach "
                            "%(path)s."
                        ),
                        {"path": "/webhooks/google"},
                    ),
                    "webhook_not_https",
                )
            )
            return
        if not self.live:
            self.add(Check("webhook", title, SKIP, Text(N_("Not checked (offline)."))))
            return
        try:
            client = self.http or httpx.AsyncClient(timeout=5.0)
            try:
                resp = await client.get(url + "/healthz", timeout=5.0)
            finally:
                if self.http is None:
                    await client.aclose()
            ok = resp.status_code == 200
            detail = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            ok, detail = False, type(exc).__name__
        if ok:
            self.add(
                Check("webhook", title, PASS, Text(N_("%(url)s answers over https."), {"url": url}))
            )
        else:
            self.add(
                Check(
                    "webhook",
                    title,
                    FAIL,
                    Text(
                        N_("%(url)s does not answer (%(detail)s)."), {"url": url, "detail": detail}
                    ),
                    Text(
                        N_(
                            "Check DNS, the TLS certificate and the firewall: Google must reach "
                            "calsync at this address."
                        )
                    ),
                    "webhook_unreachable",
                )
            )

    def last_sync(self) -> None:
        title = N_("Last sync")
        if not self.stored:
            self.add(Check("last_sync", title, SKIP, Text(N_("No calendar is chosen yet."))))
            return
        finished = [r for r in self.runs if r.outcome != "running"]
        if not finished:
            self.add(
                Check(
                    "last_sync",
                    title,
                    WARN,
                    Text(N_("calsync has not synced yet.")),
                    Text(N_("Press Sync now in Settings → Google Calendar.")),
                )
            )
            return
        last = finished[0]
        when = _aware(last.finished_at or last.started_at) or self.now
        age_minutes = int((self.now - when).total_seconds() // 60)
        params = {"outcome": last.outcome}
        if last.outcome not in ("ok", "partial", "skipped"):
            failing = [r for r in finished if r.outcome not in ("ok", "partial", "skipped")]
            since = failing[-1].started_at
            for r in finished:
                if r.outcome in ("ok", "partial", "skipped"):
                    break
                since = r.started_at
            self.add(
                Check(
                    "last_sync",
                    title,
                    FAIL,
                    Text.counted(
                        Nn_(
                            "The last sync, %(num)s minute ago: %(outcome)s: %(error)s "
                            "(failing since %(since)s).",
                            "The last sync, %(num)s minutes ago: %(outcome)s: %(error)s "
                            "(failing since %(since)s).",
                        ),
                        age_minutes,
                        {**params, "error": last.error_message or "-", "since": since},
                    ),
                    Text(
                        remedy_for(last.error_code)
                        or N_("Press Sync now; if it fails again, send the support report below.")
                    ),
                    last.error_code,
                )
            )
            return
        stale = max(3 * self.tenant.poll_interval_seconds, 3600)
        if (self.now - when).total_seconds() > stale:
            self.add(
                Check(
                    "last_sync",
                    title,
                    WARN,
                    Text.counted(
                        Nn_(
                            "The last sync was %(num)s minute ago.",
                            "The last sync was %(num)s minutes ago.",
                        ),
                        age_minutes,
                        params,
                    ),
                    Text(
                        N_("Press Sync now; if syncs stay rare, check that the worker is running.")
                    ),
                )
            )
            return
        self.add(
            Check(
                "last_sync",
                title,
                PASS,
                Text.counted(
                    Nn_(
                        "The last sync, %(num)s minute ago: %(outcome)s.",
                        "The last sync, %(num)s minutes ago: %(outcome)s.",
                    ),
                    age_minutes,
                    params,
                ),
            )
        )

    async def rate_limits(self, s: AsyncSession) -> None:
        title = N_("Rate limiting")
        since = self.now - timedelta(days=1)
        ids = [b.id for b in self.stored]
        hits = 0
        if ids:
            hits = int(
                await s.scalar(
                    select(func.count())
                    .select_from(SyncRun)
                    .where(
                        SyncRun.binding_id.in_(ids),
                        SyncRun.started_at >= since,
                        SyncRun.error_code.in_(RATE_CODES),
                    )
                )
                or 0
            )
            hits += int(
                await s.scalar(
                    select(func.count())
                    .select_from(SyncIssue)
                    .where(
                        SyncIssue.binding_id.in_(ids),
                        SyncIssue.last_seen_at >= since,
                        SyncIssue.code.in_(RATE_CODES),
                    )
                )
                or 0
            )
        if hits:
            self.add(
                Check(
                    "rate_limit",
                    title,
                    WARN,
                    Text.counted(
                        Nn_(
                            "Google limited calsync once in the last 24 hours.",
                            "Google limited calsync %(num)s times in the last 24 hours.",
                        ),
                        hits,
                    ),
                    Text(errors.RateLimited.remedy),
                    errors.RateLimited.code,
                )
            )
        else:
            self.add(
                Check("rate_limit", title, PASS, Text(N_("No rate limiting in the last 24 hours.")))
            )

    async def parked(self, s: AsyncSession) -> None:
        title = N_("Entries that could not sync")
        ids = [b.id for b in self.stored]
        issues = list(await google_settings.open_issues(s, ids)) if ids else []
        parked = 0
        if ids:
            parked = int(
                await s.scalar(
                    select(func.count())
                    .select_from(EventLink)
                    .where(EventLink.binding_id.in_(ids), EventLink.state == "parked")
                )
                or 0
            )
        count = max(len(issues), parked)
        if count:
            first = issues[0] if issues else None
            self.add(
                Check(
                    "parked",
                    title,
                    WARN,
                    Text(
                        N_("Entries that could not sync: %(count)s; the latest: %(message)s"),
                        {"count": count, "message": first.message if first else "-"},
                    ),
                    Text(
                        (first.remedy if first and first.remedy else None)
                        or N_("See the open issues in Settings → Google Calendar.")
                    ),
                    first.code if first else None,
                )
            )
        else:
            self.add(Check("parked", title, PASS, Text(N_("Every entry synced."))))

    async def duplicates(self, s: AsyncSession) -> None:
        title = N_("Duplicate connections")
        conn = self.conn
        if conn is None or not conn.google_email or conn.status == google_settings.REVOKED:
            self.add(Check("duplicates", title, SKIP, Text(N_("No Google account is connected."))))
            return
        others = (
            await s.scalars(
                select(GoogleConnection).where(
                    GoogleConnection.tenant_id == self.tenant.id,
                    GoogleConnection.google_email == conn.google_email,
                    GoogleConnection.id != conn.id,
                    GoogleConnection.status != google_settings.REVOKED,
                )
            )
        ).all()
        if others:
            self.add(
                Check(
                    "duplicates",
                    title,
                    FAIL,
                    Text.counted(
                        Nn_(
                            "The Google account %(email)s is also connected to %(num)s other "
                            "CRM user.",
                            "The Google account %(email)s is also connected to %(num)s other "
                            "CRM users.",
                        ),
                        len(others),
                        {"email": conn.google_email},
                    ),
                    Text(
                        N_(
                            "Disconnect Google for the other user: one Google account syncs "
                            "with one CRM user, otherwise entries are duplicated."
                        )
                    ),
                    "duplicate_connection",
                )
            )
            return
        mine = [b.google_calendar_id for b in self.stored if imports(b)]
        twice: Sequence[CalendarBinding] = []
        if mine:
            twice = (
                await s.scalars(
                    select(CalendarBinding).where(
                        CalendarBinding.tenant_id == self.tenant.id,
                        CalendarBinding.google_calendar_id.in_(mine),
                        CalendarBinding.connection_id != conn.id,
                        CalendarBinding.role.in_((bindings.IMPORT, bindings.BOTH)),
                        CalendarBinding.enabled.is_(True),
                    )
                )
            ).all()
        if twice:
            self.add(
                Check(
                    "duplicates",
                    title,
                    WARN,
                    Text(
                        N_("The calendar %(calendar)s is also imported by another CRM user."),
                        {"calendar": twice[0].summary or twice[0].google_calendar_id},
                    ),
                    Text(
                        N_(
                            "Let one user import a shared calendar; the others see the entries "
                            "as participants."
                        )
                    ),
                    "calendar_imported_twice",
                )
            )
            return
        self.add(
            Check(
                "duplicates",
                title,
                PASS,
                Text(N_("No other connection uses this account or its calendars.")),
            )
        )

    async def other_sync(self) -> None:
        title = N_("Other tools writing to the calendar")
        importing = [b for b in self.stored if imports(b)]
        if not importing or self.tokens is None:
            self.add(Check("other_sync", title, SKIP, Text(N_("Not checked."))))
            return
        client = self.access.client(self.tokens)
        groups: dict[tuple[str, str, str], list[Event]] = defaultdict(list)
        try:
            for b in importing:
                pages = client.list_events(
                    b.google_calendar_id,
                    time_min=self.now - timedelta(days=self.tenant.lookback_days),
                    time_max=self.now + timedelta(days=DUPLICATE_SCAN_DAYS),
                    single_events=True,
                    show_deleted=False,
                    max_results=2500,
                )
                count = 0
                async for page in pages:
                    for event in page.items:
                        if event.status == "cancelled" or event.start is None or event.end is None:
                            continue
                        key = (
                            (event.summary or "").strip().lower(),
                            _when(event.start),
                            _when(event.end),
                        )
                        groups[key].append(event)
                    count += 1
                    if count >= DUPLICATE_SCAN_PAGES:
                        break
        except errors.GoogleError as exc:
            self.add(Check("other_sync", title, SKIP, Text(exc.message), code=exc.code))
            return
        finally:
            await client.aclose()
        suspicious = []
        for key, events in groups.items():
            foreign = [e for e in events if not _ours(e)]
            if len(events) > 1 and len(foreign) >= 1 and key[0]:
                suspicious.append((key, len(events)))
        if suspicious:
            (subject, start, _), count = suspicious[0]
            self.add(
                Check(
                    "other_sync",
                    title,
                    WARN,
                    Text.counted(
                        Nn_(
                            "%(num)s set of identical entries, e.g. %(count)s × "
                            "“%(subject)s” at %(start)s: another sync (a phone, another tool) "
                            "may be copying into this calendar.",
                            "%(num)s sets of identical entries, e.g. %(count)s × "
                            "“%(subject)s” at %(start)s: another sync (a phone, another tool) "
                            "may be copying into this calendar.",
                        ),
                        len(suspicious),
                        # a time, shown in the reader's zone; an all-day date stays as it is
                        {"count": count, "subject": subject, "start": _moment(start)},
                    ),
                    Text(
                        N_(
                            "Switch off other tools that sync the same calendar with the CRM, "
                            "or give calsync a separate calendar for CRM entries."
                        )
                    ),
                    "duplicates_in_calendar",
                )
            )
        else:
            self.add(
                Check(
                    "other_sync",
                    title,
                    PASS,
                    Text(N_("No signs of another sync duplicating entries.")),
                )
            )


def _moment(value: str) -> datetime | str:
    return datetime.fromisoformat(value) if "T" in value else value


def _when(value: Any) -> str:
    if value.date is not None:
        return str(value.date)
    if value.date_time is not None:
        return str(value.date_time.astimezone(UTC).isoformat())
    return ""


def _ours(event: Event) -> bool:
    props = event.extended_properties
    return bool(props and props.private and ACTIVITY_KEY in props.private)


async def diagnose(
    db: Database,
    access: GoogleAccess,
    settings: Settings,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    live: bool = True,
    http: httpx.AsyncClient | None = None,
) -> Diagnosis:
    """Run every check for one user; `live` talks to Google and the public URL."""
    async with db.session() as s:
        tenant = await tenants.get(s, tenant_id)
        user = await users.get(s, tenant_id, user_id)
        if tenant is None or user is None:
            raise LookupError("no such user")
        doctor = _Doctor(db, access, settings, tenant, user, live=live, http=http)
        await doctor.load(s)
        await s.commit()
    doctor.module()
    doctor.credentials()
    await doctor.connection()
    doctor.account()
    doctor.enabled()
    doctor.direction()
    await doctor.calendars()
    doctor.channels()
    await doctor.public_url()
    doctor.last_sync()
    async with db.session() as s:
        await doctor.rate_limits(s)
        await doctor.parked(s)
        await doctor.duplicates(s)
    await doctor.other_sync()
    return Diagnosis(
        tenant=tenant,
        user=user,
        connection=doctor.conn,
        checks=doctor.checks,
        checked_at=doctor.now,
        recent_runs=doctor.runs,
        settings=settings,
    )


# -- the terminal ---------------------------------------------------------------------------

_STYLE = {PASS: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim", SANDBOX: "cyan"}


def print_diagnosis(diagnosis: Diagnosis, console: Any = None) -> None:
    """A Rich table of the checks, then the support report."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"calsync doctor — {diagnosis.user.email} ({diagnosis.tenant.name})")
    table.add_column("check")
    table.add_column("result")
    table.add_column("details")
    table.add_column("what to do")
    for check in diagnosis.checks:
        detail = check.detail.render()
        if check.code and check.status == FAIL:
            detail += f" [{check.code}]"
        remedy = check.remedy.render() if check.remedy and check.status in (FAIL, WARN) else ""
        style = _STYLE.get(check.status, "")
        table.add_row(
            check.title, f"[{style}]{check.status.upper()}[/]", detail, remedy, style=None
        )
    console.print(table)
    console.print("\n[bold]Support report[/] (secrets redacted):")
    console.print(diagnosis.report(), markup=False, highlight=False)


async def run_cli(settings: Settings, db: Database, tenant: str, email: str, *, live: bool) -> int:
    """`calsync doctor`: 0 when nothing fails, 1 when a check fails, 2 for an unknown user."""
    from rich.console import Console

    from calsync.google.retry import RetryPolicy

    console = Console()
    access = GoogleAccess(settings, retry=RetryPolicy(max_attempts=2))
    try:
        async with db.session() as s:
            found = await tenants.find(s, tenant)
            member = await users.by_email(s, found.id, email) if found else None
            await s.commit()
        if found is None or member is None:
            console.print(f"[red]no user {email!r} in tenant {tenant!r}[/]")
            return 2
        diagnosis = await diagnose(db, access, settings, found.id, member.id, live=live)
        print_diagnosis(diagnosis, console)
        return 1 if diagnosis.failed else 0
    finally:
        await access.aclose()
        await db.dispose()
