"""What a sync pays besides its SQL statements (tests/sync/test_incremental.py counts those):
its transactions and the secrets it decrypts (issue 16: a sync's CPU is mostly its fixed
cost). Transactions are counted with SQLAlchemy's `begin` event; decryptions with a spy on
the keyring."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from calsync.store import crypto, tenants
from calsync.store.models import CalendarBinding, GoogleConnection, Tenant
from calsync.store.statuses import AuthMode
from tests.sql_events import transactions

from .conftest import Harness, at


@pytest.fixture
def decrypted(monkeypatch: pytest.MonkeyPatch, keyring: crypto.Keyring) -> list[int]:
    """One item per stored secret decrypted."""
    seen: list[int] = []
    real = crypto.Keyring.decrypt

    def spy(self: crypto.Keyring, token: str) -> bytes:
        seen.append(1)
        return real(self, token)

    monkeypatch.setattr(crypto.Keyring, "decrypt", spy)
    return seen


async def linked(h: Harness) -> str:
    """A CRM entry and a Google event, synced (linked both ways); the event's id."""
    await h.activity("Visit", at(1, 9))
    lunch = await h.ginsert("Lunch", at(2, 12))
    assert (await h.sync()).ok
    assert (await h.sync()).ok  # the echo of the push's insert
    assert lunch.id is not None
    return lunch.id


async def test_a_no_op_sync_takes_two_transactions(h: Harness) -> None:
    """The start (lock, read, the run's row) and the end, which reads what the push would
    write (nothing) before it stores the run's end."""
    await linked(h)
    with transactions(h.db) as begun:
        result = await h.sync()
    assert result.ok and result.counts["pulled"] == 0, result
    assert len(begun) == 2, begun


async def test_a_sync_of_one_google_change_takes_four_transactions(h: Harness) -> None:
    """The start, the read of the listed event's link with its activity, the event's own
    write, the end (with the push's reads)."""
    lunch = await linked(h)
    await h.gpatch(lunch, {"summary": "Lunch, moved"})
    with transactions(h.db) as begun:
        result = await h.sync()
    assert result.ok and result.counts["updated"] == 1, result
    assert len(begun) == 4, begun


async def test_a_sync_of_one_crm_change_takes_five_transactions(h: Harness) -> None:
    """The start, the push's reads (ended before its first request), the plan with the echo
    the calendar's channel owes the planned write (both stored before the request leaves),
    Google's answer stored on the link, the end."""
    crm = await h.activity("Visit", at(1, 9))
    assert (await h.sync()).ok
    assert (await h.sync()).ok  # the echo of the push's insert
    await h.edit(crm, subject="Visit, moved")
    with transactions(h.db) as begun:
        result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1, result
    assert len(begun) == 5, begun


async def test_a_sync_decrypts_only_the_access_token_it_sends(
    h: Harness, decrypted: list[int]
) -> None:
    """The start's read leaves the connection's and the binding's secrets encrypted: the
    access token is decrypted when the first request to Google needs it (once a process: the
    next syncs send the one kept), the refresh token only for a refresh, the channel tokens
    never (the webhook receiver checks them)."""
    lunch = await linked(h)
    h.google._access_tokens.clear()  # as in a process's first sync of the connection
    async with h.db.session() as s:  # a channel's tokens, as a watched calendar has
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == h.binding_id)
            .values(channel_token="secret-1", twin_channel_token="secret-2")
        )
        await s.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == h.connection_id)
            .values(list_channel_token="secret-3")
        )
        await s.commit()
    decrypted.clear()
    assert (await h.sync()).ok
    assert len(decrypted) == 1, decrypted
    await h.gpatch(lunch, {"summary": "Lunch, moved"})
    decrypted.clear()
    result = await h.sync()
    assert result.ok and result.counts["updated"] == 1, result
    assert decrypted == []  # the token kept by the sync before
    # an expired access token is not decrypted: the refresh token is, for the refresh
    async with h.db.session() as s:
        await s.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == h.connection_id)
            .values(access_token_expires_at=datetime.now(UTC) - timedelta(minutes=5))
        )
        await s.commit()
    decrypted.clear()
    assert (await h.sync()).ok
    assert len(decrypted) == 1, decrypted
    decrypted.clear()  # the refreshed token, stored by the refresh, is the next run's
    assert (await h.sync()).ok
    assert len(decrypted) == 1, decrypted


