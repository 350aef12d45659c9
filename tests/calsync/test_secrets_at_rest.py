"""Tokens, service-account keys and channel tokens never reach the database in plain text,
and survive a key rotation."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from calsync.store import crypto, secrets, tenants, users
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.models import CalendarBinding, GoogleConnection, Tenant

from .conftest import BACKENDS, fresh_url


def raw_dump(url: str) -> bytes:
    """Everything the database holds, as stored: file bytes, or every row as text."""
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        rows = [
            str(row[0]).encode()
            for table in tables
            for row in conn.execute(f'SELECT t::text FROM "{table}" t')  # type: ignore[arg-type]
        ]
    return b"\n".join(rows)


@pytest.mark.parametrize("backend_name", BACKENDS)
async def test_secrets_are_encrypted_and_rotation_keeps_them_readable(
    backend_name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = fresh_url(
        "postgres" if backend_name == "postgres" else "sqlite", tmp_path_factory, "secrets"
    )
    old_key, new_key = crypto.generate_key(), crypto.generate_key()
    crypto.install(crypto.Keyring([old_key]))
    db = Database(url)
    await upgrade(db)
    marker = uuid.uuid4().hex
    refresh = f"1//refresh-{marker}"
    access = f"ya29.access-{marker}"
    channel = f"channel-{marker}"
    list_channel = f"list-channel-{marker}"
    p12 = b"\x30\x82P12-" + marker.encode() + os.urandom(32)
    password = f"notasecret-{marker}"
    async with db.session() as s:
        tenant = await tenants.create(s, f"t-{uuid.uuid4()}")
        tenant.service_account_key = p12
        tenant.service_account_key_format = "p12"
        tenant.service_account_key_password = password
        user = await users.create(s, tenant.id, "ann@acme.test")
        conn = GoogleConnection(
            tenant_id=tenant.id,
            user_id=user.id,
            refresh_token=refresh,
            access_token=access,
            list_channel_token=list_channel,
            scopes=[],
        )
        s.add(conn)
        await s.flush()
        s.add(
            CalendarBinding(
                tenant_id=tenant.id,
                connection_id=conn.id,
                google_calendar_id="primary",
                channel_token=channel,
            )
        )
        await s.commit()
        tenant_id = tenant.id

    dump = raw_dump(url)
    for secret in (
        refresh.encode(),
        access.encode(),
        channel.encode(),
        list_channel.encode(),
        marker.encode(),
        p12,
        password.encode(),
    ):
        assert secret not in dump
    assert base64.b64encode(p12) not in dump and p12.hex().encode() not in dump

    async def read_back() -> tuple[bytes | None, str | None, str | None, str | None]:
        async with db.session() as s:
            t = await s.get(Tenant, tenant_id)
            c = await s.scalar(
                select(GoogleConnection).where(GoogleConnection.tenant_id == tenant_id)
            )
            b = await s.scalar(
                select(CalendarBinding).where(CalendarBinding.tenant_id == tenant_id)
            )
            assert t is not None and c is not None and b is not None
            return (
                t.service_account_key,
                c.refresh_token,
                b.channel_token,
                t.service_account_key_password,
            )

    expected = (p12, refresh, channel, password)
    assert await read_back() == expected

    # rotation: new key in front, the old one still decrypts; rotate; then the old key can go
    both = crypto.Keyring([new_key, old_key])
    crypto.install(both)
    assert await read_back() == expected
    async with db.session() as s:
        assert await secrets.rotate(s, both) >= 5
        await s.commit()
    crypto.install(crypto.Keyring([new_key]))
    assert await read_back() == expected
    crypto.install(crypto.Keyring([old_key]))
    with pytest.raises(crypto.SecretKeyError):
        await read_back()
    dump = raw_dump(url)
    assert refresh.encode() not in dump and p12 not in dump
    await db.dispose()


def test_every_secret_column_is_encrypted() -> None:
    names = {f"{t.name}.{c.name}" for t, c in secrets.encrypted_columns()}
    assert names == {
        "tenant.service_account_key",
        "tenant.service_account_key_password",
        "google_connection.refresh_token",
        "google_connection.access_token",
        "calendar_binding.channel_token",
        "calendar_binding.twin_channel_token",
        "google_connection.list_channel_token",
        "oauth_state.code_verifier",
        "webhook_endpoint.secret",
        "webhook_endpoint.previous_secret",
    }
