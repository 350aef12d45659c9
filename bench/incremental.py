"""What one sync costs as the calendar grows: a no-op sync and a sync of one change in calendars
of 1k, 10k and 50k linked events, CPU per sync (median over repeats) and SQL statements.

    uv run python bench/incremental.py [--sizes 1000,10000,50000] [--repeats 15] [--changes 1]
                                       [--postgres-url postgresql://...] [--loop uvloop]

The parent starts one emulator. Each size runs in its own subprocess (so the CPU measured,
`time.process_time`, is calsync's alone: the engine, SQLAlchemy and the aiosqlite thread):
a connected user whose calendar holds a few real events has its first sync, then the database
is filled with N linked activities (copies of the synced rows, with their change-feed rows) —
the emulator need not hold N events for the engine's cost per sync to show, and the emulator's
own listing cost stays out of the figure. Then, each repeated:

- no-op: a sync with nothing changed on either side (what a safety poll costs);
- google: one event edited in Google, then a sync (what a webhook costs);
- crm: one activity edited in the CRM, then its push (what a CRM change costs: the calendar's
  channel is live, so the run writes without listing Google first, as in production).

`--changes N` (up to 12) edits N events, or N activities, before each sync instead of one: the
reads of several given entries, which must stay lookups by id as the calendar grows.

Prints CPU ms and SQL statements per sync side by side, and the 50k/1k ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "bench.apps.googleusercontent.com"
REAL_EVENTS = 12  # 4 before --changes (2026-12-05): up to 12 changes a sync


async def fill(db: Any, tenant_id: uuid.UUID, binding_id: uuid.UUID, n: int) -> None:
    """N more linked activities: copies of the synced ones (half imported from Google, half
    made in the CRM), one change-feed row each, the push cursor after them all."""
    from sqlalchemy import insert, select, update

    from calsync.store.models import Activity, CalendarBinding, Change, EventLink, Tenant

    async with db.session() as s:
        acts = {a.id: a for a in (await s.scalars(select(Activity))).all()}
        models = [
            (acts[lk.activity_id], lk)
            for lk in (await s.scalars(select(EventLink))).all()
            if lk.activity_id in acts
        ]
        seq = int(await s.scalar(select(Tenant.change_seq).where(Tenant.id == tenant_id)) or 0)
    a_cols = [c.key for c in Activity.__table__.columns]
    l_cols = [c.key for c in EventLink.__table__.columns]
    chunk = 2000
    for start in range(0, n, chunk):
        a_rows, l_rows, c_rows = [], [], []
        for i in range(start, min(n, start + chunk)):
            act, link = models[i % len(models)]
            shift = timedelta(hours=(i % 3000) * 3)  # spread over about a year ahead
            aid = uuid.uuid4()
            row = {k: getattr(act, k) for k in a_cols}
            row.update(id=aid, subject=f"{act.subject} #{i}")
            for k in ("start_local", "end_local", "start_utc", "end_utc", "range_start_utc"):
                row[k] = row[k] + shift
            if row["range_end_utc"] is not None:
                row["range_end_utc"] = row["range_end_utc"] + shift
            a_rows.append(row)
            lrow = {k: getattr(link, k) for k in l_cols}
            lrow.update(id=uuid.uuid4(), activity_id=aid, google_event_id=f"bench{i:07d}")
            l_rows.append(lrow)
            seq += 1
            c_rows.append(
                {
                    "tenant_id": tenant_id,
                    "seq": seq,
                    "activity_id": aid,
                    "owner_id": act.owner_id,
                    "kind": "created",
                    "version": 1,
                    "origin": "sync",
                    "created_at": datetime.now(UTC),
                }
            )
        async with db.session() as s:
            await s.execute(insert(Activity), a_rows)
            await s.execute(insert(EventLink), l_rows)
            await s.execute(insert(Change), c_rows)
            await s.commit()
    async with db.session() as s:
        await s.execute(update(Tenant).where(Tenant.id == tenant_id).values(change_seq=seq))
        await s.execute(
            update(CalendarBinding).where(CalendarBinding.id == binding_id).values(push_seq=seq)
        )
        await s.commit()
    if db.dialect == "postgresql":
        # what autovacuum does soon after a bulk load: without statistics the planner takes
        # the tables for empty and a join of 10k rows runs for minutes
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()


@dataclass
class Linked:
    """One connected calendar of REAL_EVENTS events made in Google and as many CRM entries,
    synced once (linked both ways), and what a benchmark needs to change either side."""

    db: Any
    tenant_id: uuid.UUID
    binding_id: uuid.UUID
    email: str
    events: list[Any]  # the Google events
    crm_ids: list[uuid.UUID]
    person: Any  # a CalendarClient acting as the user in Google
    google: Any  # calsync's GoogleAccess
    shared: Any  # its HTTP client

    async def edit_in_google(self, r: int) -> None:
        event = self.events[r % REAL_EVENTS]
        await self.person.patch_event(self.email, str(event.id), {"summary": f"G {r}"})

    async def edit_in_crm(self, r: int) -> None:
        from calsync.domain.activity import ActivityDraft, validate
        from calsync.store import activities

        async with self.db.session() as s:
            act = await activities.get(s, self.tenant_id, self.crm_ids[r % REAL_EVENTS])
            assert act is not None
            draft = ActivityDraft(
                start=act.start_local,
                end=act.end_local,
                subject=f"CRM edit {r}",
                time_zone=act.time_zone,
            )
            await activities.update(s, act, validate(draft))
            await s.commit()

    async def aclose(self) -> None:
        await self.person.aclose()
        await self.google.aclose()
        await self.shared.aclose()
        await self.db.dispose()


#: each kind's trigger, as production's: Google's notification, or a CRM change's push
TRIGGERS = {"noop": "webhook", "google": "webhook", "crm": "change"}


async def stored_channel(db: Any, binding_id: uuid.UUID) -> None:
    """A live push channel on the binding's row, as every connected calendar has one: a CRM
    change's run then pushes without listing Google first (sync.engine `_reads_google`), as in
    production. No notification is ever sent to it (the emulator knows no such channel)."""
    from sqlalchemy import update

    from calsync.store.models import CalendarBinding

    async with db.session() as s:
        await s.execute(
            update(CalendarBinding)
            .where(CalendarBinding.id == binding_id)
            .values(
                channel_id=f"bench-{uuid.uuid4().hex}",
                channel_resource_id="bench",
                channel_expires_at=datetime.now(UTC) + timedelta(days=7),
            )
        )
        await s.commit()


async def linked_calendar(url: str, db_url: str | None, prefix: str) -> Linked:
    """The calendar of `Linked` on a fresh database (SQLite in a temporary directory, or
    `db_url`), against the emulator at `url`; also bench/profile_sync.py's set-up."""
    import httpx
    from pydantic import SecretStr

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
    workdir = tempfile.mkdtemp(prefix=f"calsync-{prefix}-")
    db = Database(db_url or f"sqlite+aiosqlite:///{workdir}/calsync.db")
    await upgrade(db)
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@bench.example"
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
        tenant = await tenants.create(s, f"{prefix}-{uuid.uuid4().hex[:6]}")
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
    # one HTTP client for the process, as `calsync serve` and the workers keep one
    shared = make_http_client(settings)
    google = GoogleAccess(
        settings, http=shared, retry=RetryPolicy(max_attempts=3), rate_limiter=None
    )
    first = await sync_binding(db, binding.id, google, trigger="initial")
    assert first.ok, first
    await stored_channel(db, binding.id)
    return Linked(db, tenant.id, binding.id, email, events, crm_ids, person, google, shared)


