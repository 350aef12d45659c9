"""Process-wide settings the `calsync` commands apply when they start (serve, worker, sync).
The library itself changes none: a process that embeds calsync keeps its own."""

from __future__ import annotations

import gc

#: CPython walks every tracked object of the process in a full collection only after this
#: many collections of the middle generation (its default is 10)
FULL_COLLECTION_EVERY = 100


def tune_gc() -> None:
    """Full garbage collections ten times rarer. Each one walks every tracked object of the
    process (about 130,000 once calsync's libraries are loaded, far more in a web process),
    and a sync keeps the page of events it stores alive meanwhile (17 tracked objects per
    event as pydantic models), which is what triggers them: at CPython's default a first
    import of 10,000 events ran four, 0.34 s of its 2.5 s CPU, and none with this
    (docs/deploy.md, "First import"). Cyclic garbage waits longer for its collection;
    everything else is still freed by reference counting as it goes."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
