"""Fixtures for calsync's store and API: every test runs on SQLite, and on PostgreSQL when
CALSYNC_TEST_POSTGRES_URL is set. Each xdist worker gets its own database, migrated once;
tests are isolated by creating their own tenant (nothing is shared across tenants)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from calsync.settings import Settings
from calsync.store import apikeys, crypto, tenants, users
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.web.app import create_app

PG_ENV = "CALSYNC_TEST_POSTGRES_URL"
BACKENDS = ["sqlite"] + (["postgres"] if os.environ.get(PG_ENV) else [])
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# the pid keeps concurrent test runs on one PostgreSQL server (developers, CI) apart
RUN = f"{WORKER}_{os.getpid()}"
_created: list[str] = []


def _admin_conninfo() -> str:
    admin = make_url(os.environ[PG_ENV])
    return admin.set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_database(name: str) -> str:
    """A fresh, empty PostgreSQL database for this worker; returns its asyncpg URL."""
    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    url = make_url(os.environ[PG_ENV]).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


def fresh_url(backend: str, tmp_path_factory: pytest.TempPathFactory, label: str) -> str:
    if backend == "postgres":
        return postgres_database(f"calsync_test_{RUN}_{label}")
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp(label) / 'calsync.db'}"


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    if _created:
        with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
            for name in _created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def keyring() -> crypto.Keyring:
    ring = crypto.Keyring([crypto.generate_key()])
    crypto.install(ring)
    return ring


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database per backend and worker, shared by the session's tests."""
    url = fresh_url(request.param, tmp_path_factory, "main")

    async def migrate() -> None:
        db = Database(url, pooled=False)
        await upgrade(db)
        await db.dispose()

    asyncio.run(migrate())
    return url


@pytest.fixture
def backend(db_url: str) -> str:
    return "postgres" if db_url.startswith("postgresql") else "sqlite"


@pytest.fixture
async def db(db_url: str, keyring: crypto.Keyring) -> AsyncIterator[Database]:
    crypto.install(keyring)
    database = Database(db_url)
    yield database
    await database.dispose()


@dataclass
class World:
    """One tenant of the test's own, with an admin key and helpers to add users and keys."""

    db: Database
    tenant_id: uuid.UUID
    admin_key: str
    client: httpx.AsyncClient
    user_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    user_keys: dict[str, str] = field(default_factory=dict)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    async def user(self, email: str, role: str = "user") -> tuple[uuid.UUID, str]:
        """Create a user and a user key for it."""
        async with self.db.session() as s:
            user = await users.create(s, self.tenant_id, email, role=role)
            _, key = await apikeys.create(s, self.tenant_id, user_id=user.id)
            await s.commit()
        self.user_ids[email], self.user_keys[email] = user.id, key
        return user.id, key

    async def call(
        self, method: str, path: str, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.auth(key), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)


async def make_world(db: Database, client: httpx.AsyncClient, name: str | None = None) -> World:
    async with db.session() as s:
        tenant = await tenants.create(s, name or f"tenant-{uuid.uuid4()}")
        _, key = await apikeys.create(s, tenant.id)
        await s.commit()
    return World(db, tenant.id, key, client)


@pytest.fixture
def app_settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path, mode="sandbox")


@pytest.fixture
async def client(
    db: Database, keyring: crypto.Keyring, app_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(app_settings, database=db, keyring=keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as c:
        yield c


@pytest.fixture
async def world(db: Database, client: httpx.AsyncClient) -> World:
    return await make_world(db, client)


@pytest.fixture
async def other_world(db: Database, client: httpx.AsyncClient) -> World:
    """A second tenant, to prove nothing crosses over."""
    return await make_world(db, client)
