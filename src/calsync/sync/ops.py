"""One Google write the push planned, and what became of it once Google answered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from calsync.domain.fields import SyncFields
from calsync.google.calls import ApiCall


class OpKind(StrEnum):
    INSERT = "insert"
    PATCH = "patch"
    DELETE = "delete"
    WITHDRAW = "withdraw"  # the delete of an entry that stopped being exported
    MOVE = "move"  # into the export calendar from the one that received CRM entries before


class Settled(StrEnum):
    """A write's answer, stored: what the push loop does with the entry next."""

    DONE = "done"  # stored (written, or nothing left to write)
    AGAIN = "again"  # one more round: re-read and merged, moved, or the etag refreshed
    DEFERRED = "deferred"  # a passing failure: the next run writes it (the cursor waits)
    PARKED = "parked"  # refused for good: an issue for a person


@dataclass
class Op:
    kind: OpKind
    activity_id: uuid.UUID
    event_id: str
    call: ApiCall[Any]
    values: SyncFields | None
    #: a move's old calendar, or the unticked calendar a withdraw deletes from (binding and
    #: Google id); None: this run's calendar
    from_binding: uuid.UUID | None = None
    from_calendar: str | None = None
    #: the link in this run's calendar the write was planned from (an insert's or a patch's):
    #: its answer is stored on that row without reading it again (sync.push.settle)
    link_id: uuid.UUID | None = None
