"""Initial matching: link an unlinked Google event to an unlinked activity of the same owner
when both describe the same appointment, instead of importing a duplicate.

Equal means equal normalised subject, start, end and recurrence. A key shared by more than one
entry on either side is ambiguous: it is reported for a person to resolve, never guessed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .fields import SyncFields

G = TypeVar("G", bound=Hashable)
C = TypeVar("C", bound=Hashable)

MatchKey = tuple[str, str, str, bool, tuple[str, ...]]


def match_key(values: SyncFields) -> MatchKey:
    subject = " ".join(values.summary.casefold().split())
    return (subject, values.start, values.end, values.all_day, values.recurrence)


@dataclass(frozen=True)
class Ambiguous(Generic[G, C]):
    key: MatchKey
    google: tuple[G, ...]
    crm: tuple[C, ...]


@dataclass(frozen=True)
class Matches(Generic[G, C]):
    pairs: tuple[tuple[G, C], ...]
    ambiguous: tuple[Ambiguous[G, C], ...]


def match(
    google: Iterable[tuple[G, SyncFields]], crm: Iterable[tuple[C, SyncFields]]
) -> Matches[G, C]:
    """Pair ids whose keys meet exactly once on each side; report the rest that collide."""
    by_key_g: dict[MatchKey, list[G]] = defaultdict(list)
    by_key_c: dict[MatchKey, list[C]] = defaultdict(list)
    for gid, values in google:
        by_key_g[match_key(values)].append(gid)
    for cid, values in crm:
        by_key_c[match_key(values)].append(cid)
    pairs: list[tuple[G, C]] = []
    ambiguous: list[Ambiguous[G, C]] = []
    for key, gids in by_key_g.items():
        cids = by_key_c.get(key)
        if not cids:
            continue
        if len(gids) == 1 and len(cids) == 1:
            pairs.append((gids[0], cids[0]))
        else:
            ambiguous.append(Ambiguous(key, tuple(gids), tuple(cids)))
    return Matches(tuple(pairs), tuple(ambiguous))
