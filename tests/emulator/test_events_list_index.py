"""events.list pages cost what they show, not what the calendar holds.

Each page resumes from its page token's position in the calendar's index instead of collecting
and sorting every event again, so walking N events costs N, not N²/page size. The emulator
counts the events a listing looks at (`EventIndex.examined`); these tests bound that count per
page, which holds on any machine, unlike a timing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from gcal_emulator.events.index import index_of
from tests.conftest import Emulator
from tests.emulator.test_events import Api, timed

EVENTS = 600
PAGE = 50


def seed(emulator: Emulator, api: Api, count: int) -> list[str]:
    """`count` events through one batch request (fast), in creation order."""
    parts = [
        "--b\r\nContent-Type: application/http\r\n\r\n"
        "POST /calendar/v3/calendars/primary/events HTTP/1.1\r\n"
        f"Content-Type: application/json\r\n\r\n{json.dumps(timed(f'e{i}'))}\r\n"
        for i in range(count)
    ]
    resp = emulator.http.post(
        "/batch/calendar/v3",
        content=("".join(parts) + "--b--\r\n").encode(),
        headers={**api.auth, "Content-Type": "multipart/mixed; boundary=b"},
    )
    assert resp.status_code == 200 and "HTTP/1.1 4" not in resp.text
    items, _, _ = api.list_all("primary", maxResults=2500, showDeleted="true")
    assert len(items) == count
    return [e["id"] for e in items]


@pytest.fixture
def ada(emulator: Emulator) -> Api:
    emulator.account("ada@example.com", "Ada")
    return Api(emulator, "ada@example.com")


def pages(emulator: Emulator, api: Api, **params: Any) -> Iterator[tuple[dict[str, Any], int]]:
    """Every page of a list, with the number of events the emulator examined for it."""
    token = None
    while True:
        before = index_of(emulator.world, "ada@example.com").examined
        page = api.list("primary", **params, **({"pageToken": token} if token else {}))
        yield page, index_of(emulator.world, "ada@example.com").examined - before
        token = page.get("nextPageToken")
        if token is None:
            return


def test_each_page_of_a_full_list_examines_one_page_of_events(emulator: Emulator, ada: Api) -> None:
    ids = seed(emulator, ada, EVENTS)
    for eid in ids[:200]:  # deleted events a plain list skips without looking at them
        assert ada.req("DELETE", f"/calendars/primary/events/{eid}").status_code == 204
    seen: list[str] = []
    for page, examined in pages(emulator, ada, maxResults=PAGE):
        seen += [e["id"] for e in page["items"]]
        assert examined <= PAGE + 1  # the page, and one more to know whether another follows
    assert seen == ids[200:]


@pytest.mark.parametrize(
    "params",
    [{"showDeleted": "true"}, {"orderBy": "updated"}, {"updatedMin": "2000-01-01T00:00:00Z"}],
    ids=["showDeleted", "orderBy=updated", "updatedMin"],
)
def test_other_orders_and_filters_examine_one_page_per_page(
    emulator: Emulator, ada: Api, params: dict[str, str]
) -> None:
    if "updatedMin" in params:  # within Google's 28 days: a minute before the events
        since = emulator.world.clock.now_dt() - timedelta(minutes=1)
        params = {"updatedMin": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    ids = seed(emulator, ada, EVENTS)
    seen: list[str] = []
    for page, examined in pages(emulator, ada, maxResults=PAGE, **params):
        seen += [e["id"] for e in page["items"]]
        assert examined <= PAGE + 1
    assert sorted(seen) == sorted(ids)


def test_an_incremental_sync_examines_only_the_changed_events(emulator: Emulator, ada: Api) -> None:
    ids = seed(emulator, ada, EVENTS)
    _, sync, _ = ada.list_all("primary", maxResults=2500)
    changed = ids[10:500:70]
    for eid in changed:
        ada.ok("PATCH", f"/calendars/primary/events/{eid}", json={"summary": "moved"})
    walked = list(pages(emulator, ada, syncToken=sync, maxResults=3))
    assert [e["id"] for page, _ in walked for e in page["items"]] == changed
    assert all(examined <= 3 + 1 for _, examined in walked)
    # each page looks again at the one event the previous page looked at beyond itself
    assert sum(examined for _, examined in walked) == len(changed) + len(walked) - 1
