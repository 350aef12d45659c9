"""Google's sync-token contract as a property: whatever happens to a calendar, a client that keeps
applying incremental results to its first full result holds exactly what a fresh full list shows —
with and without singleEvents, with paging forced by small pages and changes made mid-paging."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gcal_emulator.server import EmulatorServer

CAL = "ada@example.com"
OSLO = "Europe/Oslo"


class Client:
    """A syncing client: the local copy, the sync token, and how it applies results."""

    def __init__(self, http: httpx.Client, single: bool) -> None:
        self.http = http
        self.single = single
        self.items: dict[str, dict[str, Any]] = {}
        self.token: str | None = None

    def params(self) -> dict[str, str]:
        return {"singleEvents": "true"} if self.single else {}

    def pages(self, params: dict[str, Any], between: Any = None) -> tuple[list[Any], str]:
        items: list[dict[str, Any]] = []
        page_token = None
        first = True
        while True:
            p = dict(params)
            if page_token:
                p["pageToken"] = page_token
            resp = self.http.get(f"/calendar/v3/calendars/{CAL}/events", params=p)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            items += body["items"]
            page_token = body.get("nextPageToken")
            if page_token is None:
                assert "nextSyncToken" in body
                return items, body["nextSyncToken"]
            assert "nextSyncToken" not in body
            if first and between is not None:
                between()  # the calendar changes while the client is paging
            first = False

    def full(self, page_size: int) -> None:
        items, self.token = self.pages({**self.params(), "maxResults": page_size})
        self.items = {}
        self.apply(items)

    def sync(self, page_size: int, between: Any = None) -> None:
        assert self.token is not None
        params = {**self.params(), "maxResults": page_size, "syncToken": self.token}
        items, self.token = self.pages(params, between)
        self.apply(items)

    def apply(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            cancelled = item["status"] == "cancelled"
            if cancelled and (self.single or "recurringEventId" not in item):
                self.items.pop(item["id"], None)  # a deletion
            else:
                # a live event, or a cancelled exception of a series: kept while the series lives
                self.items[item["id"]] = item
        for key, item in list(self.items.items()):
            master = item.get("recurringEventId")
            if not self.single and master is not None and master not in self.items:
                del self.items[key]


ops = st.one_of(
    st.tuples(st.just("insert"), st.booleans(), st.integers(0, 20)),
    st.tuples(st.just("patch"), st.integers(0, 30), st.sampled_from(["summary", "time", "ext"])),
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(st.just("instance_patch"), st.integers(0, 30), st.integers(0, 5)),
    st.tuples(st.just("instance_delete"), st.integers(0, 30), st.integers(0, 5)),
    st.tuples(st.just("sync"), st.integers(1, 6), st.booleans()),
)


class History:
    """Performs random operations on one calendar through the real API."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.ids: list[str] = []
        self.series: list[str] = []
        self.counter = 0

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        resp = self.http.request(method, f"/calendar/v3/calendars/{CAL}/events{path}", **kw)
        assert resp.status_code < 500, resp.text
        assert resp.status_code in (200, 204, 404, 410), resp.text
        return resp

    def pick(self, pool: list[str], i: int) -> str | None:
        return pool[i % len(pool)] if pool else None

    def run(self, op: tuple[Any, ...]) -> None:
        self.counter += 1
        n = self.counter
        kind = op[0]
        if kind == "insert":
            recurring, day = op[1], op[2]
            date = f"2024-03-{10 + day:02d}"
            body: dict[str, Any] = {
                "summary": f"event {n}",
                "start": {"dateTime": f"{date}T09:00:00", "timeZone": OSLO},
                "end": {"dateTime": f"{date}T10:00:00", "timeZone": OSLO},
            }
            if recurring:
                body["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=5"]
            ev = self.call("POST", "", json=body).json()
            self.ids.append(ev["id"])
            if recurring:
                self.series.append(ev["id"])
        elif kind == "patch":
            target = self.pick(self.ids, op[1])
            if target is None:
                return
            field = op[2]
            patch: dict[str, Any] = {"summary": f"changed {n}"}
            if field == "time":
                hour = 8 + n % 5
                patch = {
                    "start": {"dateTime": f"2024-03-11T{hour:02d}:00:00", "timeZone": OSLO},
                    "end": {"dateTime": f"2024-03-11T{hour:02d}:30:00", "timeZone": OSLO},
                }
            elif field == "ext":
                patch = {"extendedProperties": {"private": {f"k{n % 3}": str(n)}}}
            self.call("PATCH", f"/{target}", json=patch)
        elif kind == "delete":
            target = self.pick(self.ids, op[1])
            if target is not None:
                self.call("DELETE", f"/{target}")
        elif kind in ("instance_patch", "instance_delete"):
            master = self.pick(self.series, op[1])
            if master is None:
                return
            got = self.call("GET", f"/{master}/instances", params={"showDeleted": "true"})
            if got.status_code != 200:
                return
            instances = got.json()["items"]
            if not instances:
                return
            inst = instances[op[2] % len(instances)]["id"]
            if kind == "instance_patch" and n % 2:
                self.call("PATCH", f"/{inst}", json={"summary": f"instance {n}"})
            elif kind == "instance_patch":  # move one occurrence
                self.call(
                    "PATCH",
                    f"/{inst}",
                    json={
                        "start": {"dateTime": "2024-03-20T12:00:00", "timeZone": OSLO},
                        "end": {"dateTime": "2024-03-20T13:00:00", "timeZone": OSLO},
                    },
                )
            else:
                self.call("DELETE", f"/{inst}")


def fresh_full(http: httpx.Client, single: bool) -> dict[str, dict[str, Any]]:
    client = Client(http, single)
    client.full(2500)
    return client.items


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    before=st.lists(ops, max_size=8),
    after=st.lists(ops, min_size=1, max_size=25),
    page=st.integers(1, 5),
)
def test_incremental_results_applied_to_a_full_result_equal_a_fresh_full_list(
    emulator_server: EmulatorServer,
    before: list[tuple[Any, ...]],
    after: list[tuple[Any, ...]],
    page: int,
) -> None:
    note(f"before={before!r} after={after!r} page={page}")
    with httpx.Client(base_url=emulator_server.url, timeout=10) as control:
        control.post("/emulator/v1/reset").raise_for_status()
        control.post("/emulator/v1/accounts", json={"email": CAL}).raise_for_status()
        token = control.post(f"/emulator/v1/accounts/{CAL}/tokens", json={}).json()["access_token"]
    with httpx.Client(
        base_url=emulator_server.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        history = History(http)
        for op in before:
            if op[0] != "sync":
                history.run(op)
        clients = [Client(http, single=False), Client(http, single=True)]
        for c in clients:
            c.full(page)
        pending = list(after)
        while pending:
            op = pending.pop(0)
            if op[0] != "sync":
                history.run(op)
                continue
            size, interleave = op[1], op[2]
            for c in clients:
                nxt = pending.pop(0) if interleave and pending and pending[0][0] != "sync" else None
                c.sync(size, (lambda o=nxt: history.run(o)) if nxt else None)
        for c in clients:
            c.sync(page)
            assert c.items == fresh_full(http, c.single)
