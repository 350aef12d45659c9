"""The reference CRM's webhook receiver on its own (no calsync running): what an integrator copies
must verify signatures, apply a message once however often it is delivered, and never let an
older version of an activity overwrite a newer one. It talks to calsync only over HTTP."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "reference_crm" / "crm.py"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_crm", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_crm"] = module
    spec.loader.exec_module(module)
    return module


class Crm:
    """The CRM app in this process (no calsync behind it) and its database."""

    def __init__(self, tmp_path: Path) -> None:
        module = load()
        self.store = module.Store(str(tmp_path / "crm.db"))
        self.store.set_setting("webhook_secret", SECRET)
        app = self.app = module.create_app(self.store, calsync=None, public_url="http://crm.test")
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://crm.test"
        )

    async def post(self, content: str, headers: dict[str, str]) -> int:
        resp = await self.http.post("/webhooks/calsync", content=content, headers=headers)
        return resp.status_code


@pytest.fixture
async def crm(tmp_path: Path) -> AsyncIterator[Crm]:
    app = Crm(tmp_path)
    yield app
    await app.http.aclose()


def activity(version: int, subject: str, deleted: bool = False) -> dict[str, Any]:
    return {
        "id": "7c1e0d6a-3f55-4c1b-9b7e-2b0f3f0c9a11",
        "owner_id": "0b7d5c1e-0000-4000-8000-000000000001",
        "subject": subject,
        "location": None,
        "start": "2026-12-10T09:00:00+00:00",
        "end": "2026-12-10T10:00:00+00:00",
        "all_day": False,
        "status": "confirmed",
        "version": version,
        "deleted_at": "2026-12-10T08:00:00Z" if deleted else None,
    }


async def send(
    client: Crm, body: dict[str, Any], msg_id: str | None = None, secret: str = SECRET
) -> int:
    payload = json.dumps(body)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret).sign(msg_id, datetime.now(UTC), payload)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return await client.post(payload, headers)


def subjects(client: Crm) -> list[tuple[str, int, int]]:
    rows = client.store.query("SELECT subject, version, deleted FROM activity")
    return [(r["subject"], r["version"], r["deleted"]) for r in rows]


def event(kind: str, act: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": "2026-12-10T08:00:00Z",
        "data": {"source": "google", "activity": act},
    }


async def test_a_message_is_applied_once_however_often_it_arrives(crm: Crm) -> None:
    assert await send(crm, event("activity.created", activity(1, "Kickoff")), "msg_1") == 204
    assert await send(crm, event("activity.updated", activity(2, "Kickoff, moved")), "msg_2") == 204
    # msg_1 delivered again (at least once): the view keeps version 2
    assert await send(crm, event("activity.created", activity(1, "Kickoff")), "msg_1") == 204
    assert subjects(crm) == [("Kickoff, moved", 2, 0)]


async def test_an_older_version_never_overwrites_a_newer_one(crm: Crm) -> None:
    await send(crm, event("activity.deleted", activity(3, "Kickoff", deleted=True)))
    await send(crm, event("activity.updated", activity(2, "Kickoff, moved")))  # a late retry
    assert subjects(crm) == [("Kickoff", 3, 1)]


async def test_a_bad_signature_or_a_stale_timestamp_is_refused_and_changes_nothing(
    crm: Crm,
) -> None:
    body = json.dumps(event("activity.created", activity(1, "Forged")))
    forged = Webhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==").sign(
        "msg_x", datetime.now(UTC), body
    )
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
        "webhook-signature": forged,
    }
    assert await crm.post(body, headers) == 400
    stale = {**headers, "webhook-timestamp": "1700000000"}
    stale["webhook-signature"] = Webhook(SECRET).sign(
        "msg_x", datetime.fromtimestamp(1700000000, UTC), body
    )
    assert await crm.post(body, stale) == 400
    assert subjects(crm) == []
    # and the refused id was not remembered: the genuine message still applies
    assert await send(crm, json.loads(body), "msg_x") == 204
    assert subjects(crm) == [("Forged", 1, 0)]


async def test_connection_events_become_notices_and_reconnecting_clears_them(crm: Crm) -> None:
    user = "0b7d5c1e-0000-4000-8000-000000000001"
    data = {"user_id": user, "google_email": "ada@example.com", "message": "access revoked"}
    await send(crm, {"type": "connection.needs_reauth", "timestamp": "t", "data": data})
    rows = crm.store.query("SELECT kind, text FROM notice")
    assert [(r["kind"], r["text"]) for r in rows] == [
        ("connection.needs_reauth", "Google needs ada@example.com to sign in again: access revoked")
    ]
    await send(crm, {"type": "connection.reconnected", "timestamp": "t", "data": data})
    rows = crm.store.query("SELECT kind FROM notice")
    assert [r["kind"] for r in rows] == ["connection.reconnected"]


NEW_SECRET = "whsec_" + "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ="
HOOK = "http://crm.test/webhooks/calsync"


class FakeCalsync:
    """calsync's answers to the calls the CRM makes around a rotation, and what was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append((method, path))
        answers = {
            ("POST", "/webhook-endpoints/ep_1/rotate-secret"): {"secret": NEW_SECRET},
            ("GET", "/webhook-endpoints/ep_1"): {"url": HOOK, "enabled": True},
            ("GET", "/users"): {"users": []},
            ("GET", "/activities"): {"activities": []},
        }
        return answers[(method, path)]


async def test_rotating_stores_the_new_secret_and_accepts_the_old_one_for_a_day(crm: Crm) -> None:
    fake = FakeCalsync()
    crm.store.set_setting("endpoint_id", "ep_1")
    crm.app.state.calsync = fake
    resp = await crm.http.post("/admin/rotate-webhook-secret")
    assert resp.status_code == 303
    assert fake.calls == [("POST", "/webhook-endpoints/ep_1/rotate-secret")]
    assert crm.store.setting("webhook_secret") == NEW_SECRET
    # calsync signs with both for 24 h; a message signed with the old one alone (in flight
    # while the rotation ran) still verifies, and so does one signed with the new one
    assert await send(crm, event("activity.created", activity(1, "Old key"))) == 204
    assert (
        await send(crm, event("activity.updated", activity(2, "New key")), secret=NEW_SECRET) == 204
    )
    assert subjects(crm) == [("New key", 2, 0)]
    # a day later the old secret is no longer accepted
    crm.store.set_setting("previous_webhook_secret_until", "2000-01-01T00:00:00+00:00")
    assert await send(crm, event("activity.updated", activity(3, "Stale key"))) == 400
    assert subjects(crm) == [("New key", 2, 0)]


@pytest.mark.parametrize(("age_days", "rotated"), [(10, False), (100, True)])
def test_the_crm_rotates_an_old_secret_at_start(
    tmp_path: Path, age_days: int, rotated: bool
) -> None:
    module = load()
    store = module.Store(str(tmp_path / "crm.db"))
    store.set_setting("endpoint_id", "ep_1")
    store.set_setting("webhook_secret", SECRET)
    since = datetime.now(UTC) - timedelta(days=age_days)
    store.set_setting("webhook_secret_since", since.isoformat())
    fake = FakeCalsync()
    module.connect(store, fake, "http://crm.test", rotate_after_days=90)
    assert (("POST", "/webhook-endpoints/ep_1/rotate-secret") in fake.calls) is rotated
    assert store.setting("webhook_secret") == (NEW_SECRET if rotated else SECRET)


def test_it_uses_calsync_only_over_http() -> None:
    """The example must stay an example of the public API: no import of calsync's code."""
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"calsync", "gcal_emulator", "tests"}, imported
