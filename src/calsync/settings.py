"""calsync's configuration: every knob is a CALSYNC_* environment variable (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GOOGLE_API_BASE = "https://www.googleapis.com"
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_REVOKE_URL = "https://oauth2.googleapis.com/revoke"
GOOGLE_USERINFO_URL = "https://openidconnect.googleapis.com/v1/userinfo"


class Settings(BaseSettings):
    """Read once per process; tests build their own instances instead of patching the environment."""

    model_config = SettingsConfigDict(env_prefix="CALSYNC_", extra="ignore")

    # where state lives
    data_dir: Path = Field(default=Path("data"), description="SQLite file and sandbox key file")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in data_dir"
    )
    # PostgreSQL: connections each process keeps open, and how many more it opens for a burst
    # (closed again when they come back): each process opens at most their sum, plus
    # procrastinate's own 4 (and a worker's listener) with CALSYNC_JOBS=procrastinate, and
    # `calsync serve` with every `calsync worker` must fit in the server's max_connections
    # (default 100; docs/deploy.md). SQLite keeps SQLAlchemy's 5 + 10 (store/db.py)
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # comma-separated Fernet keys, newest first; older ones still decrypt (rotation)
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    # sandbox: no real Google, a generated key file is fine; production: CALSYNC_SECRET_KEY is
    # required; auto: sandbox exactly when no Google OAuth client is configured
    mode: Literal["auto", "sandbox", "production"] = "auto"

    # Google endpoints (real Google by default)
    google_api_base: str = GOOGLE_API_BASE
    google_auth_url: str = GOOGLE_AUTH_URL
    google_token_url: str = GOOGLE_TOKEN_URL
    google_revoke_url: str = GOOGLE_REVOKE_URL
    google_userinfo_url: str = GOOGLE_USERINFO_URL
    # one setting pointing all of the above at a gcal_emulator (http://host:port)
    google_emulator_url: str | None = None
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None

    # jobs (calsync.jobs): which runner, how many syncs at once, and when syncs run
    jobs: Literal["inprocess", "procrastinate"] = "inprocess"
    jobs_concurrency: int = 4
    # a sync renews its binding's lock every lock_heartbeat_seconds; a lock not renewed for
    # lock_timeout_seconds is taken over (a holder on this machine known dead: at once)
    lock_timeout_seconds: float = 20.0
    lock_heartbeat_seconds: float = 5.0
    # owed syncs (acknowledged webhooks) and CRM changes not yet pushed (behind the change
    # feed) are looked for at start and this often, for processes that died without syncing
    recovery_tick_seconds: float = 60.0
    # SIGTERM: in-flight syncs get this long to finish before they are handed back
    shutdown_grace_seconds: float = 30.0
    # a binding whose push channel works (by evidence: no poll found changes it did not
    # announce) is polled this rarely, up to poll_jitter of it later; others at the tenant's
    # interval, up to poll_jitter of it earlier
    healthy_poll_interval_seconds: int = Field(default=24 * 3600, ge=60)
    poll_jitter: float = Field(default=0.1, ge=0, lt=1)
    # a healthy channel on a busy calendar is polled after a silence in which it would have
    # announced about this many changes (0: the daily poll for every healthy channel)
    poll_silence_changes: float = Field(default=2.0, ge=0)
    # a channel that has not announced calsync's own write to its calendar this long after it
    # is suspect: re-created, and the calendar synced at once (sync/channels/echo.py)
    channel_echo_grace_seconds: float = Field(default=120.0, ge=1)
    # the project-wide Google request budget every process spends from (counted in the
    # database): Google's defaults for a new Cloud project, 10,000 requests a minute and a
    # daily billing threshold near 1,000,000. Safety-net polls stop at budget_poll_share of
    # either; webhook, CRM-change and other syncs wait only when the minute's budget is spent
    google_budget_per_minute: int = Field(default=10_000, ge=1)
    google_budget_per_day: int = Field(default=1_000_000, ge=1)
    google_budget_poll_share: float = Field(default=0.8, gt=0, le=1)
    poll_tick_seconds: float = 10.0
    stuck_tick_seconds: float = 30.0
    # a request for a binding another process is syncing is tried again after this long
    busy_retry_seconds: float = 5.0
    # CRM edits within this window go to Google as one batch
    change_debounce_seconds: float = 1.0
    # the CRM API (/api/v1): at most this many requests worked on at once per process (0 = no
    # limit); the rest wait their turn, and one that waited api_queue_seconds gets 503 with
    # Retry-After. Keeps the event loop and the connection pool (db_pool_size) free enough for the
    # webhooks and the sync (issue 16)
    api_max_concurrent: int = Field(default=10, ge=0)
    api_queue_seconds: float = Field(default=30.0, gt=0)
    # procrastinate workers: heartbeat, and when a silent worker's jobs count as stalled
    worker_heartbeat_seconds: float = 5.0
    worker_stalled_seconds: float = 20.0
    # `calsync worker`: serve /metrics and /healthz on this port (None = off, 0 = any free port)
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"

    # Google client behaviour
    google_timeout_seconds: float = 30.0
    google_requests_per_minute: int = 600  # per Google account, under Google's 600/min/user
    google_max_attempts: int = 6
    google_max_retry_seconds: float = 120.0
    google_batch_size: int = 50

    # push notifications (calsync.sync.channels): lifetime asked of Google for each channel, and
    # where Google posts them (default: public_url + /webhooks/google; must be https for Google)
    push_channel_ttl_seconds: int = 604_800
    # each channel asks for up to this fraction less, at random, so channels made together
    # expire (and are renewed) spread out rather than all in one renewal pass
    push_channel_ttl_jitter: float = Field(default=0.1, ge=0, lt=1)
    # events channels per watched calendar: 2 (the default) adds a "twin" on the same calendar,
    # so one channel that silently stops delivering hides no change (its twin announces it and
    # makes it owe an echo); 1 stops the twins
    push_channels_per_calendar: Literal[1, 2] = 2
    webhook_url: str | None = None
    # operations: structured logs (calsync.logging)
    # `calsync serve` keeps a client's idle HTTP connection open this long (uvicorn's own 5 s
    # closed connections that clients and load balancers were about to reuse: keep it above a
    # load balancer's idle timeout, 60 s on most)
    keep_alive_seconds: int = Field(default=75, ge=1)
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # page logins: after this many failures in the window, an account (its e-mail) or a client
    # address gets 429 with Retry-After until the oldest failure leaves the window
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=20, ge=1)
    login_throttle_window_seconds: int = Field(default=900, ge=1)
    # /metrics: a bearer token scrapers must send (None = open), or a separate port (then the
    # main port answers 404 for /metrics); database-derived series are cached this long
    metrics_token: SecretStr | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_cache_seconds: float = Field(default=15.0, ge=0)
    # outbound webhooks (docs/webhooks.md): how often due deliveries are looked for, and
    # whether endpoints may be on private, loopback or link-local addresses (SSRF guard)
    webhook_tick_seconds: float = Field(default=1.0, gt=0)
    webhook_allow_private: bool = False
    # sandbox: port of the in-process emulator (0 = any free port)
    sandbox_emulator_port: int = 0
    # portal sessions (web/pages/portal.py): how long a one-time sign-in link lives, and the
    # origins a CRM's return_url may point at (comma-separated; None = any http(s) URL)
    portal_link_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    portal_return_origins: str | None = None
    # who may frame the pages: CSP frame-ancestors sources, space-separated
    # ("https://crm.example.com https://*.crm.example"); None = nobody (frame-ancestors 'none')
    frame_ancestors: str | None = None

    @model_validator(mode="after")
    def _emulator_endpoints(self) -> Settings:
        if self.google_emulator_url:
            base = self.google_emulator_url.rstrip("/")
            self.google_api_base = base
            self.google_auth_url = f"{base}/o/oauth2/v2/auth"
            self.google_token_url = f"{base}/token"
            self.google_revoke_url = f"{base}/revoke"
            self.google_userinfo_url = f"{base}/oauth2/v3/userinfo"
        return self

    @model_validator(mode="after")
    def _frame_ancestors(self) -> Settings:
        value = (self.frame_ancestors or "").strip()
        if any(ch in value for ch in ";,\r\n") or any(ord(ch) < 32 for ch in value):
            raise ValueError(
                "CALSYNC_FRAME_ANCESTORS is a space-separated list of origins "
                "(https://crm.example.com https://*.crm.example), without ';' or ','"
            )
        self.frame_ancestors = value or None
        return self

    @property
    def portal_origins(self) -> frozenset[str] | None:
        """CALSYNC_PORTAL_RETURN_ORIGINS as origins (scheme://host[:port], lower case), or None."""
        if not self.portal_return_origins or not self.portal_return_origins.strip():
            return None
        return frozenset(
            part.strip().rstrip("/").lower()
            for part in self.portal_return_origins.split(",")
            if part.strip()
        )

    @property
    def framed(self) -> bool:
        """The pages may be framed by a CRM and the public URL is https: the session cookie is
        then SameSite=None; Secure (a third-party iframe gets no Lax cookie)."""
        return self.frame_ancestors is not None and self.public_url.lower().startswith("https://")

    @property
    def calendar_api_root(self) -> str:
        return self.google_api_base.rstrip("/") + "/calendar/v3"

    @property
    def batch_url(self) -> str:
        return self.google_api_base.rstrip("/") + "/batch/calendar/v3"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'calsync.db').resolve()}"

    @property
    def sandbox(self) -> bool:
        if self.mode == "auto":
            return not self.oauth_configured
        return self.mode == "sandbox"

    @property
    def oauth_configured(self) -> bool:
        return bool(self.google_client_id and self.google_client_secret)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
