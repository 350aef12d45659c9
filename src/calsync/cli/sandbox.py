"""Sandbox mode: `calsync serve` without Google credentials shows the whole flow offline.

The emulator runs in a thread on its own port (its state kept in the data dir, so a restart keeps
the demo accounts and their tokens), an OAuth client is registered there, and a demo company is
created once: an admin and two users, each connected to a Google account through the real OAuth
flow (consent page answered as the browser would), with sample events imported by a first sync.
Every start prints the URLs, the logins and a fresh admin API key.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from calsync.google.auth import StaticToken
from calsync.google.calendar import CalendarClient
from calsync.google.models import Event, EventDateTime
from calsync.jobs.port import Reason
from calsync.settings import Settings
from calsync.store import apikeys, bindings, connections, tenants, users
from calsync.store.db import private_dir
from calsync.store.passwords import hash_password
from calsync.store.statuses import ConnectionStatus, UserRole
from calsync.sync.connect import finish_oauth, user_key
from calsync.sync.engine import sync_binding
from gcal_emulator.app import create_app as create_emulator
from gcal_emulator.state import Config, World

log = logging.getLogger(__name__)

TENANT = "Demo Company"
ADMIN = ("admin@demo.example", "Dana Admin")
USERS = [("ada@demo.example", "Ada Lovelace"), ("bo@demo.example", "Bo Carlsen")]
CLIENT_ID = "calsync-sandbox.apps.googleusercontent.com"
ZONE = "Europe/Oslo"
DEMO_PASSWORD = "calsync-demo"  # the sandbox's demo users log in to the pages with it


class EmulatorThread:
    """The emulator served by uvicorn in a daemon thread (http webhooks allowed)."""

    def __init__(self, host: str, port: int, state_file: Path | None) -> None:
        self.world = World(Config(allow_http_webhooks=True))
        app = create_emulator(self.world, state_file=str(state_file) if state_file else None)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sandbox's Google emulator did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def _client_secret(data_dir: Path) -> str:
    path = data_dir / "sandbox-oauth-client-secret"
    if path.exists():
        return path.read_text().strip()
    secret = "GOCSPX-sandbox-" + secrets.token_urlsafe(18)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


@dataclass
class Sandbox:
    """The running emulator, the settings pointing at it, and what `prepare` printed."""

    settings: Settings
    emulator: EmulatorThread
    admin_key: str | None = None
    logins: list[tuple[str, str]] = field(default_factory=list)
    # the logins whose user is connected to a Google account in the emulator (the banner lists
    # only these as connected: the demo admin has no Google account)
    connected: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, settings: Settings, *, host: str, port: int) -> Sandbox:
        """Start the emulator and return settings that use it (mode stays sandbox)."""
        private_dir(settings.data_dir)
        emulator = EmulatorThread(
            "127.0.0.1", settings.sandbox_emulator_port, settings.data_dir / "emulator-state.json"
        )
        emulator.start()
        public = settings.public_url
        if "public_url" not in settings.model_fields_set:
            shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
            public = f"http://{shown}:{port}"
        secret = _client_secret(settings.data_dir)
        with httpx.Client(base_url=emulator.url, timeout=10) as http:
            http.post(
                "/emulator/v1/oauth-clients",
                json={
                    "client_id": CLIENT_ID,
                    "client_secret": secret,
                    "redirect_uris": [public.rstrip("/") + "/oauth/google/callback"],
                },
            ).raise_for_status()
        values: dict[str, Any] = {
            **settings.model_dump(exclude={"google_client_secret", "secret_key"}),
            "secret_key": settings.secret_key,
            "mode": "sandbox",
            "public_url": public,
            "google_emulator_url": emulator.url,
            "google_client_id": CLIENT_ID,
            "google_client_secret": SecretStr(secret),
            # a CRM trying outbound webhooks runs on this machine too: loopback is allowed
            # unless the operator said otherwise
            "webhook_allow_private": settings.webhook_allow_private
            if "webhook_allow_private" in settings.model_fields_set
            else True,
        }
        return cls(Settings(**values), emulator)

    def stop(self) -> None:
        self.emulator.stop()

    # -- demo data --------------------------------------------------------------------------

    async def prepare(self, app: FastAPI) -> None:
        """Create the demo company once; every start, a fresh admin key and the banner."""
        db = app.state.db
        async with db.session() as session:
            tenant = await tenants.find(session, TENANT)
            await session.commit()
        if tenant is None:
            await self._seed(app)
        async with db.session() as session:
            tenant = await tenants.find(session, TENANT)
            assert tenant is not None
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
            _, self.admin_key = await apikeys.create(session, tenant.id, name=f"sandbox {stamp}")
            self.logins = []
            self.connected = set()
            for email, _ in [ADMIN, *USERS]:
                user = await users.by_email(session, tenant.id, email)
                if user is not None:
                    if user.password_hash is None:  # demo logins for the pages
                        user.password_hash = hash_password(DEMO_PASSWORD)
                    self.logins.append((email, str(user.id)))
                    conn = await connections.for_user(session, user.id)
                    if conn is not None and conn.status == ConnectionStatus.CONNECTED:
                        self.connected.add(email)
            await session.commit()
        print(self.banner(), flush=True)

    def banner(self) -> str:
        settings = self.settings
        lines = [
            "",
            "calsync sandbox — Google is the built-in emulator, nothing leaves this machine",
            f"  calsync:          {settings.public_url}   (API docs: {settings.public_url}/docs)",
            f"  Google emulator:  {self.emulator.url}   (control API: /emulator/v1)",
            f"  Company:          {TENANT}",
            f"  Admin API key:    {self.admin_key}",
        ]
        linked = [(email, uid) for email, uid in self.logins if email in self.connected]
        others = [(email, uid) for email, uid in self.logins if email not in self.connected]
        if linked:
            lines.append("  Users (Google accounts in the emulator, already connected):")
            lines += [f"    {email:<22} user id {uid}" for email, uid in linked]
        if others:
            lines.append("  Users without a Google account (pages and API only):")
            lines += [f"    {email:<22} user id {uid}" for email, uid in others]
        lines += [f"  Pages:            {settings.public_url}/login   (password {DEMO_PASSWORD})"]
        lines += [
            "  Try:",
            f'    curl -H "Authorization: Bearer {self.admin_key}" {settings.public_url}/api/v1/activities',
            "  Reset: stop calsync and delete " + str(settings.data_dir.resolve()),
            "",
        ]
        return "\n".join(lines)

    async def _seed(self, app: FastAPI) -> None:
        db = app.state.db
        async with db.session() as session:
            tenant = await tenants.create(session, TENANT)
            admin = await users.create(
                session, tenant.id, ADMIN[0], name=ADMIN[1], role=UserRole.ADMIN
            )
            members = [await users.create(session, tenant.id, e, name=n) for e, n in USERS]
            await session.commit()
        del admin
        async with httpx.AsyncClient(base_url=self.emulator.url, timeout=15) as http:
            for user, (email, name) in zip(members, USERS, strict=True):
                known = (await http.get("/emulator/v1/accounts")).json()["items"]
                if not any(a["email"] == email for a in known):
                    resp = await http.post(
                        "/emulator/v1/accounts", json={"email": email, "name": name}
                    )
                    resp.raise_for_status()
                await self._sample_events(http, email)
                await self._connect(app, tenant.id, user.id, email)
        binding_ids: list[uuid.UUID] = []
        async with db.session() as session:
            for user in members:
                conn = await connections.for_user(session, user.id)
                if conn is not None:
                    binding_ids += [b.id for b in await bindings.for_connection(session, conn.id)]
            await session.commit()
        for binding_id in binding_ids:  # the first import, so the demo starts with data
            await sync_binding(db, binding_id, app.state.google.access, trigger=Reason.INITIAL)
        log.info("sandbox demo company created", extra={"users": len(members)})

    async def _connect(
        self, app: FastAPI, tenant_id: uuid.UUID, user_id: uuid.UUID, email: str
    ) -> None:
        """The real OAuth flow: link, consent page (as the browser), then what the callback
        does (sync/connect.py)."""
        services = app.state.google
        oauth = services.require_oauth()
        url = await oauth.authorization_url(user_key(tenant_id, user_id), login_hint=email)
        params = dict(parse_qsl(urlsplit(url).query))
        async with httpx.AsyncClient(timeout=15) as browser:
            page = await browser.get(url)
            page.raise_for_status()
            resp = await browser.post(
                url.split("?")[0], data={**params, "account": email, "action": "allow"}
            )
        location = resp.headers.get("location", "")
        back = dict(parse_qsl(urlsplit(location).query))
        auth = await oauth.complete(state=back.get("state"), code=back.get("code"))
        await finish_oauth(app.state.db, services, auth)

    async def _sample_events(self, http: httpx.AsyncClient, email: str) -> None:
        """A week of typical entries in the account's primary calendar, written through
        calsync's own Calendar client (the wire format stays in google/); the token comes
        from the emulator's control API."""
        token = (await http.post(f"/emulator/v1/accounts/{email}/tokens", json={})).json()
        today = date.today()
        monday = today - timedelta(days=today.weekday())

        def at(day: date, hour: int, minutes: int = 60) -> tuple[EventDateTime, EventDateTime]:
            start = datetime(day.year, day.month, day.day, hour)
            end = start + timedelta(minutes=minutes)
            return (
                EventDateTime(date_time=start, time_zone=ZONE),
                EventDateTime(date_time=end, time_zone=ZONE),
            )

        weekly, daily = at(monday, 9), at(monday, 8, 15)
        visit, dentist = at(today + timedelta(days=2), 13, 90), at(today + timedelta(days=1), 16)
        events = [
            Event(
                summary="Weekly sales meeting",
                start=weekly[0],
                end=weekly[1],
                recurrence=["RRULE:FREQ=WEEKLY;BYDAY=MO"],
            ),
            Event(
                summary="Daily stand-up",
                start=daily[0],
                end=daily[1],
                recurrence=["RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=30"],
            ),
            Event(
                summary="Customer visit: Nordic Trading",
                location="Oslo",
                start=visit[0],
                end=visit[1],
            ),
            Event(
                summary="Company off-site",
                start=EventDateTime(date=today + timedelta(days=7)),
                end=EventDateTime(date=today + timedelta(days=9)),
            ),
            Event(summary="Dentist", visibility="private", start=dentist[0], end=dentist[1]),
        ]
        client = CalendarClient(
            StaticToken(token["access_token"], account=email),
            settings=self.settings,
            rate_limiter=None,
        )
        try:
            for event in events:
                await client.insert_event(email, event)
        finally:
            await client.aclose()
