"""The emulator's whole state: plain dataclasses in one `World`, shared by every route module.

Handlers run on one asyncio loop and never await while they mutate the world, so a request's
changes are atomic with respect to other requests; `World.lock` additionally guards callers on
other threads (in-process use from synchronous tests).
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock

SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"
SCOPE_CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"
SCOPE_EVENTS_READONLY = "https://www.googleapis.com/auth/calendar.events.readonly"
SCOPE_EMAIL = "https://www.googleapis.com/auth/userinfo.email"
SCOPE_PROFILE = "https://www.googleapis.com/auth/userinfo.profile"
DEFAULT_SCOPES = frozenset({SCOPE_CALENDAR, SCOPE_EMAIL, SCOPE_PROFILE, "openid"})


@dataclass
class Account:
    email: str
    name: str
    primary_calendar_id: str
    is_service_account: bool = False


@dataclass
class Calendar:
    id: str
    summary: str
    time_zone: str
    owner: str
    description: str = ""
    location: str = ""
    acl: dict[str, str] = field(default_factory=dict)  # email -> owner|writer|reader|freeBusyReader
    etag_seq: int = 0
    # sync tokens issued below this sequence answer 410 fullSyncRequired
    sync_floor_seq: int = 0
    deleted: bool = False


@dataclass
class CalendarListEntry:
    calendar_id: str
    hidden: bool = False
    selected: bool = True
    color_id: str = "14"
    summary_override: str | None = None
    deleted: bool = False
    seq: int = 0
    # custom colours (colorRgbFormat=true) and the person's reminders; None = Google's defaults
    background_color: str | None = None
    foreground_color: str | None = None
    default_reminders: list[dict[str, Any]] | None = None
    notification_settings: dict[str, Any] | None = None


@dataclass
class StoredEvent:
    """An event in one calendar, kept in Google's wire format (`data`), with bookkeeping."""

    calendar_id: str
    data: dict[str, Any]
    seq: int  # world sequence of the last change: drives sync tokens
    created_seq: int  # stable list order
    updated_ts: float  # same instant as data["updated"]


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class Grant:
    """What a person allowed a client: survives token refreshes, dies with revoke or a password change."""

    id: str
    email: str
    client_id: str
    scopes: set[str]
    revoked: bool = False


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    email: str
    scopes: frozenset[str]
    code_challenge: str | None
    code_challenge_method: str | None
    offline: bool
    prompt_consent: bool
    grant_id: str
    expires_at: float
    used: bool = False
    nonce: str | None = None  # OpenID Connect: echoed in the ID token of the exchange


@dataclass
class AccessToken:
    token: str
    email: str  # whose calendars it acts on
    scopes: frozenset[str]
    client_id: str
    expires_at: float
    grant_id: str | None = None  # None: issued by the control API or a service-account assertion
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str
    email: str
    client_id: str
    scopes: frozenset[str]
    grant_id: str
    revoked: bool = False


@dataclass
class ServiceAccount:
    client_email: str
    client_id: str  # numeric, what a Workspace admin authorises for domain-wide delegation
    #: a state file saved before `keys` held one key here; it moves into `keys` (then "")
    private_key_id: str = ""
    public_key_pem: str = ""
    #: the live keys, private_key_id → public key PEM, oldest first: creating a key adds one,
    #: IAM's keys.delete removes one (Google keeps every key valid until it is deleted)
    keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.private_key_id:
            self.keys.setdefault(self.private_key_id, self.public_key_pem)
        self.private_key_id = self.public_key_pem = ""

    @property
    def newest_key_id(self) -> str | None:
        return next(reversed(self.keys), None)


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    token: str | None
    address: str
    expiration_ms: int
    kind: str  # "events" | "calendarList"
    account: str
    calendar_id: str | None
    params: dict[str, str] = field(default_factory=dict)
    message_number: int = 0
    stopped: bool = False
    #: still live to Google's API (watch, stop, expiry) but delivers nothing: a channel that
    #: silently stopped working (set by the control API, `POST /channels/{id}/silence`)
    silent: bool = False


