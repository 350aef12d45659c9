"""The start's read (store.sync_rows.load) as plain rows on the tables: binding, connection and
tenant are the detached objects an ORM query and a closed session gave before — every column
it reads the same, the secret columns unloaded (reading one raises), the
credentials as stored."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.orm.exc import DetachedInstanceError

from calsync.store import sync_rows
from calsync.store.base import Base
from calsync.store.models import CalendarBinding, GoogleConnection, Tenant

from .conftest import Harness

SECRET = {
    GoogleConnection: ("refresh_token", "access_token", "list_channel_token"),
    Tenant: ("service_account_key", "service_account_key_password"),
    CalendarBinding: ("channel_token", "twin_channel_token"),
}


def columns(obj: Base) -> dict[str, object]:
    mapper = inspect(type(obj))
    return {
        p.key: getattr(obj, p.key)
        for p in mapper.column_attrs
        if p.key not in SECRET[type(obj)]  # type: ignore[index]
    }


async def test_the_start_reads_what_the_orm_read(h: Harness) -> None:
    assert (await h.sync()).ok  # a token, a scan key, a last sync: columns that are set
    async with h.db.connection() as conn:
        loaded = await sync_rows.load(conn, h.binding_id)
    assert loaded is not None
    async with h.db.session() as s:
        binding = await s.get(CalendarBinding, h.binding_id)
        connection = await s.get(GoogleConnection, h.connection_id)
        tenant = await s.get(Tenant, h.tenant_id)
    assert binding is not None and connection is not None and tenant is not None
    assert binding.sync_token and loaded.binding.sync_token == binding.sync_token
    for read, orm in (
        (loaded.binding, binding),
        (loaded.connection, connection),
        (loaded.tenant, tenant),
    ):
        assert type(read) is type(orm)
        assert columns(read) == columns(orm)
        state = inspect(read)
        assert state.detached and state.identity == inspect(orm).identity
        assert not state.modified
        for key in SECRET[type(read)]:  # type: ignore[index]
            with pytest.raises(DetachedInstanceError):
                getattr(read, key)
    assert loaded.calendars == [(h.calendar_id, "both")]
    assert loaded.secrets.refresh_token is not None
    assert loaded.secrets.refresh_token.text() == connection.refresh_token
    assert loaded.secrets.service_account_key is None


async def test_no_binding_reads_none(h: Harness) -> None:
    async with h.db.connection() as conn:
        assert await sync_rows.load(conn, h.tenant_id) is None