async def run_calsync(
    url: str, size: int, repeats: int, db_url: str | None, changes: int = 1
) -> dict[str, Any]:
    from sqlalchemy import event

    from calsync.sync.engine import sync_binding

    cal = await linked_calendar(url, db_url, "incr")
    db, google = cal.db, cal.google
    await fill(db, cal.tenant_id, cal.binding_id, size - 2 * REAL_EVENTS)
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)

    server = ServerCpu(db_url) if db_url else None

    async def timed(kind: str = "noop") -> tuple[float, int, float]:
        nonlocal statements
        statements = 0
        before = server.seconds() if server else 0.0
        cpu = time.process_time()
        result = await sync_binding(db, cal.binding_id, google, trigger=TRIGGERS[kind])
        spent = time.process_time() - cpu
        # the database server's share: its backends' CPU during this sync
        backend = (server.seconds() - before) if server else 0.0
        assert result.ok, result
        return spent * 1000, statements, backend * 1000

    await timed()  # warm caches (statement cache, imports)
    out: dict[str, Any] = {"size": size}
    rows: dict[str, list[tuple[float, int, float]]] = {"noop": [], "google": [], "crm": []}
    for r in range(repeats):
        rows["noop"].append(await timed("noop"))
        for k in range(changes):
            await cal.edit_in_google(r * changes + k)
        rows["google"].append(await timed("google"))
        for k in range(changes):
            await cal.edit_in_crm(r * changes + k)
        rows["crm"].append(await timed("crm"))
    for kind, values in rows.items():
        out[kind] = {
            # the server's CPU is read at the clock tick (10 ms): its mean, not its median
            "cpu_ms": statistics.median(v[0] for v in values)
            + statistics.mean(v[2] for v in values),
            "sql": statistics.median(v[1] for v in values),
        }
    if server:
        server.conn.close()
    await cal.aclose()
    return out