@dataclass
class Delivery:
    seq: int
    channel_id: str
    address: str
    resource_state: str
    message_number: int
    status: int | None  # HTTP status the receiver answered, None if unreachable
    attempt: int
    at: float
    error: str | None = None


@dataclass
class Email:
    seq: int
    to: str
    sender: str
    calendar_id: str
    event_id: str
    kind: str  # invitation | update | cancellation
    summary: str
    at: float


@dataclass
class LoggedRequest:
    seq: int
    method: str
    path: str
    query: str
    status: int
    account: str | None
    at: float
    duration_ms: float


@dataclass
class Fault:
    id: int
    status: int
    method: str | None = None
    path_regex: str | None = None
    reason: str | None = None
    count: int | None = None  # remaining injections; None = until cleared
    rate: float = 1.0  # probability per matching request
    latency_ms: int = 0
    retry_after: int | None = None


class SlidingWindow:
    """Counts requests in the last `window` seconds (per-user and per-project quotas)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.hits: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()
        if len(self.hits) >= self.limit:
            return False
        self.hits.append(now)
        return True


@dataclass
class QuotaConfig:
    enabled: bool = False
    per_user_per_minute: int = 600
    per_project_per_minute: int = 10_000


@dataclass
class Config:
    access_token_ttl: int = 3600
    allow_http_webhooks: bool = False
    issuer: str = "https://accounts.google.com"
    # how many instances of an unbounded series a singleEvents list expands (Google caps too)
    max_instances: int = 730
    # push channels: longest lifetime granted (seconds) and how failed deliveries are retried
    push_max_ttl_seconds: int = 2_592_000
    push_retry_base_seconds: float = 1.0
    push_max_attempts: int = 5


class World:
    """Everything the emulator knows. Route modules read and change it; nothing else does."""

    def __init__(self, config: Config | None = None, clock: Clock | None = None) -> None:
        self.config = config or Config()
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.change_listeners: list[Callable[[str, str | None], None]] = []
        self.reset()

    def reset(self) -> None:
        self.clock.offset = 0.0  # a new world starts at the real time
        self.seq = 0
        self.accounts: dict[str, Account] = {}
        self.calendars: dict[str, Calendar] = {}
        self.calendar_list: dict[str, dict[str, CalendarListEntry]] = {}
        self.calendar_list_floor: dict[str, int] = {}
        self.events: dict[str, dict[str, StoredEvent]] = {}
        # event ids ever used per calendar, deleted ones included: insert answers 409 for them
        self.used_event_ids: dict[str, set[str]] = {}
        self.oauth_clients: dict[str, OAuthClient] = {}
        self.grants: dict[str, Grant] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.delegations: dict[str, dict[str, set[str]]] = {}  # domain -> client_id -> scopes
        self.channels: dict[str, Channel] = {}
        self.deliveries: list[Delivery] = []
        self.emails: list[Email] = []
        self.requests: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self.fault_seq = 0
        self.latency_ms = 0
        self.quota = QuotaConfig()
        self.user_windows: dict[str, SlidingWindow] = {}
        self.project_windows: dict[str, SlidingWindow] = {}
        self.log_seq = 0
        self.email_seq = 0
        self.delivery_seq = 0

    # -- sequences and ids -------------------------------------------------------------------

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    @staticmethod
    def new_token(prefix: str) -> str:
        return prefix + secrets.token_urlsafe(32)

    @staticmethod
    def etag(seq: int) -> str:
        """Google's etags are quoted numbers; the quotes are part of the value."""
        return f'"{3_000_000_000_000_000 + seq}"'

    # -- accounts and calendars ----------------------------------------------------------------

    def add_account(
        self,
        email: str,
        name: str | None = None,
        *,
        time_zone: str = "UTC",
        is_service_account: bool = False,
    ) -> Account:
        email = email.lower()
        if email in self.accounts:
            return self.accounts[email]
        account = Account(
            email=email,
            name=name or email.split("@")[0],
            primary_calendar_id=email,
            is_service_account=is_service_account,
        )
        self.accounts[email] = account
        self.calendar_list.setdefault(email, {})
        self.add_calendar(email, summary=email, time_zone=time_zone, calendar_id=email)
        return account

    def add_calendar(
        self,
        owner: str,
        summary: str,
        time_zone: str = "UTC",
        calendar_id: str | None = None,
        description: str = "",
    ) -> Calendar:
        cal_id = calendar_id or f"c_{secrets.token_hex(16)}@group.calendar.google.com"
        cal = Calendar(
            id=cal_id,
            summary=summary,
            time_zone=time_zone,
            owner=owner,
            description=description,
            acl={owner: "owner"},
            etag_seq=self.next_seq(),
        )
        self.calendars[cal_id] = cal
        self.events.setdefault(cal_id, {})
        self.used_event_ids.setdefault(cal_id, set())
        self.list_calendar_for(owner, cal_id)
        return cal

    def list_calendar_for(self, email: str, calendar_id: str) -> None:
        entries = self.calendar_list.setdefault(email, {})
        entry = entries.get(calendar_id)
        if entry is None or entry.deleted:
            entries[calendar_id] = CalendarListEntry(calendar_id=calendar_id, seq=self.next_seq())

    def role(self, email: str, calendar_id: str) -> str | None:
        cal = self.calendars.get(calendar_id)
        if cal is None or cal.deleted:
            return None
        return cal.acl.get(email.lower())

    # -- tokens --------------------------------------------------------------------------------

    def issue_access_token(
        self,
        email: str,
        scopes: frozenset[str],
        client_id: str,
        grant_id: str | None = None,
        ttl: int | None = None,
    ) -> AccessToken:
        tok = AccessToken(
            token=self.new_token("ya29."),
            email=email.lower(),
            scopes=scopes,
            client_id=client_id,
            expires_at=self.clock.now() + (ttl or self.config.access_token_ttl),
            grant_id=grant_id,
        )
        self.access_tokens[tok.token] = tok
        return tok

    def valid_access_token(self, token: str) -> AccessToken | None:
        tok = self.access_tokens.get(token)
        if tok is None or tok.revoked or tok.expires_at <= self.clock.now():
            return None
        if tok.grant_id is not None:
            grant = self.grants.get(tok.grant_id)
            if grant is None or grant.revoked:
                return None
        return tok

    def revoke_grants_of(self, email: str) -> int:
        """As after a password change: every grant, refresh and access token of the person dies."""
        email = email.lower()
        n = 0
        for grant in self.grants.values():
            if grant.email == email and not grant.revoked:
                grant.revoked = True
                n += 1
        for rt in self.refresh_tokens.values():
            if rt.email == email:
                rt.revoked = True
        for at in self.access_tokens.values():
            if at.email == email:
                at.revoked = True
        return n

    # -- quotas --------------------------------------------------------------------------------

    def check_quota(self, email: str, client_id: str) -> str | None:
        """None if allowed, else the reason Google gives (userRateLimitExceeded/rateLimitExceeded)."""
        if not self.quota.enabled:
            return None
        now = self.clock.now()
        proj = self.project_windows.setdefault(
            client_id, SlidingWindow(self.quota.per_project_per_minute)
        )
        user = self.user_windows.setdefault(
            f"{client_id}|{email}", SlidingWindow(self.quota.per_user_per_minute)
        )
        if not user.allow(now):
            return "userRateLimitExceeded"
        if not proj.allow(now):
            return "rateLimitExceeded"
        return None

    # -- change notification hooks (push channels subscribe) -------------------------------------

    def changed(self, kind: str, key: str | None) -> None:
        """Tell listeners that a calendar's events (kind="events", key=calendar id) or a person's
        calendar list (kind="calendarList", key=email) changed."""
        for listener in list(self.change_listeners):
            listener(kind, key)

    # -- logs ----------------------------------------------------------------------------------

    def record_email(
        self, to: str, sender: str, calendar_id: str, event_id: str, kind: str, summary: str
    ) -> None:
        self.email_seq += 1
        self.emails.append(
            Email(
                seq=self.email_seq,
                to=to,
                sender=sender,
                calendar_id=calendar_id,
                event_id=event_id,
                kind=kind,
                summary=summary,
                at=self.clock.now(),
            )
        )
