"""Three-way merge of one entry: the last-synced snapshot against each side's current fields.

A unit changed on one side only takes that side's value, so a title edited in the CRM never
undoes a time moved in Google. A unit changed on both sides to different values is a conflict,
decided by the tenant's policy and reported so both values stay visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .fields import UNITS, SyncFields


class Policy(StrEnum):
    LATEST_WINS = "latest_wins"
    CRM_WINS = "crm_wins"
    GOOGLE_WINS = "google_wins"


class Side(StrEnum):
    CRM = "crm"
    GOOGLE = "google"


@dataclass(frozen=True)
class Conflict:
    unit: str
    base: tuple[Any, ...] | None
    crm: tuple[Any, ...]
    google: tuple[Any, ...]
    winner: Side


@dataclass(frozen=True)
class Merged:
    """The agreed fields, which side needs which units written, and the conflicts decided."""

    values: SyncFields
    to_google: frozenset[str]
    to_crm: frozenset[str]
    conflicts: tuple[Conflict, ...]


def winner(policy: Policy, crm_updated: datetime, google_updated: datetime) -> Side:
    """Who wins a unit both sides changed. `latest_wins` compares UTC instants; a tie keeps
    Google's value, because Google is what the user's phone and guests already see."""
    if policy is Policy.CRM_WINS:
        return Side.CRM
    if policy is Policy.GOOGLE_WINS:
        return Side.GOOGLE
    return Side.CRM if crm_updated > google_updated else Side.GOOGLE


def merge(
    base: SyncFields | None,
    crm: SyncFields,
    google: SyncFields,
    *,
    policy: Policy,
    crm_updated: datetime,
    google_updated: datetime,
) -> Merged:
    """Merge unit by unit. Without a base (a first link), differing units follow the policy and
    are not reported as conflicts: nobody edited anything since a sync."""
    result = crm
    to_google: set[str] = set()
    to_crm: set[str] = set()
    conflicts: list[Conflict] = []
    for name in UNITS:
        c, g = crm.unit(name), google.unit(name)
        if c == g:
            continue
        b = base.unit(name) if base is not None else None
        if b == g:  # only the CRM changed it
            to_google.add(name)
        elif b == c:  # only Google changed it
            result = result.with_unit(name, g)
            to_crm.add(name)
        else:
            side = winner(policy, crm_updated, google_updated)
            if side is Side.GOOGLE:
                result = result.with_unit(name, g)
                to_crm.add(name)
            else:
                to_google.add(name)
            if base is not None:
                conflicts.append(Conflict(name, b, c, g, side))
    return Merged(result, frozenset(to_google), frozenset(to_crm), tuple(conflicts))
