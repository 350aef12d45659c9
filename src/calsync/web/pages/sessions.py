"""Server-side sessions: Starlette's signed cookie carries the login's random id (`sid`) next
to the user and tenant ids, and this middleware, inside the session middleware, drops the login
from every request whose `sid` has no live `web_session` row (logged out, password changed,
expired, or a cookie from before server-side sessions). Everything that reads the login —
pages, the OAuth callback — therefore sees only live ones."""

from __future__ import annotations

import uuid
from datetime import timedelta

from starlette.types import ASGIApp, Receive, Scope, Send

from calsync.store import web_sessions
from calsync.store.db import Database

# the login, and the portal's "Back to" link that lives exactly as long (web/pages/portal.py)
LOGIN_KEYS = ("uid", "tid", "sid", "portal_return", "portal_label")


def _ids(session: dict[str, object]) -> tuple[str, uuid.UUID, uuid.UUID] | None:
    sid, uid, tid = session.get("sid"), session.get("uid"), session.get("tid")
    if not isinstance(sid, str) or not isinstance(uid, str) or not isinstance(tid, str):
        return None
    try:
        return sid, uuid.UUID(uid), uuid.UUID(tid)
    except ValueError:
        return None


class ServerSessions:
    """Pure ASGI middleware; must run inside SessionMiddleware (added before it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session") if scope["type"] == "http" else None
        if session and any(key in session for key in LOGIN_KEYS):
            ids = _ids(session)
            live = False
            if ids is not None:
                db: Database = scope["app"].state.db
                async with db.session() as store:
                    live = await web_sessions.alive(store, *ids)
                    await store.commit()
            if not live:
                for key in LOGIN_KEYS:
                    session.pop(key, None)
        await self.app(scope, receive, send)


async def begin(
    db: Database, session: dict[str, object], user_id: uuid.UUID, tenant_id: uuid.UUID, max_age: int
) -> None:
    """Store a new login and put its id into the (already cleared) cookie session."""
    async with db.session() as store:
        sid = await web_sessions.create(store, user_id, tenant_id, timedelta(seconds=max_age))
        await store.commit()
    session["sid"] = sid
    session["uid"] = str(user_id)
    session["tid"] = str(tenant_id)


async def end(db: Database, session: dict[str, object]) -> None:
    sid = session.get("sid")
    if isinstance(sid, str):
        async with db.session() as store:
            await web_sessions.end(store, sid)
            await store.commit()
