"""The checks that read only what calsync stored: the company's settings, the user's
connection and calendars (bindings), the recent runs and issues. They run offline
(`calsync doctor --offline`) and decide whether the live checks (live.py) ask Google at all.

Each check returns one `Check`; checklist.py runs them in seed 000's order.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from calsync.domain.direction import Direction
from calsync.google import errors
from calsync.i18n import N_, Nn_
from calsync.store import diagnostics, google_settings
from calsync.store.statuses import AuthMode, BindingStage, Code, ConnectionStatus, RunOutcome
from calsync.sync.codes import remedy_for

from .report import FAIL, PASS, SKIP, WARN, Check, Text, aware
from .subject import Subject, exports, imports, name_of

RATE_CODES = (errors.RateLimited.code, errors.QuotaExceeded.code)
CHANNEL_MARGIN = timedelta(hours=1)
# titles of the checks that live.py finishes
CONNECTION = N_("Connection and token")
CALENDARS = N_("Calendars selected and accessible")
NOT_CONNECTED = Text(N_("Not connected."))


def connect_remedy(subject: Subject) -> Text:
    if subject.tenant.auth_mode == AuthMode.SERVICE_ACCOUNT:
        return Text(N_("Switch sync on in Settings → Google Calendar."))
    return Text(N_("Connect Google in Settings → Google Calendar."))


def module(subject: Subject) -> Check:
    title = N_("Calendar module")
    if subject.tenant.calendar_module_enabled:
        return Check("module", title, PASS, Text(N_("The Calendar module is switched on.")))
    else:
        return Check(
            "module",
            title,
            FAIL,
            Text(N_("The Calendar module is switched off for this company.")),
            Text(N_("An admin switches it on in Admin → Integrations.")),
            "calendar_module_disabled",
        )


def credentials(subject: Subject) -> Check:
    title = N_("Google credentials")
    if subject.tenant.auth_mode == AuthMode.SERVICE_ACCOUNT:
        if subject.tenant.service_account_key is not None:
            return Check(
                "credentials",
                title,
                PASS,
                Text(
                    N_("The company's service account %(email)s is configured."),
                    {"email": subject.tenant.service_account_email or "-"},
                ),
            )
        else:
            return Check(
                "credentials",
                title,
                FAIL,
                Text(N_("No service-account key has been uploaded.")),
                Text(N_("An admin uploads the key in Admin → Integrations and tests it.")),
                errors.ServiceAccountKeyError.code,
            )
    if subject.settings.oauth_configured:
        return Check(
            "credentials",
            title,
            PASS,
            Text(
                N_("OAuth is configured (client %(client)s)."),
                {"client": subject.settings.google_client_id or ""},
            ),
        )
    else:
        return Check(
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
                {"redirect": _redirect_uri(subject)},
            ),
            errors.OAuthNotConfigured.code,
        )


def _redirect_uri(subject: Subject) -> str:
    return subject.settings.public_url.rstrip("/") + "/oauth/google/callback"


def connection(subject: Subject) -> Check | None:
    """What the stored status says; None: only a token refresh at Google can tell
    (`live.connection`)."""
    conn = subject.conn
    if conn is None or subject.no_account:
        return Check(
            "connection", CONNECTION, FAIL, NOT_CONNECTED, connect_remedy(subject), "not_connected"
        )
    if conn.status == ConnectionStatus.NEEDS_REAUTH:
        code = conn.last_error_code or errors.GrantRevoked.code
        message = conn.last_error_message or errors.GrantRevoked.default_message
        return Check(
            "connection",
            CONNECTION,
            FAIL,
            Text(N_("Needs reconnect: %(reason)s"), {"reason": message}),
            Text(remedy_for(code) or errors.GrantRevoked.remedy),
            code,
        )
    if not subject.live:
        return Check("connection", CONNECTION, SKIP, Text(N_("Not checked (offline).")))
    return None


def account(subject: Subject) -> Check:
    title = N_("Google account")
    conn = subject.conn
    if conn is None or not conn.google_email or subject.no_account:
        return Check("account", title, SKIP, Text(N_("No Google account is connected.")))
    email = conn.google_email
    if conn.auth_mode == AuthMode.SERVICE_ACCOUNT and email != subject.user.email.lower():
        return Check(
            "account",
            title,
            FAIL,
            Text(
                N_("calsync acts as %(google)s, but the CRM e-mail is %(crm)s."),
                {"google": email, "crm": subject.user.email},
            ),
            Text(N_("With a service account the CRM e-mail must equal the Google e-mail.")),
        )
    return Check("account", title, PASS, Text(N_("Connected as %(email)s."), {"email": email}))


def enabled(subject: Subject) -> Check:
    title = N_("Sync enabled")
    if subject.conn is None or subject.no_account:
        return Check("enabled", title, SKIP, Text(N_("No Google account is connected.")))
    elif subject.conn.sync_enabled and any(b.enabled for b in subject.stored):
        return Check("enabled", title, PASS, Text(N_("Sync is switched on.")))
    else:
        return Check(
            "enabled",
            title,
            FAIL,
            Text(N_("Sync is switched off.")),
            Text(N_("Switch sync on in Settings → Google Calendar.")),
        )


def direction(subject: Subject) -> Check:
    title = N_("Direction")
    if not subject.stored:
        return Check("direction", title, SKIP, Text(N_("No calendar is chosen yet.")))
    direction = subject.stored[0].direction
    texts: dict[str, str] = {
        Direction.TWO_WAY: N_("Two-way: changes flow both ways."),
        Direction.GOOGLE_TO_CRM: N_("One-way: only Google changes reach the CRM."),
        Direction.CRM_TO_GOOGLE: N_("One-way: only CRM changes reach Google."),
    }
    status = PASS if direction == Direction.TWO_WAY else WARN
    remedy = None
    if status == WARN:
        remedy = Text(N_("Choose two-way in Settings → Google Calendar if both should sync."))
    return Check("direction", title, status, Text(texts.get(direction, direction)), remedy)


def calendars(subject: Subject) -> Check | None:
    """The calendars as stored; None: Google's calendar list decides (`live.calendars`)."""
    title = CALENDARS
    choose = Text(N_("Choose calendars in Settings → Google Calendar."))
    if subject.no_account:
        return Check("calendars", title, SKIP, Text(N_("No Google account is connected.")))
    if not any(imports(b) for b in subject.stored) and not any(exports(b) for b in subject.stored):
        return Check("calendars", title, FAIL, Text(N_("No calendar is chosen.")), choose)
    for b in subject.stored:
        if b.stage in (BindingStage.PAUSED, BindingStage.DISABLED):
            # a disabled stage (calendar gone, write access lost) is not the user's off switch
            code = (
                Code.BINDING_PAUSED
                if b.stage == BindingStage.PAUSED
                else Code.BINDING_DISABLED_STAGE
            )
            return Check(
                "calendars",
                title,
                FAIL,
                Text(
                    N_("%(calendar)s is paused: %(reason)s"),
                    {"calendar": name_of(b), "reason": b.paused_reason or b.stage},
                ),
                Text(remedy_for(code) or choose.msgid),
                code.value,
            )
    if subject.tokens is None:
        names = ", ".join(name_of(b) for b in subject.stored)
        return Check(
            "calendars",
            title,
            SKIP,
            Text(N_("Chosen: %(names)s (not checked at Google)."), {"names": names}),
        )
    return None


