"""Activity events from CRM writes, verified with the standardwebhooks library; retries,
exhaustion and disabling; rotation; redirects; the body never stored; a crash in between."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from calsync.domain.activity import ActivityDraft, validate
from calsync.jobs.factory import make_job_queue
from calsync.jobs.webhooks import BATCH, PER_ENDPOINT, TIMEOUT_SECONDS, Deliverer
from calsync.settings import Settings
from calsync.store import activities, webhooks
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.models import Activity
from calsync.store.statuses import DeliveryStatus
from calsync.store.webhook_deliveries import RETRY_DELAYS
from calsync.store.webhook_models import WebhookDelivery, WebhookMessage
from tests.calsync.conftest import World
from tests.sql_events import statements, transactions

from .conftest import add_endpoint, deliver
from .receiver import Receiver


async def _activity(world: World, subject: str = "Budget review") -> dict[str, Any]:
    owner, _ = await world.user(f"owner-{subject.replace(' ', '')}@example.com")
    resp = await world.call(
        "POST",
        "/api/v1/activities",
        json={
            "owner_id": str(owner),
            "subject": subject,
            "start": "2030-01-07T10:00:00+01:00",
            "end": "2030-01-07T11:00:00+01:00",
            "time_zone": "Europe/Oslo",
        },
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _verified(secret: str, request: Any) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def test_crm_create_update_delete_are_delivered_and_verify(
    world: World, db: Database, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    created = await _activity(world)
    resp = await world.call(
        "PATCH", f"/api/v1/activities/{created['id']}", json={"subject": "Budget"}
    )
    assert resp.status_code == 200, resp.text
    updated = resp.json()
    resp = await world.call("DELETE", f"/api/v1/activities/{created['id']}")
    assert resp.status_code == 204, resp.text

    assert await deliver(db) == 3
    requests = receiver.wait_for(3)
    bodies = [_verified(secret, r) for r in requests]
    assert sorted(b["type"] for b in bodies) == [
        "activity.created",
        "activity.deleted",
        "activity.updated",
    ]
    by_type = {b["type"]: b for b in bodies}
    assert all(b["data"]["source"] == "crm" for b in bodies)
    # the activity as the REST API showed it at that moment (read_only/problem aside)
    for name, shown in (("activity.created", created), ("activity.updated", updated)):
        expected = {k: v for k, v in shown.items() if k not in ("read_only", "problem")}
        assert by_type[name]["data"]["activity"] == expected
    assert by_type["activity.deleted"]["data"]["activity"]["deleted_at"] is not None
    for r in requests:
        assert r.headers["content-type"] == "application/json"
        assert r.headers["webhook-id"].startswith("msg_")
        assert r.headers["webhook-signature"].startswith("v1,")
    assert len({r.headers["webhook-id"] for r in requests}) == 3
    # nothing is sent twice
    assert await deliver(db) == 0

    log = await world.call("GET", f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries")
    assert log.status_code == 200, log.text
    entries = log.json()["deliveries"]
    assert {e["status"] for e in entries} == {"succeeded"}
    assert all(e["attempts"] == 1 and e["http_status"] == 204 for e in entries)
    assert all(e["latency_ms"] is not None for e in entries)


async def test_event_filter_and_wrong_secret(
    world: World, db: Database, receiver: Receiver
) -> None:
    only_deletes = await add_endpoint(world, receiver.url, events=["activity.deleted"])
    created = await _activity(world, "Filtered")
    assert await deliver(db) == 0
    await world.call("DELETE", f"/api/v1/activities/{created['id']}")
    assert await deliver(db) == 1
    (request,) = receiver.wait_for(1)
    assert _verified(only_deletes["secret"], request)["type"] == "activity.deleted"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(request.body, request.headers)


async def test_failing_receiver_is_retried_on_the_schedule_with_one_webhook_id(
    world: World, db: Database, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    receiver.statuses = [500, 503, 404]
    await _activity(world, "Retried")
    now = utcnow()
    assert await deliver(db, now) == 1
    # not yet due again: the second attempt waits 5 s, the third 5 min
    assert await deliver(db, now + timedelta(seconds=4)) == 0
    assert await deliver(db, now + timedelta(seconds=6)) == 1
    assert await deliver(db, now + timedelta(seconds=6 + 299)) == 0
    assert await deliver(db, now + timedelta(seconds=6 + 301)) == 1
    log = (await world.call("GET", f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries")).json()
    (entry,) = log["deliveries"]
    assert entry["status"] == "failed" and entry["attempts"] == 3 and entry["http_status"] == 404
    assert await deliver(db) == 0  # the fourth waits 30 min
    assert await deliver(db, now + timedelta(seconds=6 + 301 + 1801)) == 1
    requests = receiver.wait_for(4)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    # the last (on time) verifies
    assert Webhook(endpoint["secret"]).verify(requests[0].body, requests[0].headers)
    log = (await world.call("GET", f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries")).json()
    (entry,) = log["deliveries"]
    assert entry["status"] == "succeeded" and entry["attempts"] == 4
    got = (await world.call("GET", f"/api/v1/webhook-endpoints/{endpoint['id']}")).json()
    assert got["consecutive_failures"] == 0 and got["last_success_at"] is not None


async def test_exhaustion_disables_the_endpoint_with_a_reason(
    world: World, db: Database, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    receiver.default = 500
    await _activity(world, "Exhausted")
    at = utcnow()
    for delay in RETRY_DELAYS:
        at += timedelta(seconds=delay + 1)
        assert await deliver(db, at) == 1
    assert len(receiver.wait_for(len(RETRY_DELAYS))) == len(RETRY_DELAYS)
    got = (await world.call("GET", f"/api/v1/webhook-endpoints/{endpoint['id']}")).json()
    assert got["enabled"] is False and got["disabled_at"] is not None
    assert "HTTP 500" in got["disabled_reason"] and "enable" in got["disabled_reason"]
    log = (await world.call("GET", f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries")).json()
    (entry,) = log["deliveries"]
    assert entry["status"] == "exhausted" and entry["attempts"] == len(RETRY_DELAYS)
    # a disabled endpoint gets no new messages and sends nothing
    await _activity(world, "While disabled")
    assert await deliver(db, at + timedelta(days=1)) == 0
    # enabled again (receiver fixed), a replay of what it missed goes out, same webhook-id
    receiver.default = 200
    resp = await world.call(
        "PATCH", f"/api/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}
    )
    assert resp.status_code == 200 and resp.json()["disabled_reason"] is None, resp.text
    message_id = entry["message_id"]
    resp = await world.call(
        "POST", f"/api/v1/webhook-endpoints/{endpoint['id']}/messages/{message_id}/replay"
    )
    assert resp.status_code == 202, resp.text
    assert await deliver(db) == 1
    last = receiver.wait_for(len(RETRY_DELAYS) + 1)[-1]
    assert last.headers["webhook-id"] == message_id
    assert Webhook(endpoint["secret"]).verify(last.body, last.headers)


async def test_rotation_signs_with_both_secrets_for_a_day(
    world: World, db: Database, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    old = endpoint["secret"]
    resp = await world.call("POST", f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
    assert resp.status_code == 200, resp.text
    new = resp.json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert resp.json()["previous_secret_expires_at"] is not None
    await _activity(world, "Rotated")
    assert await deliver(db) == 1
    (request,) = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(request.body, request.headers)
    assert Webhook(new).verify(request.body, request.headers)
    # after 24 hours only the new secret signs
    await _activity(world, "Rotated later")
    later = utcnow() + timedelta(hours=24, minutes=1)
    assert await deliver(db, later) == 1
    request = receiver.wait_for(2)[1]
    (signature,) = request.headers["webhook-signature"].split(" ")
    text = request.body.decode()
    msg_id = request.headers["webhook-id"]
    assert signature == Webhook(new).sign(msg_id, later, text)
    assert signature != Webhook(old).sign(msg_id, later, text)


async def test_redirects_are_not_followed_and_bodies_not_stored(
    world: World, db: Database, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    receiver.statuses = [302]
    receiver.location = receiver.url + "/elsewhere"
    receiver.body = b"SECRET-RESPONSE-BODY"
    await _activity(world, "Redirected")
    assert await deliver(db) == 1
    requests = receiver.wait_for(1)
    assert [r.path for r in requests] == ["/hooks"]  # the Location was never requested
    log = (await world.call("GET", f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries")).json()
    (entry,) = log["deliveries"]
    assert entry["status"] == "failed" and entry["http_status"] == 302
    assert "redirect" in entry["error"]
    # a 2xx with a body: succeeded, and the body is nowhere in the database
    receiver.location = None
    receiver.default = 200
    assert await deliver(db, utcnow() + timedelta(seconds=6)) == 1
    async with db.engine.connect() as conn:
        from sqlalchemy import text

        for table in ("webhook_delivery", "webhook_message", "webhook_endpoint"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            assert "SECRET-RESPONSE-BODY" not in repr(rows)


async def test_a_crash_between_change_and_delivery_delivers_once_after_restart(
    world: World, db: Database, receiver: Receiver, app_settings: Settings
) -> None:
    """The change commits with its outbox row; the process dies before any deliverer ran. A
    fresh runner on the same database (its webhook tick) delivers it, exactly once."""
    endpoint = await add_endpoint(world, receiver.url)
    await _activity(world, "Crash")
    assert receiver.requests == []
    settings = app_settings.model_copy(update={"webhook_tick_seconds": 0.05})
    queue = make_job_queue(settings, db, google=None)  # type: ignore[arg-type]
    await queue.start()
    try:
        (request,) = await receiver.arrived(1)
        assert Webhook(endpoint["secret"]).verify(request.body, request.headers)
    finally:
        await queue.stop()
    # a second fresh process finds nothing more to send
    assert await deliver(db) == 0
    assert len(receiver.requests) == 1


async def test_a_crash_after_the_claim_sends_again_after_the_lease(
    world: World, db: Database, receiver: Receiver
) -> None:
    """A deliverer claimed a delivery, then died before sending: its lease runs out and the
    next deliverer sends it (at-least-once, same webhook-id)."""
    from calsync.store import webhook_deliveries

    await add_endpoint(world, receiver.url)
    await _activity(world, "Claimed")
    async with db.session() as s:
        (claim,) = await webhook_deliveries.claim_due(s, utcnow(), 10)
        await s.commit()
    assert await deliver(db) == 0  # held by the dead claim
    assert await deliver(db, utcnow() + webhook_deliveries.CLAIM_LEASE) == 1
    (request,) = receiver.wait_for(1)
    assert request.headers["webhook-id"] == claim.message_id


async def test_the_embedded_runner_sends_at_once_after_a_commit_not_at_its_next_tick(
    world: World, db: Database, receiver: Receiver, app_settings: Settings
) -> None:
    endpoint = await add_endpoint(world, receiver.url)
    settings = app_settings.model_copy(update={"webhook_tick_seconds": 600})
    queue = make_job_queue(settings, db, google=None)  # type: ignore[arg-type]
    await queue.start()
    try:
        await asyncio.sleep(0.2)  # its first pass found nothing; the next tick is 10 min away
        started = time.monotonic()
        await _activity(world, "Woken")
        (request,) = await receiver.arrived(1)
        assert time.monotonic() - started < 5
        assert Webhook(endpoint["secret"]).verify(request.body, request.headers)
    finally:
        await queue.stop()


async def test_two_deliverers_at_once_send_each_delivery_once(
    world: World, db: Database, db_url: str, receiver: Receiver
) -> None:
    """Several processes tick at the same time: the claim (one UPDATE whose subquery picks the
    due rows: FOR UPDATE SKIP LOCKED on PostgreSQL, under the write lock on SQLite) gives each
    delivery to one of them."""
    await add_endpoint(world, receiver.url)
    for i in range(12):
        await _activity(world, f"Parallel {i}")
    other = Database(db_url)
    try:
        sent = await asyncio.gather(deliver(db), deliver(other), deliver(db))
    finally:
        await other.dispose()
    assert sum(sent) == 12
    requests = receiver.wait_for(12)
    assert len({r.headers["webhook-id"] for r in requests}) == 12 == len(requests)


async def test_an_edit_reads_the_endpoints_with_the_activity_and_a_new_one_still_counts(
    world: World, db: Database
) -> None:
    """An edit learns whether the tenant has an enabled endpoint from its locked read of the
    activity (no second read at commit when it has none), and an endpoint made later in the
    same transaction still gets the edit's message."""
    created = await _activity(world)

    def edit(subject: str) -> Any:
        return validate(
            ActivityDraft(
                subject=subject,
                start=datetime(2030, 1, 7, 10),
                end=datetime(2030, 1, 7, 11),
                time_zone="Europe/Oslo",
            )
        )

    async def messages() -> int:
        async with db.session() as s:
            found = await s.scalar(
                select(func.count())
                .select_from(WebhookMessage)
                .where(WebhookMessage.tenant_id == world.tenant_id)
            )
        return int(found or 0)

    async with db.session() as s:
        row = await s.get(Activity, uuid.UUID(created["id"]))
        assert row is not None
        await activities.update(s, row, edit("no endpoint yet"))
        await s.commit()
    assert await messages() == 0
    async with db.session() as s:
        row = await s.get(Activity, uuid.UUID(created["id"]))
        assert row is not None
        await activities.update(s, row, edit("the endpoint comes in this transaction"))
        await webhooks.create_endpoint(
            s, world.tenant_id, url="https://example.com/hook", events=None, description=None
        )
        await s.commit()
    assert await messages() == 1
    async with db.session() as s:  # with an enabled endpoint, the commit reads them
        row = await s.get(Activity, uuid.UUID(created["id"]))
        assert row is not None
        await activities.update(s, row, edit("an endpoint there"))
        await s.commit()
    assert await messages() == 2