class ServerCpu:
    """CPU seconds of the PostgreSQL backends serving calsync's connections to this database
    (a local server: /proc/<pid>/stat), read over a connection of the bench's own."""

    def __init__(self, db_url: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        plain = make_url(db_url).set(drivername="postgresql").render_as_string(False)
        self.conn = psycopg.connect(plain, autocommit=True)
        self.tick = os.sysconf("SC_CLK_TCK")

    def _pids(self) -> list[int]:
        """The backends connected to this database now, the bench's own left out."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [pid for (pid,) in rows]

    def seconds(self) -> float:
        total = 0
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / self.tick

    def open_now(self) -> int:
        """Connections to this database now, the bench's own left out."""
        return len(self._pids())

    def sessions(self) -> int:
        """Sessions (connections) opened to this database so far (PostgreSQL ≥ 14)."""
        row = self.conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0


def fresh_postgres(admin_url: str) -> str:
    """A database of its own for one size (dropped by nobody: the bench's are named)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"calsync_incr_{uuid.uuid4().hex[:8]}"
    u = make_url(admin_url)
    plain = u.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return u.set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False
    )


def drop_postgres(admin_url: str, db_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(admin_url)
    name = make_url(db_url).database
    plain = u.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def parent(args: argparse.Namespace) -> None:
    from gcal_emulator.server import EmulatorServer

    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, Any]] = []
    with EmulatorServer() as server:
        import httpx

        httpx.post(f"{server.url}/emulator/v1/quotas", json={"enabled": False})
        for size in sizes:
            db_url = fresh_postgres(args.postgres_url) if args.postgres_url else ""
            cmd = [sys.executable, __file__, "--child", "--url", server.url]
            cmd += ["--size", str(size), "--repeats", str(args.repeats), "--loop", args.loop]
            cmd += ["--changes", str(args.changes)]
            if db_url:
                cmd += ["--db-url", db_url]
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
            if db_url:
                drop_postgres(args.postgres_url, db_url)
            if proc.returncode != 0:
                raise SystemExit(f"size {size} failed:\n{proc.stderr[-3000:]}")
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(out)
            print(f"  {size:>7} linked events done in {time.perf_counter() - started:.0f} s")
    store = "PostgreSQL" if args.postgres_url else "SQLite"
    print()
    print(
        f"CPU per sync (median of {args.repeats}), calsync on {store}, {args.loop}'s event loop;"
        f" load {os.getloadavg()}"
    )
    if args.postgres_url:
        print("(PostgreSQL: calsync's CPU, median, plus its server backends', mean)")
    header = f"{'linked events':<16}"
    n = args.changes
    for kind in ("no-op", f"{n} change{'s' * (n > 1)} in Google", f"{n} in the CRM"):
        header += f"{kind:>22}"
    print(header)
    for out in results:
        line = f"{out['size']:<16}"
        for kind in ("noop", "google", "crm"):
            cell = f"{out[kind]['cpu_ms']:.1f} ms / {out[kind]['sql']:.0f} SQL"
            line += f"{cell:>22}"
        print(line)
    if len(results) > 1:
        line = f"{'last/first':<16}"
        for kind in ("noop", "google", "crm"):
            a, b = results[-1][kind]["cpu_ms"], results[0][kind]["cpu_ms"]
            line += f"{a / b:>21.2f}x"
        print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,50000")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument(
        "--changes",
        type=int,
        choices=range(1, REAL_EVENTS + 1),
        default=1,
        help="events (activities) edited before each sync of a change",
    )
    p.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", ""))
    p.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the sync's event loop: asyncio's own, or uvloop, which `calsync worker` and "
        "`calsync serve` run on where it is installed (calsync.runtime.run, uvicorn)",
    )
    p.add_argument("--child", action="store_true")
    p.add_argument("--url")
    p.add_argument("--size", type=int)
    p.add_argument("--db-url")
    args = p.parse_args()
    if args.child:
        main = run_calsync(args.url, args.size, args.repeats, args.db_url or None, args.changes)
        if args.loop == "uvloop":
            import uvloop

            out = uvloop.run(main)
        else:
            out = asyncio.run(main)
        print(json.dumps(out))
    else:
        parent(args)


if __name__ == "__main__":
    main()