def channels(subject: Subject) -> Check:
    title = N_("Push channel (webhook)")
    importing = [b for b in subject.stored if imports(b) and b.enabled]
    if not importing:
        return Check("channel", title, SKIP, Text(N_("No calendar imports from Google.")))
    minutes = max(1, subject.tenant.poll_interval_seconds // 60)
    live = 0
    for b in importing:
        # the calendar's channel that lasts longest, of the first and its twin
        ends = [
            when
            for channel_id, at in (
                (b.channel_id, b.channel_expires_at),
                (b.twin_channel_id, b.twin_channel_expires_at),
            )
            if channel_id and (when := aware(at)) is not None and when > subject.now
        ]
        live += len(ends)
        expires = max(ends, default=None)
        name = b.summary or b.google_calendar_id
        if expires is None:
            return Check(
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
        if expires - subject.now < CHANNEL_MARGIN:
            return Check(
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
    return Check(
        "channel",
        title,
        PASS,
        Text.counted(
            Nn_(
                "Google pushes changes in real time (%(num)s channel).",
                "Google pushes changes in real time (%(num)s channels).",
            ),
            live,
        ),
    )


def last_sync(subject: Subject) -> Check:
    title = N_("Last sync")
    if not subject.stored:
        return Check("last_sync", title, SKIP, Text(N_("No calendar is chosen yet.")))
    finished = [r for r in subject.runs if r.outcome != RunOutcome.RUNNING]
    if not finished:
        return Check(
            "last_sync",
            title,
            WARN,
            Text(N_("calsync has not synced yet.")),
            Text(N_("Press Sync now in Settings → Google Calendar.")),
        )
    last = finished[0]
    when = aware(last.finished_at or last.started_at) or subject.now
    age_minutes = int((subject.now - when).total_seconds() // 60)
    params = {"outcome": last.outcome}
    if last.outcome not in ("ok", "partial", "skipped"):
        failing = [r for r in finished if r.outcome not in ("ok", "partial", "skipped")]
        since = failing[-1].started_at
        for r in finished:
            if r.outcome in ("ok", "partial", "skipped"):
                break
            since = r.started_at
        return Check(
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
    stale = max(3 * subject.tenant.poll_interval_seconds, 3600)
    if (subject.now - when).total_seconds() > stale:
        return Check(
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
            Text(N_("Press Sync now; if syncs stay rare, check that the worker is running.")),
        )
    return Check(
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


async def rate_limits(subject: Subject, session: AsyncSession) -> Check:
    title = N_("Rate limiting")
    since = subject.now - timedelta(days=1)
    hits = await diagnostics.count_errors_since(session, subject.binding_ids, since, RATE_CODES)
    if hits:
        return Check(
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
    else:
        return Check("rate_limit", title, PASS, Text(N_("No rate limiting in the last 24 hours.")))


async def parked(subject: Subject, session: AsyncSession) -> Check:
    title = N_("Entries that could not sync")
    ids = subject.binding_ids
    issues = list(await google_settings.open_issues(session, ids)) if ids else []
    count = max(len(issues), await diagnostics.count_parked(session, ids))
    if count:
        first = issues[0] if issues else None
        return Check(
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
    else:
        return Check("parked", title, PASS, Text(N_("Every entry synced.")))


async def duplicates(subject: Subject, session: AsyncSession) -> Check:
    title = N_("Duplicate connections")
    conn = subject.conn
    if conn is None or not conn.google_email or subject.no_account:
        return Check("duplicates", title, SKIP, Text(N_("No Google account is connected.")))
    others = await diagnostics.same_account_elsewhere(
        session, subject.tenant.id, conn.google_email, conn.id
    )
    if others:
        return Check(
            "duplicates",
            title,
            FAIL,
            Text.counted(
                Nn_(
                    "The Google account %(email)s is also connected to %(num)s other CRM user.",
                    "The Google account %(email)s is also connected to %(num)s other CRM users.",
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
    mine = [b.google_calendar_id for b in subject.stored if imports(b)]
    twice = await diagnostics.imported_elsewhere(session, subject.tenant.id, mine, conn.id)
    if twice:
        return Check(
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
    return Check(
        "duplicates",
        title,
        PASS,
        Text(N_("No other connection uses this account or its calendars.")),
    )
