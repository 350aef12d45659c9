"""Process-wide settings the `calsync` commands apply when they start (serve, worker, sync).
The library itself changes none: a process that embeds calsync keeps its own. And what every
part of a process shares: one TLS context for its HTTP clients."""

from __future__ import annotations

import asyncio
import functools
import gc
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

#: CPython walks every tracked object of the process in a full collection only after this
#: many collections of the middle generation (its default is 10)
FULL_COLLECTION_EVERY = 100
#: a young collection runs after this many more tracked objects were made than freed
#: (CPython 3.11's default is 700; 3.13 made it 2,000)
YOUNG_COLLECTION_AFTER = 7000


def tune_gc() -> None:
    """Full garbage collections ten times rarer, and young ones too. A full one walks every
    tracked object of the process (about 130,000 once calsync's libraries are loaded, far
    more in a web process), and a sync keeps the page of events it stores alive meanwhile
    (17 tracked objects per event as pydantic models), which is what triggers them: at
    CPython's default a first import of 10,000 events ran four, 0.34 s of its 2.5 s CPU, and
    none with this (docs/deploy.md, "First import"). At 700 the same import still ran ~510
    young and ~46 middle collections (each of those walking the page's models again), 0.11-
    0.35 s; at 7,000 39 and 4, 0.06-0.13 s, a young one about 1 ms, the peak memory the same.
    Cyclic garbage waits longer for its collection; everything else is still freed by
    reference counting as it goes."""
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, middle, FULL_COLLECTION_EVERY)


def settle_heap() -> None:
    """Once a long-lived process has started (`calsync serve`, `calsync worker`): collect
    start-up's garbage, then move every object left (modules, routes, schemas, compiled
    statements: a few hundred thousand) out of the collector's view for the process's life.
    A full collection then scans only what was made since; it had to walk them all, which on
    the project's 2-core machine stopped the event loop for 0.1-0.2 s every few thousand API
    calls — every request or sync in flight waited (issue 16's API p99; docs/deploy.md
    "Capacity"). Python's `gc.freeze`, made for this; `thaw_heap` at shutdown."""
    gc.collect()
    gc.freeze()


def thaw_heap() -> None:
    gc.unfreeze()


_TLS_LOCK = threading.Lock()


def tls_context() -> ssl.SSLContext:
    """The one verifying TLS context of the process's HTTP clients (Google, OAuth, outbound
    webhooks). httpx builds a new one for every client it makes and loads the whole CA bundle
    into it — about 40 ms of CPU a client, paid by every batch of outbound webhooks and by a
    process's first sync. A context is only read once made, so sharing it is safe; it is
    httpx's own (`create_ssl_context`: certifi's bundle, SSL_CERT_FILE / SSL_CERT_DIR
    honoured), made once (a caller meeting `warm_up`'s thread making it waits for that one)."""
    with _TLS_LOCK:
        return _tls_context()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


_warming: list[threading.Thread] = []


def start_process(*more: Callable[[], object]) -> None:
    """What `calsync serve`, `worker` and `sync` do as they start: the collector's thresholds
    (`tune_gc`) and the first sync's one-time work made in a thread (`warm_up`, with `more`)."""
    tune_gc()
    warm_up(*more)


def warm_up(*more: Callable[[], object]) -> None:
    """Make what a process builds at its first use (the TLS context, and `more`: callables
    whose results are cached) in a daemon thread, once a process: its first sync then finds
    them made. The CA bundle is loaded with the GIL released (OpenSSL reads and parses it),
    so that part runs beside whatever the process does meanwhile."""
    if _warming:
        return

    def build() -> None:
        tls_context()
        for make in more:
            make()

    thread = threading.Thread(target=build, name="calsync-warm-up", daemon=True)
    _warming.append(thread)
    thread.start()


def http_client(**kwargs: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` on the process's TLS context (`kwargs` as httpx's)."""
    kwargs.setdefault("verify", tls_context())
    return httpx.AsyncClient(**kwargs)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived command's event loop (`calsync worker`) on uvloop where it is installed
    — it comes with uvicorn[standard] on Linux and macOS, and `calsync serve` already runs on
    it (uvicorn's loop="auto") — else on asyncio's own. A worker's syncs are mostly event loop
    work (each SQLite statement and Google request wakes the loop), which uvloop does in C."""
    try:
        import uvloop
    except ImportError:  # Windows, PyPy: asyncio's loop, as uvicorn falls back to
        return asyncio.run(main)
    return uvloop.run(main)
