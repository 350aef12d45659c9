"""What a sync costs in Google requests, counted in the emulator's request log."""

from __future__ import annotations

import math
from datetime import timedelta

from calsync.google import calls
from calsync.google.errors import Duplicate
from calsync.sync import pull

from .conftest import ZONE, Harness, at


def _kinds(log: list[dict[str, object]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in log:
        path = str(item["path"])
        key = (
            "batch" if path.startswith("/batch/") else f"{item['method']} {path.rsplit('/', 1)[-1]}"
        )
        out[key] = out.get(key, 0) + 1
    return out


async def test_pushing_n_activities_costs_n_writes_in_batches_of_50(h: Harness) -> None:
    n = 120
    for i in range(n):
        await h.activity(f"Visit {i}", at(1 + i % 20, 8 + i % 9))
    mark = h.mark()
    result = await h.sync()
    assert result.ok and result.counts["pushed"] == n
    kinds = _kinds(h.requests_since(mark))
    # the first sync: the calendar list (are there events calsync wrote before in calendars
    # of this account no binding names? transitions.gather; none here), one list of this
    # calendar, ceil(n/50) batch requests carrying exactly n inserts, no reads
    assert kinds == {
        "GET calendarList": 1,
        "GET events": 1,
        "batch": math.ceil(n / 50),
        "POST events": n,
    }, kinds
    # edit all of them: n patches, again in batches, no read before writing
    for a in await h.live_activities():
        await h.edit(a.id, description="agenda attached")
    mark = h.mark()
    result = await h.sync()
    assert result.counts["pushed"] == n
    kinds = _kinds(h.requests_since(mark))
    assert kinds["batch"] == math.ceil(n / 50) and kinds["GET events"] == 1
    assert sum(v for k, v in kinds.items() if k.startswith("PATCH")) == n
    assert sum(v for k, v in kinds.items() if k.startswith("GET")) == 1
    # and the next incremental sync with no changes costs exactly one request
    mark = h.mark()
    await h.sync()
    assert len(h.requests_since(mark)) == 1


async def test_initial_import_costs_one_list_request_per_1000_events(h: Harness) -> None:
    n = 2001
    start = at(1, 0)
    inserts = [
        calls.events_insert(
            h.calendar_id,
            {
                # an id of its own, so a batch retried after a timeout on a loaded machine
                # answers 409 for what it already made instead of making it twice
                "id": f"costimport{i:05d}",
                "summary": f"Imported {i}",
                "start": {
                    "dateTime": (start + timedelta(minutes=30 * i)).isoformat(),
                    "timeZone": ZONE,
                },
                "end": {
                    "dateTime": (start + timedelta(minutes=30 * i + 25)).isoformat(),
                    "timeZone": ZONE,
                },
            },
        )
        for i in range(n)
    ]
    results = await h.person.batch(inserts, chunk_size=1000)
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, Duplicate)]
    mark = h.mark()
    result = await h.sync()
    assert result.ok and result.counts["created"] == n
    # the calendar list (transitions.gather looks for events calsync wrote before in other
    # calendars of the account; there are none) and one list request per 1,000 events
    log = [i for i in h.requests_since(mark) if not str(i["path"]).endswith("/calendarList")]
    assert _kinds(h.requests_since(mark)).get("GET calendarList") == 1
    assert len(log) == math.ceil(n / pull.MAX_RESULTS) == 3, _kinds(log)
    assert all(f"maxResults={pull.MAX_RESULTS}" in str(item["query"]) for item in log)
