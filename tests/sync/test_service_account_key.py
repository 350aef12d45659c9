"""A company's service-account key replaced in Settings takes effect in every process.

Each process (a web process, a procrastinate worker) keeps one token source per company,
built from the stored key. The admin replaces a key typically because the old one leaked or
was deleted in Google Cloud; a process that kept signing with the old key would fail every
sync until restarted. Here two `GoogleAccess` instances are two processes on one database;
the key is replaced through the normal store path (`store_key`) in the first, deleted in
Google (IAM keys.delete), and the second's next sync must work with the new key, with nothing
lost on either side."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from calsync.store import connections, google_settings, tenants
from calsync.store.models import Tenant
from calsync.sync.connect_service_account import store_key
from calsync.sync.context import Hooks
from calsync.sync.engine import RunResult, sync_binding
from calsync.sync.errors import Outcome
from calsync.sync.google_services import GoogleServices
from calsync.sync.tokens import GoogleAccess

from .conftest import Harness, at, retry_policy

SA = "sync@crm-project.iam.gserviceaccount.com"
CALENDAR = "https://www.googleapis.com/auth/calendar"


class Company:
    """The harness's company connected through a service account, and two processes."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        # process 1 handles the admin's upload (and syncs too); process 2 only syncs
        self.one = GoogleServices(
            h.settings,
            GoogleAccess(h.settings, retry=retry_policy(), rate_limiter=None),
            h.oauth,
            retry_policy(),
        )
        self.two = GoogleAccess(h.settings, retry=retry_policy(), rate_limiter=None)

    def new_key(self) -> dict[str, Any]:
        """Google Cloud console's "Add key" (the first one also authorises delegation)."""
        created: dict[str, Any] = self.h.emu.control(
            "POST", "/service-accounts", {"client_email": SA}
        ).json()
        self.h.emu.control(
            "POST",
            "/domains/example.com/delegations",
            {"client_id": created["client_id"], "scopes": [CALENDAR]},
        )
        return created

    async def upload(self, created: dict[str, Any]) -> None:
        """The admin uploads the JSON key in Settings, through process 1."""
        async with self.h.db.session() as s:
            tenant = await tenants.get(s, self.h.tenant_id)
            assert tenant is not None
            raw = json.dumps(created["json_key"]).encode()
            await store_key(s, self.one, tenant, raw, filename="key.json")

    async def connect(self, created: dict[str, Any]) -> None:
        await self.upload(created)
        async with self.h.db.session() as s:
            conn = await connections.get(s, self.h.connection_id)
            assert conn is not None
            await google_settings.switch_to_service_account(s, conn, self.h.email)
            await s.commit()

    async def sync(self, access: GoogleAccess, **kwargs: Any) -> RunResult:
        return await sync_binding(self.h.db, self.h.binding_id, access, **kwargs)

    def expire_tokens(self) -> None:
        """An hour later: the access tokens the processes hold have expired."""
        self.h.emu.control("POST", "/tokens/expire", {"email": self.h.email})

    async def aclose(self) -> None:
        await self.one.aclose()
        await self.two.aclose()


@pytest.fixture
async def company(h: Harness) -> AsyncIterator[Company]:
    c = Company(h)
    yield c
    await c.aclose()


async def test_a_replaced_key_takes_effect_in_every_process(h: Harness, company: Company) -> None:
    a = company.new_key()
    await company.connect(a)
    await h.activity("Visit", at(1, 9))
    result = await company.sync(company.one.access)
    assert result.outcome is Outcome.OK and result.counts["pushed"] == 1, (
        result.counts,
        result.error,
    )
    await h.ginsert("Dentist", at(2, 10))
    result = await company.sync(company.two)
    assert result.outcome is Outcome.OK and result.counts["created"] == 1, (
        result.counts,
        result.error,
    )

    # the key leaked: the admin adds key B, uploads it in process 1, deletes key A
    b = company.new_key()
    await company.upload(b)
    h.emu.delete_service_account_key(SA, a["private_key_id"])
    company.expire_tokens()

    # both sides changed meanwhile; process 2 syncs next
    await h.activity("Call", at(3, 11))
    await h.ginsert("Lunch", at(4, 12))
    result = await company.sync(company.two)
    assert result.outcome is Outcome.OK, result.error
    assert result.counts["pushed"] == 1 and result.counts["created"] == 1, result
    result = await company.sync(company.one.access)
    assert result.outcome is Outcome.OK, result.error
    assert sorted(a.subject for a in await h.live_activities()) == [
        "Call",
        "Dentist",
        "Lunch",
        "Visit",
    ]
    assert sorted(e.summary or "" for e in await h.events()) == [
        "Call",
        "Dentist",
        "Lunch",
        "Visit",
    ]


