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

    # Google client behaviour
    google_timeout_seconds: float = 30.0
    google_requests_per_minute: int = 600  # per Google account, under Google's 600/min/user
    google_max_attempts: int = 6
    google_max_retry_seconds: float = 120.0
    google_batch_size: int = 50

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
