"""The checks that ask Google and the public URL: a real token refresh, the account's calendar
list, the webhook address answering over https, and a scan of the imported calendars for
another tool copying entries in. They run after the stored checks (stored.py) said there is
something to ask about; `calsync doctor --offline` skips them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from calsync import runtime
from calsync.google import errors
from calsync.google.models import Event
from calsync.i18n import N_, Nn_
from calsync.store import connections
from calsync.store.statuses import ConnectionStatus
from calsync.sync.mapping import ACTIVITY_KEY
from calsync.sync.tokens import NotConnected

from .report import FAIL, PASS, SANDBOX, SKIP, WARN, Check, Text
from .stored import CALENDARS, CONNECTION, NOT_CONNECTED, connect_remedy
from .subject import Subject, exports, imports, name_of

DUPLICATE_SCAN_DAYS = 90
DUPLICATE_SCAN_PAGES = 4


def _error_check(key: str, title: str, exc: errors.GoogleError) -> Check:
    return Check(key, title, FAIL, Text(exc.message), Text(exc.remedy), exc.code)


async def connection(subject: Subject) -> Check:
    """A real refresh: the cached token counts as rejected, so Google is asked. A refused grant
    marks the connection needs_reauth, as a sync would."""
    conn = subject.conn
    assert conn is not None  # stored.connection answered otherwise
    try:
        tokens = subject.access.tokens(subject.db, subject.tenant, conn)
        await tokens.refresh(rejected=await tokens.access_token())
    except NotConnected:
        return Check(
            "connection", CONNECTION, FAIL, NOT_CONNECTED, connect_remedy(subject), "not_connected"
        )
    except errors.GoogleError as exc:
        if exc.needs_reauth:
            async with subject.db.session() as session:
                await connections.mark_needs_reauth(
                    session, conn.id, code=exc.code, message=exc.message
                )
                await session.commit()
            conn.status = ConnectionStatus.NEEDS_REAUTH
        return _error_check("connection", CONNECTION, exc)
    subject.tokens = tokens
    return Check(
        "connection",
        CONNECTION,
        PASS,
        Text(N_("Connected; Google issued a fresh access token just now.")),
    )


async def calendars(subject: Subject) -> Check:
    """Google still lists every chosen calendar, and calsync may write where CRM entries go."""
    title = CALENDARS
    assert subject.tokens is not None  # stored.calendars answered otherwise
    client = subject.access.client(subject.tokens)
    try:
        listed = [c for c in await client.calendars() if not c.deleted]
    except errors.GoogleError as exc:
        return _error_check("calendars", title, exc)
    finally:
        await client.aclose()
    known = {c.id: c for c in listed}
    gone = [b for b in subject.stored if b.google_calendar_id not in known]
    if gone:
        return Check(
            "calendars",
            title,
            FAIL,
            Text(
                N_("Google no longer lists %(names)s for this account."),
                {"names": ", ".join(name_of(b) for b in gone)},
            ),
            Text(
                N_(
                    "Check the calendar's sharing in Google Calendar, or choose another "
                    "calendar in Settings → Google Calendar."
                )
            ),
            errors.NotFound.code,
        )
    for b in subject.stored:
        if exports(b) and not known[b.google_calendar_id].writable:
            return Check(
                "calendars",
                title,
                FAIL,
                Text(
                    N_("calsync may not write to %(calendar)s."),
                    {"calendar": name_of(b)},
                ),
                Text(N_("Choose a calendar you own as the target for CRM entries.")),
                "export_calendar_not_writable",
            )
    return Check(
        "calendars",
        title,
        PASS,
        Text.counted(
            Nn_(
                "%(num)s calendar chosen; Google lists it.",
                "%(num)s calendars chosen; Google lists all of them.",
            ),
            len(subject.stored),
        ),
    )


async def public_url(subject: Subject) -> Check:
    title = N_("Webhook address (public URL)")
    url = subject.settings.public_url.rstrip("/")
    if subject.settings.sandbox and not url.lower().startswith("https://"):
        return Check(
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
    if not url.lower().startswith("https://"):
        return Check(
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
    if not subject.live:
        return Check("webhook", title, SKIP, Text(N_("Not checked (offline).")))
    try:
        client = subject.http or runtime.http_client(timeout=5.0)
        try:
            resp = await client.get(url + "/healthz", timeout=5.0)
        finally:
            if subject.http is None:
                await client.aclose()
        ok = resp.status_code == 200
        detail = f"HTTP {resp.status_code}"
    except httpx.HTTPError as exc:
        ok, detail = False, type(exc).__name__
    if ok:
        return Check("webhook", title, PASS, Text(N_("%(url)s answers over https."), {"url": url}))
    else:
        return Check(
            "webhook",
            title,
            FAIL,
            Text(N_("%(url)s does not answer (%(detail)s)."), {"url": url, "detail": detail}),
            Text(
                N_(
                    "Check DNS, the TLS certificate and the firewall: Google must reach "
                    "calsync at this address."
                )
            ),
            "webhook_unreachable",
        )


async def other_sync(subject: Subject) -> Check:
    title = N_("Other tools writing to the calendar")
    importing = [b for b in subject.stored if imports(b)]
    if not importing or subject.tokens is None:
        return Check("other_sync", title, SKIP, Text(N_("Not checked.")))
    client = subject.access.client(subject.tokens)
    groups: dict[tuple[str, str, str], list[Event]] = defaultdict(list)
    try:
        for b in importing:
            pages = client.list_events(
                b.google_calendar_id,
                time_min=subject.now - timedelta(days=subject.tenant.lookback_days),
                time_max=subject.now + timedelta(days=DUPLICATE_SCAN_DAYS),
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
        return Check("other_sync", title, SKIP, Text(exc.message), code=exc.code)
    finally:
        await client.aclose()
    suspicious = []
    for key, events in groups.items():
        foreign = [e for e in events if not _ours(e)]
        if len(events) > 1 and len(foreign) >= 1 and key[0]:
            suspicious.append((key, len(events)))
    if suspicious:
        (summary, start, _), count = suspicious[0]
        return Check(
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
                {"count": count, "subject": summary, "start": _moment(start)},
            ),
            Text(
                N_(
                    "Switch off other tools that sync the same calendar with the CRM, "
                    "or give calsync a separate calendar for CRM entries."
                )
            ),
            "duplicates_in_calendar",
        )
    else:
        return Check(
            "other_sync",
            title,
            PASS,
            Text(N_("No signs of another sync duplicating entries.")),
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
