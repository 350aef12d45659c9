"""A calendar's Google-side change rate: changes a day, exponentially weighted over a week.

The polls of jobs/polling.py trust a busy calendar's silence for less long; the sync's run end
(sync/engine.py) adds what the run applied, in the same UPDATE that releases the lock.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

#: a Google-side change rate's memory: its weight falls by e every week
RATE_MEMORY = timedelta(days=7)
#: one run adds at most this many changes to the rate (a 410's relisting is not traffic)
RATE_RUN_CAP = 5


def decayed(rate: float | None, at: datetime | None, now: datetime) -> float:
    """A stored change rate (changes a day) as it stands at `now`."""
    if not rate or at is None:
        return 0.0
    return rate * math.exp(-max(0.0, (now - at) / RATE_MEMORY))


def _watched_share(since: datetime | None, at: datetime) -> float:
    """How much of the rate's memory the binding has existed for (at least a day of it): a
    binding watched for a day has seen a day of traffic, not a week's."""
    if since is None:
        return 1.0
    watched = max(timedelta(days=1), at - since)
    return 1.0 - math.exp(-(watched / RATE_MEMORY))


def added(
    rate: float | None,
    at: datetime | None,
    changes: int,
    now: datetime,
    since: datetime | None = None,
) -> float:
    """The rate after a run applied `changes` Google-side changes at `now`: an exponentially
    weighted count over the time the binding has been watched (`since`), so `r` changes a day
    read `r` from the first day on."""
    weighted = decayed(rate, at, now) * (_watched_share(since, at) if at is not None else 1.0)
    weighted += min(changes, RATE_RUN_CAP) / (RATE_MEMORY / timedelta(days=1))
    return weighted / _watched_share(since, now)
