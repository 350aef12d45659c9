"""Per-calendar indexes that let an events.list page resume where the previous one stopped.

Without them every page re-collected and re-sorted the whole calendar, so walking N events in
pages of P cost N²/P. The index keeps, per calendar:

- the events in creation order (the default order of a non-expanded list), with three max-trees
  over those positions: the update sequence (`seq`, for syncToken lists), `updated_ts` (for
  updatedMin) and "listable" (live events and exceptions, for plain lists), so the next event
  a query can show is found in O(log N) without looking at the ones it skips;
- the events ordered by (`updated_ts`, id), for orderBy=updated.

It is derived state: built from `World.events` on first use, kept current by `storage.commit`
(the only writer of events), rebuilt when the store was replaced (reset, a loaded state file)
or changed behind its back. It is never saved. `examined` counts the events a listing looked
at, so tests can assert a page's work without timing it.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator

from ..state import StoredEvent, World

_NONE = float("-inf")


class MaxTree:
    """Maximum over a growable array of floats; finds the first position at or after `start`
    whose value reaches a threshold in O(log n)."""

    def __init__(self, values: list[float]) -> None:
        self._build(values)

    def _build(self, values: list[float]) -> None:
        self.n = len(values)
        self.size = 1
        while self.size < max(self.n, 1):
            self.size *= 2
        self.tree = [_NONE] * (2 * self.size)
        self.tree[self.size : self.size + self.n] = values
        for node in range(self.size - 1, 0, -1):
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])

    def append(self, value: float) -> None:
        if self.n == self.size:  # full: double the capacity (amortised O(1) per append)
            self._build([*self.tree[self.size : self.size + self.n], value])
            return
        self.n += 1
        self.set(self.n - 1, value)

    def set(self, pos: int, value: float) -> None:
        node = self.size + pos
        self.tree[node] = value
        node //= 2
        while node:
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])
            node //= 2

    def top(self) -> float:
        return self.tree[1]

    def first_at_least(self, start: int, threshold: float) -> int | None:
        if start >= self.n or self.tree[1] < threshold:
            return None
        return self._find(1, 0, self.size, start, threshold)

    def _find(self, node: int, lo: int, hi: int, start: int, threshold: float) -> int | None:
        if hi <= start or self.tree[node] < threshold:
            return None
        if hi - lo == 1:
            return lo
        mid = (lo + hi) // 2
        found = self._find(2 * node, lo, mid, start, threshold)
        if found is not None:
            return found
        return self._find(2 * node + 1, mid, hi, start, threshold)


def _listable(ev: StoredEvent) -> float:
    """Could a plain list (no showDeleted, no updatedMin) show it? Live events, and exceptions:
    a cancelled exception of a live master is listed (whether the master is live is checked
    when the list looks at it)."""
    live = ev.data.get("status") != "cancelled" or "recurringEventId" in ev.data
    return 1.0 if live else 0.0


class EventIndex:
    """The indexes of one calendar's events (see the module docstring)."""

    def __init__(self, store: dict[str, StoredEvent]) -> None:
        self.store = store
        self.order = sorted(store.values(), key=lambda ev: ev.created_seq)
        self.created = [ev.created_seq for ev in self.order]
        self.position = {ev.data["id"]: i for i, ev in enumerate(self.order)}
        self.seq = MaxTree([float(ev.seq) for ev in self.order])
        self.updated = MaxTree([ev.updated_ts for ev in self.order])
        self.listable = MaxTree([_listable(ev) for ev in self.order])
        self.by_updated = sorted((ev.updated_ts, ev.data["id"]) for ev in self.order)
        self.examined = 0

    def added(self, ev: StoredEvent) -> None:
        """A new event (its created_seq is the highest so far: it goes last)."""
        self.position[ev.data["id"]] = len(self.order)
        self.order.append(ev)
        self.created.append(ev.created_seq)
        self.seq.append(float(ev.seq))
        self.updated.append(ev.updated_ts)
        self.listable.append(_listable(ev))
        insort(self.by_updated, (ev.updated_ts, ev.data["id"]))

    def changed(self, ev: StoredEvent, old_updated_ts: float) -> None:
        """A new version of an event already indexed."""
        pos = self.position[ev.data["id"]]
        self.seq.set(pos, float(ev.seq))
        self.updated.set(pos, ev.updated_ts)
        self.listable.set(pos, _listable(ev))
        old = (old_updated_ts, ev.data["id"])
        at = bisect_left(self.by_updated, old)
        if at < len(self.by_updated) and self.by_updated[at] == old:
            del self.by_updated[at]
        insort(self.by_updated, (ev.updated_ts, ev.data["id"]))

    def last_updated(self) -> float | None:
        top = self.updated.top()
        return None if top == _NONE else top

    def in_created_order(
        self, after_created: float | None, tree: MaxTree | None, threshold: float
    ) -> Iterator[StoredEvent]:
        """Events created after `after_created`, in creation order; with a tree, only those
        whose value in it reaches `threshold` (the others are skipped unseen)."""
        i = 0 if after_created is None else bisect_right(self.created, after_created)
        while True:
            found = i if tree is None else tree.first_at_least(i, threshold)
            if found is None or found >= len(self.order):
                return
            self.examined += 1
            yield self.order[found]
            i = found + 1

    def in_updated_order(self, after: tuple[float, str] | None) -> Iterator[StoredEvent]:
        """Events in (updated_ts, id) order after the key `after`."""
        i = 0 if after is None else bisect_right(self.by_updated, after)
        while i < len(self.by_updated):
            self.examined += 1
            yield self.store[self.by_updated[i][1]]
            i += 1


_INDEXES: weakref.WeakKeyDictionary[World, dict[str, EventIndex]] = weakref.WeakKeyDictionary()


def index_of(world: World, cal_id: str) -> EventIndex:
    """The calendar's index, built (again) when missing or out of step with its store."""
    store = world.events.setdefault(cal_id, {})
    per_world = _INDEXES.setdefault(world, {})
    idx = per_world.get(cal_id)
    if idx is None or idx.store is not store or len(idx.order) != len(store):
        examined = idx.examined if idx is not None else 0
        idx = EventIndex(store)
        idx.examined = examined
        per_world[cal_id] = idx
    return idx
