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
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


async def run(url: str, args: argparse.Namespace) -> None:
    from incremental import TRIGGERS, fresh_postgres, linked_calendar
    from sqlalchemy import event

    from calsync.sync.engine import sync_binding

    cal = await linked_calendar(
        url, fresh_postgres(args.postgres_url) if args.postgres_url else None, "prof"
    )
    db, google = cal.db, cal.google
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
            await cal.edit_in_google(r)
        elif args.kind == "crm":
            await cal.edit_in_crm(r)
        if r == 0:  # warm-up, not profiled
            await sync_binding(db, cal.binding_id, google, trigger=TRIGGERS[args.kind])
            statements = 0
            continue
        last.clear()
        began = time.process_time()
        profile.enable()
        result = await sync_binding(db, cal.binding_id, google, trigger=TRIGGERS[args.kind])
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
    await cal.aclose()


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
