"""What one CRM API call costs in SQL statements (issue 16: API p99 < 250 ms at 100 req/s),
counted with a SQLAlchemy `before_cursor_execute` listener and pinned, so a change that adds a
round trip to every request shows here; and the served OpenAPI document, pinned byte for byte
(the routes are installed by web/api, not by FastAPI's nested include: same document)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update

from calsync.store import webhooks
from calsync.store.models import User
from calsync.store.webhook_models import WebhookDelivery
from tests.sql_events import statements

from .conftest import World

A = "/api/v1/activities"
WEEK = f"{A}?from=2025-06-02T00:00:00Z&to=2025-06-09T00:00:00Z"
SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"


def body(owner: str | None, day: int = 2, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "subject": "Kickoff",
        "start": f"2025-06-0{day}T09:00:00",
        "end": f"2025-06-0{day}T10:00:00",
        "time_zone": "Europe/Oslo",
        **fields,
    }
    if owner is not None:
        out["owner_id"] = owner
    return out


async def counted(world: World, method: str, path: str, key: str | None = None, **kw: Any) -> int:
    with statements(world.db) as sent:
        resp = await world.call(method, path, key, **kw)
    assert resp.status_code < 300, resp.text
    return len(sent)


async def test_statements_per_api_call(world: World, backend: str) -> None:
    """Pinned (SQLite numbers the feed with an UPDATE ... RETURNING of the tenant's counter,
    which also says whether the tenant has outbound-webhook endpoints; PostgreSQL numbers it at
    commit and learns the endpoints with the create's checks):
    - every call: the key with its tenant and user, one statement;
    - list a week: the activities with their attendees (a join), the read-only reasons;
    - create: owner and type checked at once; the feed's number (SQLite); the activity, the
      change (and the attendees when there are some);
    - patch: the activity with its attendees, its read-only reasons, the locked version check
      (on SQLite the feed-number UPDATE's RETURNING: the write lock is the row's), the
      UPDATE, the change;
    - the changes feed: the page."""
    numbering = 1 if backend == "sqlite" else 0
    owner, user_key = await world.user("ann@acme.test")
    guests = [{"email": "ola@example.com"}, {"email": "kari@example.com"}]
    for day in (2, 3, 4):
        resp = await world.call("POST", A, json=body(str(owner), day, attendees=guests))
        assert resp.status_code == 201, resp.text
    created = resp.json()
    assert await counted(world, "GET", WEEK) == 3
    assert await counted(world, "GET", WEEK, user_key) == 3
    assert await counted(world, "POST", A, json=body(str(owner))) == 4 + numbering
    assert await counted(world, "POST", A, json=body(str(owner), attendees=guests)) == 5 + numbering
    assert await counted(world, "POST", A, user_key, json=body(None)) == 4 + numbering
    patch = {"subject": "Moved"}
    assert await counted(world, "PATCH", f"{A}/{created['id']}", json=patch) == 6
    assert await counted(world, "GET", "/api/v1/changes?after=0") == 2
    # and the listing still carries each activity's attendees, in their order
    listed = (await world.call("GET", WEEK)).json()["activities"]
    assert sorted(len(a["attendees"]) for a in listed) == [0, 0, 2, 2, 2, 2]
    for item in listed:
        assert [g["email"] for g in item["attendees"]] in ([], [g["email"] for g in guests])


async def test_create_checks_owner_and_type_in_one_statement(world: World) -> None:
    owner, user_key = await world.user("ann@acme.test")
    other, _ = await world.user("gone@acme.test")
    async with world.db.session() as s:
        await s.execute(update(User).where(User.id == other).values(deleted_at=datetime.now(UTC)))
        await s.commit()
    for fields, code in (
        ({"owner_id": str(owner), "type": "nope"}, "unknown_type"),
        ({"owner_id": str(other)}, "unknown_owner"),
        ({"owner_id": "00000000-0000-0000-0000-000000000001"}, "unknown_owner"),
        ({"owner_id": str(other), "type": "nope"}, "unknown_owner"),
    ):
        resp = await world.call("POST", A, json=body(None, **fields))
        assert (resp.status_code, resp.json()["error"]["code"]) == (422, code), fields
    resp = await world.call("POST", A, user_key, json=body(None, type="nope"))
    assert (resp.status_code, resp.json()["error"]["code"]) == (422, "unknown_type")
    assert (await world.call("POST", A, user_key, json=body(None, type="call"))).status_code == 201


async def test_a_deleted_users_unrevoked_key_is_refused(world: World) -> None:
    """A key is read with its tenant and user in one statement: a key whose user is gone
    (tombstoned without its keys being revoked, e.g. by an older version or by hand) must not
    pass as a tenant (admin) key, which has no user either."""
    user_id, key = await world.user("gone@acme.test", role="admin")
    assert (await world.call("GET", "/api/v1/users", key)).status_code == 200
    async with world.db.session() as s:
        await s.execute(update(User).where(User.id == user_id).values(deleted_at=datetime.now(UTC)))
        await s.commit()
    for path in ("/api/v1/users", WEEK, "/api/v1/changes", "/api/v1/tenant/settings"):
        resp = await world.call("GET", path, key)
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["error"]["code"] == "invalid_api_key"
    # the tenant's key and a live user's key still work
    _, live = await world.user("here@acme.test")
    assert (await world.call("GET", "/api/v1/tenant/settings")).status_code == 200
    users = (await world.call("GET", "/api/v1/users", live)).json()["users"]
    assert [u["email"] for u in users] == ["here@acme.test"]


async def test_the_openapi_document_is_unchanged(client: httpx.AsyncClient) -> None:
    """Byte for byte the document main served before the API's routes were installed flat
    (regenerate deliberately with CALSYNC_UPDATE_OPENAPI_SNAPSHOT=1 when the API changes)."""
    served = (await client.get("/openapi.json")).content
    if os.environ.get("CALSYNC_UPDATE_OPENAPI_SNAPSHOT"):
        SNAPSHOT.write_bytes(served)
    assert served == SNAPSHOT.read_bytes()


async def test_a_create_learns_the_tenants_endpoints_with_its_checks(
    world: World, other_world: World
) -> None:
    """The endpoints are learnt with the feed's number (SQLite) or the create's checks
    (PostgreSQL), not at commit: a tenant with an endpoint still gets its delivery, one
    without gets none (another tenant's endpoint does not count)."""
    async with world.db.session() as s:
        await webhooks.create_endpoint(
            s,
            other_world.tenant_id,
            url="https://crm.example.com/hook",
            events=None,
            description=None,
        )
        await s.commit()
    owner, _ = await world.user("ann@acme.test")
    assert (await world.call("POST", A, json=body(str(owner)))).status_code == 201
    async with world.db.session() as s:
        await webhooks.create_endpoint(
            s, world.tenant_id, url="https://crm.example.com/hook", events=None, description=None
        )
        await s.commit()
    resp = await world.call("POST", A, json=body(str(owner)))
    assert resp.status_code == 201
    async with world.db.session() as s:
        count = await s.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.tenant_id == world.tenant_id)
        )
    assert count == 1