async def test_a_key_replaced_while_a_sync_runs_elsewhere_loses_nothing(
    h: Harness, company: Company
) -> None:
    """Process 2's run started with key A; between its pull and its push the key is replaced
    and A deleted. That run may fail (its token source is A's); the next one uses B and
    pushes what the first could not."""
    a = company.new_key()
    await company.connect(a)
    assert (await company.sync(company.two)).outcome is Outcome.OK
    await h.activity("Visit", at(1, 9))
    await h.ginsert("Dentist", at(2, 10))

    async def replaced(_ctx: Any) -> None:
        await company.upload(company.new_key())
        h.emu.delete_service_account_key(SA, a["private_key_id"])
        company.expire_tokens()

    await company.sync(company.two, hooks=Hooks(after_pull=replaced))
    result = await company.sync(company.two)
    assert result.outcome is Outcome.OK, result.error
    assert sorted(a.subject for a in await h.live_activities()) == ["Dentist", "Visit"]
    assert sorted(e.summary or "" for e in await h.events()) == ["Dentist", "Visit"]
    link = await h.link((await h.live_activities())[0].id)
    assert link is not None and link.state == "linked"


async def test_a_deleted_key_fails_the_sync_with_the_remedy(h: Harness, company: Company) -> None:
    """No new key uploaded: the sync says what is wrong and what to do, and the CRM's
    changes wait for the new key."""
    a = company.new_key()
    await company.connect(a)
    assert (await company.sync(company.two)).outcome is Outcome.OK
    h.emu.delete_service_account_key(SA, a["private_key_id"])
    company.expire_tokens()
    await h.activity("Visit", at(1, 9))
    result = await company.sync(company.two)
    assert result.outcome is Outcome.FAILED and result.error is not None, result
    assert result.error.code == "google.service_account_key"
    assert "key or the service account was deleted" in result.error.message
    assert "Add key" in (result.error.remedy or "")

    await company.upload(company.new_key())
    result = await company.sync(company.two)
    assert result.outcome is Outcome.OK and result.counts["pushed"] == 1, (
        result.counts,
        result.error,
    )
    assert [e.summary for e in await h.events()] == ["Visit"]


async def test_a_garbled_stored_key_fails_the_sync_with_the_remedy(
    h: Harness, company: Company
) -> None:
    """A stored key that is no key (written around `store_key`, which refuses one) fails each
    process's sync with the key's own message and remedy."""
    await company.connect(company.new_key())
    async with h.db.session() as s:
        await s.execute(
            update(Tenant).where(Tenant.id == h.tenant_id).values(service_account_key=b"{garbled")
        )
        await s.commit()
    result = await company.sync(company.two)
    assert result.outcome is Outcome.FAILED and result.error is not None, result
    assert result.error.code == "google.service_account_key"
    assert "is not a JSON file" in result.error.message
    assert "Add key" in (result.error.remedy or "")


async def test_a_process_that_had_a_working_key_reports_a_garbled_new_one(
    h: Harness, company: Company
) -> None:
    """The stored key replaced by one that is no key (stored around `store_key`'s checks):
    a process that synced with the previous key does not go on with it unnoticed, it says
    what the admin must fix; a good key uploaded then works at once."""
    await company.connect(company.new_key())
    assert (await company.sync(company.two)).outcome is Outcome.OK
    async with h.db.session() as s:
        tenant = await tenants.get(s, h.tenant_id)
        assert tenant is not None
        await tenants.store_service_account_key(
            s, tenant, b"{garbled", key_format="json", password=None, client_email=SA
        )
        await s.commit()
    result = await company.sync(company.two)
    assert result.outcome is Outcome.FAILED and result.error is not None, result
    assert result.error.code == "google.service_account_key"
    assert "is not a JSON file" in result.error.message
    await company.upload(company.new_key())
    await h.activity("Visit", at(1, 9))
    result = await company.sync(company.two)
    assert result.outcome is Outcome.OK and result.counts["pushed"] == 1, result.error