async def test_a_batch_costs_a_few_statements_not_several_per_delivery(
    world: World, db: Database, receiver: Receiver
) -> None:
    """Under a busy CRM the deliverer shares the process (and on SQLite the one writer) with
    the API and the sync: claiming a batch is one statement plus its read, and the attempts'
    outcomes are written together as they finish, not a transaction (three statements) each."""
    endpoint = await add_endpoint(world, receiver.url)
    for i in range(20):
        await _activity(world, f"Batch {i}")
    # the receiver answers PER_ENDPOINT requests at a time, together (how attempts that end
    # apart are written is the idle case, one at a time; this pins what ends together)
    got: list[httpx.Request] = []
    waiting: list[asyncio.Future[None]] = []

    async def answer_in_waves(request: httpx.Request) -> httpx.Response:
        got.append(request)
        waiting.append(asyncio.get_running_loop().create_future())
        mine = waiting[-1]
        if len(waiting) == PER_ENDPOINT or len(got) == 20:
            for wave in waiting:
                wave.set_result(None)
            waiting.clear()
        await mine
        return httpx.Response(204)

    deliverer = Deliverer(db, allow_private=True, transport=httpx.MockTransport(answer_in_waves))
    with statements(db) as sent, transactions(db) as begun:
        assert await deliverer.run() == 20
    assert len({r.headers["webhook-id"] for r in got}) == 20 == len(got)
    assert all(Webhook(endpoint["secret"]).verify(r.content, r.headers) for r in got)
    writes = [s for s in sent if s.startswith(("UPDATE", "INSERT", "DELETE"))]
    waves = 20 // PER_ENDPOINT
    # the claim, then a wave's deliveries and their endpoint: not a claim or a write per row
    assert len(writes) <= 1 + 2 * waves, writes
    assert len(sent) <= 2 + 4 * waves, sent
    assert len(begun) <= 1 + waves, len(begun)
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(WebhookDelivery)) == 20
        statuses = (await s.scalars(select(WebhookDelivery.status))).all()
    assert set(statuses) == {DeliveryStatus.SUCCEEDED}
    assert await deliver(db) == 0


