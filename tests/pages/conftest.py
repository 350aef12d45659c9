"""Page tests: the app in process (httpx, SQLite and PostgreSQL) and, for the browser tests, the
app served by uvicorn on a free port with Chromium (Playwright) driving it."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from calsync.store import tenants, users
from calsync.store.db import Database
from calsync.store.passwords import hash_password
from calsync.sync.google_services import GoogleServices
from tests.calsync.conftest import World, db, db_url, keyring, make_world  # noqa: F401
from tests.conftest import Emulator
from tests.web.conftest import Api, build_app, register_client, settings_for

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


class Browser:
    """A person with a browser session on the pages (cookies kept by the httpx client)."""

    def __init__(self, api: Api, client: httpx.AsyncClient) -> None:
        self.api = api
        self.client = client

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def token(self, path: str = "/login") -> str:
        page = await self.client.get(path)
        return csrf_of(page.text)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: str | None = None, **kw: Any
    ) -> httpx.Response:
        token = csrf if csrf is not None else await self.token()
        return await self.client.post(path, data={"csrf": token, **(data or {})}, **kw)

    async def login(
        self, email: str, password: str = PASSWORD, company: str | None = None
    ) -> httpx.Response:
        """Log in; the company is the test's own tenant (the e-mail exists in other tests')."""
        company = company if company is not None else await self.api_company()
        return await self.post("/login", {"email": email, "password": password, "company": company})

    async def api_company(self) -> str:
        async with self.api.world.db.session() as s:
            tenant = await tenants.get(s, self.api.world.tenant_id)
            assert tenant is not None
            return tenant.name


async def set_password(db: Database, world: World, email: str, password: str = PASSWORD) -> None:  # noqa: F811
    async with db.session() as s:
        user = await users.by_email(s, world.tenant_id, email)
        assert user is not None
        user.password_hash = hash_password(password)
        await s.commit()


class Pages:
    """The connection API test helpers (`api`) plus browsers on the pages."""

    def __init__(self, api: Api, db: Database) -> None:  # noqa: F811
        self.api = api
        self.db = db
        self._clients: list[httpx.AsyncClient] = []

    async def person(self, email: str, role: str = "user") -> tuple[uuid.UUID, str, Browser]:
        """A CRM user with a password and a logged-in browser."""
        user_id, key = await self.api.user(email, role)
        await set_password(self.db, self.api.world, email)
        browser = self.browser()
        resp = await browser.login(email)
        assert resp.status_code == 303, resp.text
        return user_id, key, browser

    def browser(self, **headers: str) -> Browser:
        transport = httpx.ASGITransport(app=self.api.app)
        client = httpx.AsyncClient(
            transport=transport, base_url="https://calsync.test", headers=headers
        )
        self._clients.append(client)
        return Browser(self.api, client)

    async def connect(self, browser: Browser, account: str) -> None:
        """Connect from the settings page: the button, Google's consent page, the callback."""
        resp = await browser.post(
            "/settings/google/connect", csrf=await browser.token("/settings/google")
        )
        assert resp.status_code == 303, resp.text
        callback = await self.api.consent(resp.headers["location"], account)
        done = await browser.get(callback)  # logged in: back to the settings page
        assert done.status_code == 303 and done.headers["location"] == "/settings/google"

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


@pytest.fixture
async def pages(
    emulator: Emulator,
    db: Database,  # noqa: F811
    keyring: Any,  # noqa: F811
) -> AsyncIterator[Pages]:
    register_client(emulator)
    app = build_app(settings_for(emulator), db, keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://calsync.test") as client:
        world = await make_world(db, client)
        helper = Pages(Api(world, app, emulator), db)
        yield helper
        await helper.aclose()
        services: GoogleServices = app.state.google
        await services.aclose()
