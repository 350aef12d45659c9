"""Fixtures for calsync.google: settings pointing at the emulator, a fake clock, connect helpers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from calsync.google.auth import CachedTokenProvider
from calsync.google.calendar import CalendarClient
from calsync.google.models import OAuthToken
from calsync.google.oauth import Authorization, GoogleOAuth, MemoryStateStore
from calsync.google.retry import RetryPolicy
from calsync.settings import Settings
from tests.conftest import Emulator

CLIENT_ID = "calsync-test.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-secret"
PUBLIC_URL = "https://crm.example.com"
REDIRECT_URI = PUBLIC_URL + "/oauth/google/callback"


class FakeTime:
    """A clock that only moves when someone sleeps: retries and buckets run without waiting."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def settings(emulator: Emulator) -> Settings:
    return Settings(
        google_emulator_url=emulator.url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr(CLIENT_SECRET),
        public_url=PUBLIC_URL,
        google_timeout_seconds=5.0,
        google_requests_per_minute=0,  # tests that exercise the bucket bring a fake-clock one
    )


@pytest.fixture
def retry(fake_time: FakeTime) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=5,
        max_seconds=120,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        rng=random.Random(7),
    )


@pytest.fixture
def oauth_client(emulator: Emulator) -> None:
    emulator.control(
        "POST",
        "/oauth-clients",
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT_URI]},
    )


@pytest.fixture
async def oauth(
    settings: Settings, oauth_client: None, retry: RetryPolicy
) -> AsyncIterator[GoogleOAuth]:
    flow = GoogleOAuth(settings, state_store=MemoryStateStore(), retry=retry)
    yield flow
    await flow.aclose()


async def consent(url: str, account: str, action: str = "allow") -> dict[str, str]:
    """Play the user on the emulator's consent page; returns the callback's query parameters."""
    params = dict(parse_qsl(urlsplit(url).query))
    async with httpx.AsyncClient() as http:
        page = await http.get(url)
        assert page.status_code == 200, page.text
        resp = await http.post(
            url.split("?")[0], data={**params, "account": account, "action": action}
        )
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT_URI)
    return dict(parse_qsl(urlsplit(location).query))


async def connect(oauth: GoogleOAuth, email: str, user_key: str = "crm-user-1") -> Authorization:
    url = await oauth.authorization_url(user_key, login_hint=email)
    callback = await consent(url, email)
    return await oauth.complete(state=callback["state"], code=callback["code"], user_key=user_key)


class ControlTokens(CachedTokenProvider):
    """Tokens minted through the emulator's control API; counts refreshes (401 tests)."""

    def __init__(self, emulator: Emulator, email: str, scopes: list[str] | None = None) -> None:
        super().__init__(email)
        self.emulator = emulator
        self.scopes = scopes

    async def _fetch(self) -> OAuthToken:
        body: dict[str, Any] = {"scopes": self.scopes} if self.scopes else {}
        resp = self.emulator.control("POST", f"/accounts/{self.account}/tokens", body)
        return OAuthToken.model_validate(resp.json())


def log_since(emulator: Emulator, after: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = emulator.control("GET", f"/requests?after={after}").json()[
        "items"
    ]
    return items


def log_mark(emulator: Emulator) -> int:
    return int(emulator.control("GET", "/requests?after=999999999").json()["last_seq"])


@pytest.fixture
async def alice(emulator: Emulator) -> str:
    return emulator.account("alice@example.com", "Alice Example")


@pytest.fixture
async def client(
    emulator: Emulator, settings: Settings, retry: RetryPolicy, alice: str
) -> AsyncIterator[CalendarClient]:
    async with CalendarClient(
        ControlTokens(emulator, "alice@example.com"), settings=settings, retry=retry
    ) as c:
        yield c
