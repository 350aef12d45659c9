"""A reference CRM integrated with calsync — a worked example, not part of calsync.

It is a small web app with its own SQLite database: users, each user's calendar, a "Google
Calendar" button and a webhook receiver. It talks to calsync only through calsync's public REST
API (with an admin API key) and its signed outbound webhooks, as any CRM would:

1. At start it registers (once) a webhook endpoint pointing at itself and keeps the `whsec_…`
   secret in its own database, copies calsync's users, and backfills each user's activities
   for a window with `GET /api/v1/activities` — the endpoint first, so nothing that happens
   during the backfill is missed.
2. `POST /webhooks/calsync` verifies each message with the `standardwebhooks` library, ignores a
   `webhook-id` it has seen (delivery is at least once) and applies it in the same SQLite
   transaction that records the id: activities are upserted by id and version (a retry that
   arrives after a newer change never rolls the view back), connection and calendar events
   become notices on the user's page.
3. "Google Calendar" asks calsync for a one-time portal link for that user
   (`POST /api/v1/users/{id}/portal-sessions`) and redirects the browser to it: the user lands
   on their own Google Calendar settings in calsync, with a "Back to Reference CRM" link.
4. "New activity" creates the activity through `POST /api/v1/activities`; calsync syncs it to
   Google, and the CRM's row is the answer's.

It has no login of its own (a real CRM has one: it knows who is signed in, and asks for the
portal link for that user only). Run it beside calsync's sandbox (`make run` prints an admin
key; the sandbox allows webhooks to loopback addresses):

    uv run python examples/reference_crm/crm.py --calsync http://127.0.0.1:8765 \
        --admin-key csk_... --port 8780
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

log = logging.getLogger("reference_crm")
NAME = "Reference CRM"
BACKFILL_DAYS = (30, 365)  # the window copied at start: 30 days back, a year ahead
ROTATE_AFTER_DAYS = 90  # at start, a webhook secret older than this is rotated
OVERLAP = timedelta(hours=24)  # how long calsync signs with the old secret too after a rotation

SCHEMA = """
CREATE TABLE IF NOT EXISTS setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user (
    id TEXT PRIMARY KEY,            -- calsync's user id (a real CRM keeps its own and maps)
    email TEXT NOT NULL, name TEXT
);
CREATE TABLE IF NOT EXISTS activity (
    id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, subject TEXT NOT NULL, location TEXT,
    start TEXT NOT NULL, "end" TEXT NOT NULL, all_day INTEGER NOT NULL, status TEXT NOT NULL,
    version INTEGER NOT NULL, source TEXT, deleted INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_owner ON activity (owner_id, start);
CREATE TABLE IF NOT EXISTS notice (
    id INTEGER PRIMARY KEY, user_id TEXT, kind TEXT NOT NULL, text TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_message (id TEXT PRIMARY KEY, at TEXT NOT NULL);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- the CRM's own database -------------------------------------------------------------------


class Store:
    """SQLite, one connection guarded by a lock (the app is small; a real CRM has its own)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def setting(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM setting WHERE key = ?", key)
        return str(rows[0]["value"]) if rows else None

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO setting (key, value) VALUES (?, ?)", (key, value))


def upsert_activity(db: sqlite3.Connection, act: dict[str, Any], source: str | None) -> None:
    """Keep the newest version: an older one (a retry, a backfill racing a webhook) is ignored."""
    db.execute(
        """INSERT INTO activity (id, owner_id, subject, location, start, "end", all_day, status,
                                 version, source, deleted, received_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET owner_id = excluded.owner_id,
               subject = excluded.subject, location = excluded.location,
               start = excluded.start, "end" = excluded."end", all_day = excluded.all_day,
               status = excluded.status, version = excluded.version,
               source = COALESCE(excluded.source, activity.source),
               deleted = excluded.deleted, received_at = excluded.received_at
           WHERE excluded.version >= activity.version""",
        (
            act["id"],
            act["owner_id"],
            act["subject"],
            act.get("location"),
            act["start"],
            act["end"],
            int(bool(act["all_day"])),
            act["status"],
            act["version"],
            source,
            int(act.get("deleted_at") is not None),
            now(),
        ),
    )


# -- calsync's REST API -----------------------------------------------------------------------


class Calsync:
    """The few calls the CRM makes, with its admin API key."""

    def __init__(self, base_url: str, admin_key: str) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=30,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            error = resp.json().get("error", {}) if resp.content else {}
            raise CalsyncError(resp.status_code, error.get("code"), error.get("message"))
        return resp.json() if resp.content else None


class CalsyncError(Exception):
    def __init__(self, status: int, code: str | None, message: str | None) -> None:
        super().__init__(f"calsync answered {status} {code}: {message}")
        self.status, self.code = status, code


def connect(
    store: Store, calsync: Calsync, public_url: str, rotate_after_days: int = ROTATE_AFTER_DAYS
) -> None:
    """Register the webhook endpoint (once; its secret rotated when it is older than
    `rotate_after_days`), copy the users, backfill the activities."""
    hook_url = public_url.rstrip("/") + "/webhooks/calsync"
    endpoint_id = store.setting("endpoint_id")
    if endpoint_id is not None:
        try:
            endpoint = calsync.call("GET", f"/webhook-endpoints/{endpoint_id}")
            if endpoint["url"] != hook_url:
                calsync.call("PATCH", f"/webhook-endpoints/{endpoint_id}", json={"url": hook_url})
            if not endpoint["enabled"]:  # calsync disabled it while the CRM was down
                calsync.call("PATCH", f"/webhook-endpoints/{endpoint_id}", json={"enabled": True})
        except CalsyncError as exc:
            if exc.status != 404:
                raise
            endpoint_id = None  # deleted in calsync: register again
    if endpoint_id is None:
        created = calsync.call(
            "POST", "/webhook-endpoints", json={"url": hook_url, "description": NAME}
        )
        store.set_setting("endpoint_id", created["id"])
        store.set_setting("webhook_secret", created["secret"])
        store.set_setting("webhook_secret_since", now())
    elif secret_age(store) > timedelta(days=rotate_after_days):
        rotate_secret(store, calsync)
    users = calsync.call("GET", "/users")["users"]
    start = datetime.now(UTC) - timedelta(days=BACKFILL_DAYS[0])
    end = datetime.now(UTC) + timedelta(days=BACKFILL_DAYS[1])
    with store.transaction() as db:
        for user in users:
            db.execute(
                "INSERT OR REPLACE INTO user (id, email, name) VALUES (?, ?, ?)",
                (user["id"], user["email"], user.get("name")),
            )
    offset = 0
    while True:
        page = calsync.call(
            "GET",
            "/activities",
            params={
                "from": start.isoformat(),
                "to": end.isoformat(),
                "limit": 500,
                "offset": offset,
            },
        )["activities"]
        with store.transaction() as db:
            for act in page:
                upsert_activity(db, act, None)
        if len(page) < 500:
            break
        offset += len(page)


def secret_age(store: Store) -> timedelta:
    since = store.setting("webhook_secret_since")
    if since is None:  # stored before the CRM kept the date: count it as due
        return timedelta.max
    return datetime.now(UTC) - datetime.fromisoformat(since)


def rotate_secret(store: Store, calsync: Calsync) -> None:
    """A new signing secret from calsync, stored at once. For the next 24 hours calsync signs
    every message with both secrets; the old one is kept as long, so a message signed just
    before the rotation (in flight while it ran) still verifies instead of being retried."""
    endpoint_id = store.setting("endpoint_id")
    old = store.setting("webhook_secret")
    rotated = calsync.call("POST", f"/webhook-endpoints/{endpoint_id}/rotate-secret")
    with store.transaction() as db:
        for key, value in (
            ("webhook_secret", rotated["secret"]),
            ("webhook_secret_since", now()),
            ("previous_webhook_secret", old or ""),
            ("previous_webhook_secret_until", (datetime.now(UTC) + OVERLAP).isoformat()),
        ):
            db.execute("INSERT OR REPLACE INTO setting (key, value) VALUES (?, ?)", (key, value))
    log.info("rotated the webhook signing secret of endpoint %s", endpoint_id)


def signing_secrets(store: Store) -> list[str]:
    """The secrets a message may be signed with: the current one, and the previous one during
    the 24 hours after a rotation."""
    secrets = [s for s in [store.setting("webhook_secret")] if s]
    previous = store.setting("previous_webhook_secret")
    until = store.setting("previous_webhook_secret_until")
    if previous and until and datetime.now(UTC) < datetime.fromisoformat(until):
        secrets.append(previous)
    return secrets


# -- the webhook receiver ---------------------------------------------------------------------

NOTICES = {
    "connection.needs_reauth": "Google needs {google_email} to sign in again: {message}",
    "connection.reconnected": "Google account {google_email} is connected again.",
    "calendar.paused": "Calendar {calendar_summary} is paused: {reason}",
    "sync.issue": "{message} — {remedy}",
}


def apply(db: sqlite3.Connection, event: dict[str, Any]) -> None:
    kind, data = event["type"], event["data"]
    if kind.startswith("activity."):
        upsert_activity(db, data["activity"], data.get("source"))
        return
    if kind in NOTICES:
        values = {k: ("" if v is None else v) for k, v in data.items()}
        text = NOTICES[kind].format_map(_Missing(values))
        if kind == "connection.reconnected":
            db.execute(
                "DELETE FROM notice WHERE user_id = ? AND kind = 'connection.needs_reauth'",
                (data.get("user_id"),),
            )
        db.execute(
            "INSERT INTO notice (user_id, kind, text, at) VALUES (?, ?, ?, ?)",
            (data.get("user_id"), kind, text, event.get("timestamp") or now()),
        )


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


async def receive(request: Request) -> Response:
    store: Store = request.app.state.store
    secrets = signing_secrets(store)
    if not secrets:
        return JSONResponse({"error": "not set up"}, status_code=503)
    body = await request.body()  # the raw bytes, exactly as signed
    event = None
    for secret in secrets:
        try:
            event = Webhook(secret).verify(body, dict(request.headers))
            break
        except WebhookVerificationError as exc:
            failure = exc
    if event is None:
        log.warning("refused a webhook: %s", failure)
        return JSONResponse({"error": "bad signature"}, status_code=400)
    message_id = request.headers["webhook-id"]
    with store.transaction() as db:
        seen = db.execute(
            "INSERT OR IGNORE INTO seen_message (id, at) VALUES (?, ?)", (message_id, now())
        ).rowcount
        if seen:  # a retry of a message already applied changes nothing
            apply(db, event)
    return Response(status_code=204)


# -- pages ------------------------------------------------------------------------------------

STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #ddd}.notice{background:#fff4ce;padding:.5rem 1rem;margin:.5rem 0}
.deleted{text-decoration:line-through;color:#777}form.inline{display:inline}"""


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><body><p><a href='/'>{NAME}</a></p>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


async def home(request: Request) -> Response:
    store: Store = request.app.state.store
    rows = store.query("SELECT id, email, name FROM user ORDER BY email")
    items = "".join(
        f"<li><a href='/users/{quote(r['id'])}'>{html.escape(r['name'] or r['email'])}</a> "
        f"&lt;{html.escape(r['email'])}&gt;</li>"
        for r in rows
    )
    since = store.setting("webhook_secret_since")
    rotation = (
        f"<h2>Webhook secret</h2><p>In use since {html.escape(since or 'before this CRM kept the date')};"
        f" rotated at start when older than {ROTATE_AFTER_DAYS} days.</p>"
        f"<form method='post' action='/admin/rotate-webhook-secret'><button>Rotate now</button></form>"
    )
    return page("Users", f"<ul>{items}</ul>{rotation}")


async def rotate_now(request: Request) -> Response:
    """ "Rotate now" (e.g. after the secret may have leaked)."""
    try:
        await run_in_threadpool(rotate_secret, request.app.state.store, request.app.state.calsync)
    except CalsyncError as exc:
        return page("Not rotated", f"<p>{html.escape(str(exc))}</p>")
    return RedirectResponse("/", status_code=303)


async def user_page(request: Request) -> Response:
    store: Store = request.app.state.store
    user_id = request.path_params["user_id"]
    found = store.query("SELECT * FROM user WHERE id = ?", user_id)
    if not found:
        return page("Not found", "<p>No such user.</p>")
    user = found[0]
    notices = "".join(
        f"<p class='notice'>{html.escape(n['text'])}</p>"
        for n in store.query(
            "SELECT text FROM notice WHERE user_id = ? ORDER BY id DESC LIMIT 5", user_id
        )
    )
    rows = store.query(
        "SELECT * FROM activity WHERE owner_id = ? ORDER BY start LIMIT 500", user_id
    )
    lines = "".join(
        f"<tr class='{'deleted' if r['deleted'] else ''}' data-id='{html.escape(r['id'])}'>"
        f"<td>{html.escape(r['start'])}</td><td>{html.escape(r['subject'])}</td>"
        f"<td>{html.escape(r['location'] or '')}</td>"
        f"<td>{html.escape({'google': 'Google', 'crm': 'CRM'}.get(r['source'] or '', ''))}</td></tr>"
        for r in rows
    )
    body = (
        f"{notices}<form method='post' action='/users/{quote(user_id)}/google-calendar'>"
        f"<button>Google Calendar</button></form>"
        f"<h2>Calendar</h2><table><thead><tr><th>Start</th><th>Subject</th><th>Location</th>"
        f"<th>From</th></tr></thead><tbody>{lines}</tbody></table>"
        f"<h2>New activity</h2><form method='post' action='/users/{quote(user_id)}/activities'>"
        f"<label>Subject <input name='subject' required></label> "
        f"<label>Start (UTC) <input name='start' type='datetime-local' required></label> "
        f"<label>Minutes <input name='minutes' type='number' value='60' min='5'></label> "
        f"<button>Create</button></form>"
    )
    return page(f"{user['name'] or user['email']}", body)


async def open_google_settings(request: Request) -> Response:
    """The "Google Calendar" button: a fresh one-time link for this user, never reused."""
    user_id = request.path_params["user_id"]
    calsync: Calsync = request.app.state.calsync
    back = f"{request.app.state.public_url.rstrip('/')}/users/{quote(user_id)}"
    session = await run_in_threadpool(
        calsync.call,
        "POST",
        f"/users/{user_id}/portal-sessions",
        json={"return_url": back, "return_label": NAME},
    )
    return RedirectResponse(session["url"], status_code=303)


async def create_activity(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    form = await request.form()
    start = datetime.fromisoformat(str(form["start"])).replace(tzinfo=UTC)
    minutes = int(str(form.get("minutes") or 60))
    calsync: Calsync = request.app.state.calsync
    try:
        act = await run_in_threadpool(
            calsync.call,
            "POST",
            "/activities",
            json={
                "owner_id": user_id,
                "subject": str(form["subject"]),
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=minutes)).isoformat(),
                "time_zone": "UTC",
            },
        )
    except CalsyncError as exc:
        return page("Not saved", f"<p>{html.escape(str(exc))}</p>")
    with request.app.state.store.transaction() as db:
        upsert_activity(db, act, "crm")
    return RedirectResponse(f"/users/{quote(user_id)}", status_code=303)


async def activities_json(request: Request) -> Response:
    """The user's calendar as JSON (what the page shows; handy for scripts and tests)."""
    store: Store = request.app.state.store
    rows = store.query(
        "SELECT * FROM activity WHERE owner_id = ? ORDER BY start", request.path_params["user_id"]
    )
    return JSONResponse({"activities": [dict(r) for r in rows]})


def create_app(store: Store, calsync: Calsync, public_url: str) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/users/{user_id}", user_page),
            Route("/users/{user_id}/activities.json", activities_json),
            Route("/users/{user_id}/activities", create_activity, methods=["POST"]),
            Route("/users/{user_id}/google-calendar", open_google_settings, methods=["POST"]),
            Route("/webhooks/calsync", receive, methods=["POST"]),
            Route("/admin/rotate-webhook-secret", rotate_now, methods=["POST"]),
        ]
    )
    app.state.store, app.state.calsync, app.state.public_url = store, calsync, public_url
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"{NAME}: a CRM integrated with calsync")
    parser.add_argument("--calsync", default=os.environ.get("CALSYNC_URL", "http://127.0.0.1:8765"))
    parser.add_argument("--admin-key", default=os.environ.get("CALSYNC_ADMIN_KEY"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780)
    parser.add_argument("--public-url", help="how calsync reaches this CRM (default: host:port)")
    parser.add_argument("--db", default=str(Path("reference-crm.db")))
    parser.add_argument(
        "--rotate-after-days",
        type=int,
        default=ROTATE_AFTER_DAYS,
        help="rotate the webhook signing secret at start when it is older (0: every start)",
    )
    args = parser.parse_args(argv)
    if not args.admin_key:
        parser.error("--admin-key (or CALSYNC_ADMIN_KEY) is required: `make run` prints one")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    store, calsync = Store(args.db), Calsync(args.calsync, args.admin_key)
    connect(store, calsync, public_url, args.rotate_after_days)
    count = store.query("SELECT count(*) AS n FROM activity")[0]["n"]
    print(f"{NAME} on {public_url} — {count} activities copied from calsync", flush=True)
    uvicorn.run(create_app(store, calsync, public_url), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