async def test_the_next_sync_of_the_same_stored_access_token_decrypts_nothing(
    h: Harness, decrypted: list[int]
) -> None:
    """The process keeps the access token it decrypted for a connection, tagged with the
    stored (encrypted) text it came from: the next sync that reads the same text sends it
    without decrypting again; a token stored since (a refresh, another process's) is
    decrypted once."""
    await linked(h)
    assert (await h.sync()).ok
    decrypted.clear()
    assert (await h.sync()).ok
    assert decrypted == []
    # the same token stored again (encrypted anew), as another process would: decrypted
    # once, then kept
    async with h.db.session() as s:
        connection = await s.get(GoogleConnection, h.connection_id)
        assert connection is not None
        await s.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == h.connection_id)
            .values(access_token=connection.access_token)
        )
        await s.commit()
    decrypted.clear()
    assert (await h.sync()).ok
    assert len(decrypted) == 1, decrypted
    assert (await h.sync()).ok
    assert len(decrypted) == 1, decrypted


async def test_a_sync_that_sends_nothing_to_google_decrypts_nothing(
    h: Harness, decrypted: list[int]
) -> None:
    """A CRM → Google calendar with nothing to write sends no request: no token is needed."""
    await h.set_direction("crm_to_google")
    assert (await h.sync()).ok  # its first sync lists the account's calendars
    decrypted.clear()
    mark = h.mark()
    assert (await h.sync()).ok
    assert h.requests_since(mark) == []
    assert decrypted == []


async def test_a_service_account_sync_decrypts_the_key_once_a_process(
    h: Harness, decrypted: list[int]
) -> None:
    """A company connected through a service account: the first sync of the process decrypts
    the tenant's key (the token source is kept per tenant and key version), the next ones
    nothing."""
    created = h.emu.control(
        "POST", "/service-accounts", {"client_email": "sync@crm.iam.gserviceaccount.com"}
    ).json()
    h.emu.control(
        "POST",
        "/domains/example.com/delegations",
        {"client_id": created["client_id"], "scopes": ["https://www.googleapis.com/auth/calendar"]},
    )
    async with h.db.session() as s:
        tenant = await s.get(Tenant, h.tenant_id)
        connection = await s.get(GoogleConnection, h.connection_id)
        assert tenant is not None and connection is not None
        tenant.auth_mode = connection.auth_mode = AuthMode.SERVICE_ACCOUNT
        tenant.service_account_email = created["json_key"]["client_email"]
        tenant.service_account_key = json.dumps(created["json_key"]).encode()
        tenant.service_account_key_format = "json"
        connection.refresh_token = connection.access_token = None
        await s.commit()
    await h.activity("Visit", at(1, 9))
    decrypted.clear()
    result = await h.sync()
    assert result.ok and result.counts["pushed"] == 1, result
    assert len(decrypted) == 1, decrypted
    decrypted.clear()
    assert (await h.sync()).ok
    assert decrypted == []
    # the key stored again (a new version, by any process): decrypted once more, then not
    async with h.db.session() as s:
        tenant = await s.get(Tenant, h.tenant_id)
        assert tenant is not None
        await tenants.store_service_account_key(
            s,
            tenant,
            json.dumps(created["json_key"]).encode(),
            key_format="json",
            password=None,
            client_email=created["json_key"]["client_email"],
        )
        await s.commit()
    decrypted.clear()
    assert (await h.sync()).ok
    assert len(decrypted) == 1, decrypted
    decrypted.clear()
    assert (await h.sync()).ok
    assert decrypted == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # SQLite's driver alone
async def test_a_syncs_small_reads_and_later_writes_make_no_trip_to_sqlites_thread(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the sync's small reads (its start's read, what the push owes, the listed
    event's link and activity, the plan's activity and link) and the writes of its start, its
    end and a pulled event after each transaction's first run on the loop's thread
    (store/sqlite_driver: reads_on_loop, writes_on_loop): only each transaction's first
    write, the plan's and the commits go to aiosqlite's."""
    assert h.db.dialect == "sqlite"
    import aiosqlite

    crm = await h.activity("Visit", at(1, 9))
    lunch = await linked(h)
    trips: list[str] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: object, *args: object) -> object:
        name = getattr(fn, "__name__", repr(fn))
        trips.append(f"{name} {str(args[1]).split()[0]}" if name == "_run" else name)
        return await real(self, fn, *args)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    assert (await h.sync()).ok  # nothing changed
    # the start's lock UPDATE and its commit; the end's first UPDATE and its commit
    start = ["_run UPDATE", "commit"]
    end = ["_run UPDATE", "commit"]
    assert trips == start + end, trips
    trips.clear()
    await h.gpatch(lunch, {"summary": "Lunch, moved"})
    assert (await h.sync()).counts["updated"] == 1
    # the event's first write (the change feed's number) and the commit
    assert trips == [*start, "_run UPDATE", "commit", *end], trips
    await h.edit(crm, subject="Visit, moved")
    trips.clear()
    assert (await h.sync()).counts["pushed"] == 1
    # the plan's echo UPDATE and commit, the link's UPDATE and commit
    assert trips == [*start, "_run UPDATE", "commit", "_run UPDATE", "commit", *end], trips
