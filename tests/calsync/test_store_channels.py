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


async def test_a_heard_echo_leaves_no_expectation_behind(db: Database) -> None:
    """The notification that answers an owed echo settles it (the column back to NULL), so the
    poll tick's scan of owed echoes (an index on it) holds only what is still owed, not every
    calendar calsync ever wrote to. One owed after the notification's time stays owed, and the
    other twin's is untouched."""
    from datetime import timedelta

    from sqlalchemy import select

    from calsync.store import echoes
    from calsync.store.models import CalendarBinding

    async with db.session() as s:
        tenant = await tenants.create(s, f"t-{uuid.uuid4()}")
        user = await users.create(s, tenant.id, "echo-clear@example.com")
        conn = await connections.create(s, tenant.id, user.id, google_email="echo-clear@x.com")
        b = await bindings.create(s, tenant.id, conn.id, "echo-clear", role=BindingRole.IMPORT)
        for holder, channel in ((stored.EVENTS, "first"), (stored.EVENTS_TWIN, "twin-second")):
            await stored.replace(
                s,
                holder,
                b.id,
                expected=None,
                channel_id=channel,
                resource_id="r",
                token="t",
                expires_at=utcnow() + timedelta(days=7),
            )
        written = utcnow()
        await echoes.expect_echo(s, b.id, written)
        await s.commit()

    async def owed() -> tuple[object, object]:
        async with db.session() as s:
            row = (
                await s.execute(
                    select(
                        CalendarBinding.channel_echo_since, CalendarBinding.twin_channel_echo_since
                    ).where(CalendarBinding.id == b.id)
                )
            ).one()
            return row[0], row[1]

    # a notification older than the write does not answer it
    async with db.session() as s:
        assert await stored.note_message(
            s, stored.EVENTS, b.id, "first", 1, written - timedelta(seconds=1)
        )
        await s.commit()
    assert (await owed())[0] is not None
    # the echo: settled and gone; the twin has not announced it yet and still owes it
    async with db.session() as s:
        assert await stored.note_message(
            s, stored.EVENTS, b.id, "first", 2, written + timedelta(seconds=1)
        )
        await s.commit()
    first, twin = await owed()
    assert first is None and twin is not None
    async with db.session() as s:
        assert [o.kind for o in await echoes.echoes_overdue(s, utcnow() + timedelta(hours=1))] == [
            "events_twin"
        ]
        assert await stored.note_message(
            s, stored.EVENTS_TWIN, b.id, "twin-second", 1, written + timedelta(seconds=2)
        )
        await s.commit()
    assert await owed() == (None, None)
    async with db.session() as s:
        assert list(await echoes.echoes_overdue(s, utcnow() + timedelta(hours=1))) == []
