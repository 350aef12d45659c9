"""Which bindings of a connection want a push channel: the store's set-based queries agree with
`should_watch`, binding by binding."""

from __future__ import annotations

import uuid

from calsync.domain.direction import Direction
from calsync.store import bindings, connections, tenants, users
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.db import Database
from calsync.store.statuses import BindingRole, BindingStage


async def test_unwanted_and_unwatched_follow_should_watch(db: Database) -> None:
    async with db.session() as s:
        tenant = await tenants.create(s, f"t-{uuid.uuid4()}")
        user = await users.create(s, tenant.id, "ch@example.com")
        conn = await connections.create(s, tenant.id, user.id, google_email="ch@example.com")
        made: dict[tuple[str, bool], uuid.UUID] = {}
        for name, role, direction, stage in (
            ("import", BindingRole.IMPORT, Direction.TWO_WAY, BindingStage.INCREMENTAL),
            ("export", BindingRole.EXPORT, Direction.TWO_WAY, BindingStage.INCREMENTAL),
            ("push-only", BindingRole.BOTH, Direction.CRM_TO_GOOGLE, BindingStage.INITIAL),
            ("disabled", BindingRole.IMPORT, Direction.TWO_WAY, BindingStage.DISABLED),
        ):
            for watched in (True, False):
                b = await bindings.create(
                    s, tenant.id, conn.id, f"{name}-{watched}", role=role, direction=direction
                )
                await bindings.set_stage(s, b.id, stage, None)
                if watched:
                    await stored.replace(
                        s,
                        stored.EVENTS,
                        b.id,
                        expected=None,
                        channel_id=f"{b.id.hex}-x",
                        resource_id="r",
                        token="t",
                        expires_at=utcnow(),
                    )
                made[(name, watched)] = b.id
        await s.commit()
    async with db.session() as s:
        unwanted = {
            c.binding_id for c in await stored.unwanted(s, stored.EVENTS, connection_id=conn.id)
        }
        unwatched = set(await stored.unwatched(s, stored.EVENTS, conn.id))
        wants = {key: await stored.wanted(s, stored.EVENTS, b) for key, b in made.items()}
    assert unwanted == {made[key] for key, want in wants.items() if key[1] and not want}
    assert unwatched == {made[key] for key, want in wants.items() if not key[1] and want}
    assert unwanted and unwatched == {made[("import", False)]}
    # a connection that is no longer connected wants no channel at all
    async with db.session() as s:
        await connections.mark_needs_reauth(s, conn.id, code="x", message="x")
        await s.commit()
    async with db.session() as s:
        assert {
            c.binding_id for c in await stored.unwanted(s, stored.EVENTS, connection_id=conn.id)
        } == {b for (_, watched), b in made.items() if watched}
        assert list(await stored.unwatched(s, stored.EVENTS, conn.id)) == []
