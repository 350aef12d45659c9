"""Admin → Integrations lists the outbound webhook endpoints: enabled or disabled with the
reason (the notice an admin sees when calsync gave up on one), and the last deliveries."""

from __future__ import annotations

from datetime import timedelta

from calsync.store import webhook_deliveries, webhooks
from calsync.store.base import utcnow
from calsync.store.db import Database
from tests.pages.conftest import Pages, pages  # noqa: F401

from .conftest import deliver
from .receiver import Receiver

ADMIN = "boss@example.com"


async def test_admin_sees_endpoints_their_state_and_last_deliveries(
    pages: Pages,  # noqa: F811
    db: Database,
    receiver: Receiver,
) -> None:
    _, _, boss = await pages.person(ADMIN, role="admin")
    page = await boss.get("/admin/integrations")
    assert page.status_code == 200 and "No webhook endpoints yet." in page.text

    world = pages.api.world
    async with db.session() as s:
        ok = await webhooks.create_endpoint(
            s, world.tenant_id, url=receiver.url, events=None, description="Main CRM"
        )
        broken = await webhooks.create_endpoint(
            s,
            world.tenant_id,
            url="http://127.0.0.1:1/gone",
            events=["activity.created"],
            description=None,
        )
        await s.commit()
    owner, _ = await pages.api.user("owner@example.com")
    await pages.api.activity(owner, "Board meeting")
    assert await deliver(db) == 2
    # the broken one: every attempt of the schedule fails, and calsync disables it
    at = utcnow()
    for delay in webhook_deliveries.RETRY_DELAYS[1:]:
        at += timedelta(seconds=delay + 1)
        await deliver(db, at)

    page = await boss.get("/admin/integrations")
    text = page.text
    assert "Outbound webhooks" in text and receiver.url in text and "Main CRM" in text
    assert "http://127.0.0.1:1/gone" in text
    assert "delivered" in text and "gave up" in text and "HTTP 204" in text
    assert "Disabled since" in text and "enable the endpoint again" in text
    assert "activity.created" in text
    async with db.session() as s:
        got = await webhooks.endpoint(s, world.tenant_id, broken.id)
        assert got is not None and got.enabled is False
        still = await webhooks.endpoint(s, world.tenant_id, ok.id)
        assert still is not None and still.enabled is True

    # in another language the section is translated too
    page = await boss.get("/admin/integrations", headers={"Accept-Language": "de"})
    assert "Ausgehende Webhooks" in page.text and "Deaktiviert seit" in page.text
