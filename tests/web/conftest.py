"""The connection API over HTTP: calsync's app (in process) against the real emulator, on SQLite
and PostgreSQL. `Api` plays the CRM (API keys) and the person in the browser (consent page)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from calsync.google.retry import RetryPolicy
from calsync.settings import Settings
from calsync.store import crypto
from calsync.store.db import Database
from calsync.sync.google_services import GoogleServices
from calsync.web.app import create_app
from tests.calsync.conftest import World, db, db_url, keyring, make_world  # noqa: F401
from tests.conftest import Emulator

CLIENT_ID = "calsync-web.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-web-secret"
PUBLIC_URL = "https://crm.example.com"
CALLBACK = "/oauth/google/callback"
ZONE = "Europe/Oslo"


async def no_sleep(_: float) -> None:
    return None


def settings_for(emulator: Emulator, *, oauth: bool = True, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "google_emulator_url": emulator.url,
        "public_url": PUBLIC_URL,
        "google_timeout_seconds": 5.0,
        "google_requests_per_minute": 0,
        "mode": "production",
        **extra,
    }
    if oauth:
        values["google_client_id"] = CLIENT_ID
        values["google_client_secret"] = SecretStr(CLIENT_SECRET)
    return Settings(**values)


def build_app(settings: Settings, database: Database, ring: crypto.Keyring) -> FastAPI:
    app = create_app(settings, database=database, keyring=ring)
    # same objects as production, but retries never sleep
    app.state.google = GoogleServices.create(
        settings, database, retry=RetryPolicy(max_attempts=3, max_seconds=1e9, sleep=no_sleep)
    )
    return app


class Api:
    """One tenant of the test's own, its app, and the person at the browser."""

    def __init__(self, world: World, app: FastAPI, emulator: Emulator) -> None:
        self.world = world
        self.app = app
        self.emu = emulator

    @property
    def services(self) -> GoogleServices:
        services: GoogleServices = self.app.state.google
        return services

    async def call(
        self, method: str, path: str, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self.world.call(method, path, key, **kwargs)

    async def user(self, email: str, role: str = "user") -> tuple[uuid.UUID, str]:
        return await self.world.user(email, role)

    async def account_policy(
        self, policy: str | None = None, domains: list[str] | None = None
    ) -> None:
        """The company's Google account policy (admin): which accounts users may link."""
        body: dict[str, Any] = {}
        if policy is not None:
            body["google_account_policy"] = policy
        if domains is not None:
            body["google_domains"] = domains
        resp = await self.call("PATCH", "/api/v1/tenant/settings", json=body)
        assert resp.status_code == 200, resp.text

    # -- the browser --------------------------------------------------------------------------

    async def authorization_url(self, user_id: uuid.UUID, key: str | None = None) -> str:
        resp = await self.call("POST", f"/api/v1/users/{user_id}/google/connect", key)
        assert resp.status_code == 200, resp.text
        url = resp.json()["authorization_url"]
        assert isinstance(url, str)
        return url

    async def consent(self, url: str, account: str, action: str = "allow") -> str:
        """Allow (or deny) on the emulator's consent page; the callback path with its query."""
        params = dict(parse_qsl(urlsplit(url).query))
        async with httpx.AsyncClient() as http:
            page = await http.get(url)
            assert page.status_code == 200, page.text
            resp = await http.post(
                url.split("?")[0], data={**params, "account": account, "action": action}
            )
        assert resp.status_code == 302, resp.text
        location = resp.headers["location"]
        assert location.startswith(PUBLIC_URL + CALLBACK), location
        return location[len(PUBLIC_URL) :]

    async def callback(self, path: str, *, json: bool = False) -> httpx.Response:
        headers = {"Accept": "application/json"} if json else {}
        return await self.world.client.get(path, headers=headers)

    async def connect(
        self, user_id: uuid.UUID, account: str, key: str | None = None
    ) -> httpx.Response:
        """The whole flow: connect → consent page → callback."""
        url = await self.authorization_url(user_id, key)
        resp = await self.callback(await self.consent(url, account))
        assert resp.status_code == 200, resp.text
        return resp

    # -- Google, as the person ------------------------------------------------------------------

    def google(self, email: str) -> httpx.Client:
        token = self.emu.token(email)
        return httpx.Client(
            base_url=f"{self.emu.url}/calendar/v3",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    def insert_event(self, email: str, summary: str, days: int = 2, calendar: str = "") -> str:
        start = (datetime.now(UTC) + timedelta(days=days)).replace(
            minute=0, second=0, microsecond=0
        )
        body = {
            "summary": summary,
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": ZONE},
        }
        with self.google(email) as g:
            resp = g.post(f"/calendars/{calendar or email}/events", json=body)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])

    def events(self, email: str, calendar: str = "") -> list[dict[str, Any]]:
        with self.google(email) as g:
            resp = g.get(f"/calendars/{calendar or email}/events")
        assert resp.status_code == 200, resp.text
        items: list[dict[str, Any]] = resp.json()["items"]
        return items

    async def activity(self, owner_id: uuid.UUID, subject: str, days: int = 3) -> str:
        start = (datetime.now(UTC) + timedelta(days=days)).replace(
            minute=0, second=0, microsecond=0
        )
        resp = await self.call(
            "POST",
            "/api/v1/activities",
            json={
                "owner_id": str(owner_id),
                "subject": subject,
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
                "time_zone": ZONE,
            },
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    async def activities(self, owner_id: uuid.UUID) -> list[dict[str, Any]]:
        resp = await self.call("GET", "/api/v1/activities")
        assert resp.status_code == 200, resp.text
        rows: list[dict[str, Any]] = resp.json()["activities"]
        return [a for a in rows if a["owner_id"] == str(owner_id)]

    async def sync(self, user_id: uuid.UUID, key: str | None = None, **body: Any) -> httpx.Response:
        return await self.call(
            "POST", f"/api/v1/users/{user_id}/google/sync", key, json={"wait": True, **body}
        )

    async def status(self, user_id: uuid.UUID, key: str | None = None) -> dict[str, Any]:
        resp = await self.call("GET", f"/api/v1/users/{user_id}/google", key)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


def register_client(emulator: Emulator) -> None:
    emulator.control(
        "POST",
        "/oauth-clients",
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [PUBLIC_URL + CALLBACK],
        },
    )


@pytest.fixture
async def api(
    emulator: Emulator,
    db: Database,  # noqa: F811
    keyring: crypto.Keyring,  # noqa: F811
) -> AsyncIterator[Api]:
    register_client(emulator)
    app = build_app(settings_for(emulator), db, keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as client:
        world = await make_world(db, client)
        yield Api(world, app, emulator)
        services: GoogleServices = app.state.google
        await services.aclose()