async def test_sent_but_not_recorded_is_sent_again_after_the_lease(
    world: World, db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver got the message, then writing the outcome failed (the process died, the
    database went away): nothing says it succeeded, so after the claim's lease it is sent
    again with the same webhook-id, and then recorded once."""
    from calsync.store import webhook_deliveries

    await add_endpoint(world, receiver.url)
    await _activity(world, "Unrecorded")
    real = webhook_deliveries.record_attempts

    async def broken(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(webhook_deliveries, "record_attempts", broken)
    with pytest.raises(ConnectionError):
        await deliver(db)
    (first,) = receiver.wait_for(1)
    monkeypatch.setattr(webhook_deliveries, "record_attempts", real)
    assert await deliver(db) == 0  # still held by the claim
    assert await deliver(db, utcnow() + webhook_deliveries.CLAIM_LEASE) == 1
    _, second = receiver.wait_for(2)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    async with db.session() as s:
        delivery = await s.scalar(select(WebhookDelivery))
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 1)


async def test_one_receiver_gets_a_few_requests_at_a_time_not_the_whole_batch(
    world: World, db: Database, receiver: Receiver, second_receiver: Receiver
) -> None:
    """A burst of CRM writes (an import, a bulk edit) queues dozens of deliveries to one
    endpoint: the deliverer sends them a few at a time (PER_ENDPOINT), not all 50 of a batch
    at once to a receiver that may be one small CRM server, and another endpoint's deliveries
    do not wait behind them. Every delivery still arrives once."""
    await add_endpoint(world, receiver.url)
    await add_endpoint(world, second_receiver.url)
    receiver.delay = second_receiver.delay = 0.05
    for i in range(30):
        await _activity(world, f"Burst {i}")
    assert await deliver(db) == 60
    for got in (receiver.wait_for(30), second_receiver.wait_for(30)):
        assert len({r.headers["webhook-id"] for r in got}) == 30 == len(got)
    assert receiver.most_in_flight <= PER_ENDPOINT, receiver.most_in_flight
    assert second_receiver.most_in_flight <= PER_ENDPOINT, second_receiver.most_in_flight
    assert receiver.most_in_flight > 1  # still in parallel, only bounded
    async with db.session() as s:
        statuses = set((await s.scalars(select(WebhookDelivery.status))).all())
    assert statuses == {DeliveryStatus.SUCCEEDED}


def test_a_claimed_batch_to_one_endpoint_is_sent_within_the_claim_lease() -> None:
    """Deliveries to one endpoint wait for a free slot: even a batch all for one receiver that
    answers only at the timeout ends before the claim's lease, so no other process claims
    (and sends again) a delivery still waiting here."""
    from calsync.store.webhook_deliveries import CLAIM_LEASE

    waves = -(-BATCH // PER_ENDPOINT)
    assert waves * TIMEOUT_SECONDS < CLAIM_LEASE.total_seconds() - 5
