"""A cProfile of one kind of sync, repeated: where a sync's CPU goes (issue 16).

    uv run python bench/profile_sync.py [--kind google|crm|noop] [--syncs 300] [--top 40]
                                        [--postgres-url postgresql://...] [--out FILE]

Sets up as bench/incremental.py does (an emulator, one connected calendar of a few real events,
linked both ways) in one process, then runs `--syncs` syncs of the kind under cProfile: a
Google edit then a sync, a CRM edit then a sync, or a sync with nothing changed. Prints the
top functions by their own time and by cumulative time, and the SQL statements per sync.
Only the syncs are profiled, not the edits between them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CLIENT_ID = "bench.apps.googleusercontent.com"
REAL_EVENTS = 4


async def run(url: str, args: argparse.Namespace) -> None:
    import httpx
    from pydantic import SecretStr
    from sqlalchemy import event

    from calsync.domain.activity import ActivityDraft, validate
    from calsync.google.auth import StaticToken
    from calsync.google.calendar import CalendarClient, make_http_client
    from calsync.google.retry import RetryPolicy
    from calsync.settings import Settings
    from calsync.store import activities, bindings, connections, crypto, tenants, users
    from calsync.store.db import Database
    from calsync.store.migrate import upgrade
    from calsync.sync.engine import sync_binding
    from calsync.sync.tokens import GoogleAccess

    crypto.install(crypto.Keyring([crypto.generate_key()]))
    workdir = tempfile.mkdtemp(prefix="calsync-prof-")
    db_url = args.postgres_url
    if db_url:
        from incremental import fresh_postgres

        db_url = fresh_postgres(db_url)
    db = Database(db_url or f"sqlite+aiosqlite:///{workdir}/calsync.db")
    await upgrade(db)
    email = f"prof-{uuid.uuid4().hex[:8]}@bench.example"
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        (await http.post("/emulator/v1/accounts", json={"email": email})).raise_for_status()
        made = await http.post(f"/emulator/v1/accounts/{email}/tokens", json={"expires_in": 36000})
        token = made.json()["access_token"]
    settings = Settings(
        google_emulator_url=url,
        google_client_id=CLIENT_ID,
        google_client_secret=SecretStr("bench"),
        google_requests_per_minute=0,
        google_timeout_seconds=60,
    )
    person = CalendarClient(StaticToken(token, email), settings=settings)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    events = []
    for i in range(REAL_EVENTS):
        body = {
            "summary": f"Google {i}",
            "start": {"dateTime": (start + timedelta(hours=2 * i)).isoformat()},
            "end": {"dateTime": (start + timedelta(hours=2 * i + 1)).isoformat()},
        }
        events.append(await person.insert_event(email, body))
    async with db.session() as s:
        tenant = await tenants.create(s, f"prof-{uuid.uuid4().hex[:6]}")
        user = await users.create(s, tenant.id, email)
        conn = await connections.create(
            s,
            tenant.id,
            user.id,
            google_email=email,
            refresh_token="unused",
            access_token=token,
            access_token_expires_at=datetime.now(UTC) + timedelta(hours=10),
        )
        binding = await bindings.create(s, tenant.id, conn.id, email, role="both")
        crm_ids = []
        for i in range(REAL_EVENTS):
            t = (start + timedelta(days=1, hours=2 * i)).replace(tzinfo=None)
            values = validate(
                ActivityDraft(
                    start=t, end=t + timedelta(hours=1), subject=f"CRM {i}", time_zone="UTC"
                )
            )
            row = await activities.create(
                s, tenant.id, type_key="meeting", owner_id=user.id, values=values
            )
            crm_ids.append(row.id)
        await s.commit()
    shared = make_http_client(settings)
    google = GoogleAccess(
        settings, http=shared, retry=RetryPolicy(max_attempts=3), rate_limiter=None
    )
    first = await sync_binding(db, binding.id, google, trigger="initial")
    assert first.ok, first
    statements = 0

    last: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal statements
        statements += 1
        last.append(" ".join(statement.split())[:160])

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    profile = cProfile.Profile()
    cpu = 0.0
    for r in range(args.syncs + 1):
        if args.kind == "google":
            await person.patch_event(email, str(events[r % REAL_EVENTS].id), {"summary": f"G {r}"})
        elif args.kind == "crm":
            async with db.session() as s:
                act = await activities.get(s, tenant.id, crm_ids[r % REAL_EVENTS])
                assert act is not None
                draft = ActivityDraft(
                    start=act.start_local,
                    end=act.end_local,
                    subject=f"CRM edit {r}",
                    time_zone=act.time_zone,
                )
                await activities.update(s, act, validate(draft))
                await s.commit()
        if r == 0:  # warm-up, not profiled
            await sync_binding(db, binding.id, google, trigger="webhook")
            statements = 0
            continue
        last.clear()
        began = time.process_time()
        profile.enable()
        result = await sync_binding(db, binding.id, google, trigger="webhook")
        profile.disable()
        cpu += time.process_time() - began
        assert result.ok, result
    n = args.syncs
    print(
        f"{args.kind}: {n} syncs, {cpu / n * 1000:.1f} ms CPU each (under the profiler),"
        f" {statements / n:.1f} SQL each; load {os.getloadavg()}"
    )
    if args.sql:
        print(f"the statements of the last sync ({len(last)}):")
        for text in last:
            print("  ", text)
    stats = pstats.Stats(profile)
    if args.out:
        stats.dump_stats(args.out)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    await person.aclose()
    await google.aclose()
    await shared.aclose()
    await db.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=["google", "crm", "noop"], default="google")
    p.add_argument("--syncs", type=int, default=300)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--postgres-url", default="")
    p.add_argument("--out", default="")
    p.add_argument("--sql", action="store_true", help="print the last sync's statements")
    args = p.parse_args()
    from gcal_emulator.server import EmulatorServer

    with EmulatorServer() as server:
        import httpx

        httpx.post(f"{server.url}/emulator/v1/quotas", json={"enabled": False})
        asyncio.run(run(server.url, args))


if __name__ == "__main__":
    main()
