"""Every HTTP client of a process shares one TLS context: httpx builds a new one for each
client it makes, loading the whole CA bundle (about 40 ms of CPU), which calsync paid on every
batch of outbound webhooks and at the start of every process's first sync."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from calsync import runtime
from calsync.google.calendar import make_http_client
from calsync.google.oauth import GoogleOAuth
from calsync.settings import Settings


def test_clients_reuse_the_process_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = runtime.tls_context()
    assert shared is runtime.tls_context()
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    loads: list[Any] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    settings = Settings(
        google_client_id="x.apps.googleusercontent.com", google_client_secret=SecretStr("s")
    )
    made = [make_http_client(settings), GoogleOAuth(settings), runtime.http_client(timeout=5)]
    assert loads == []  # no CA bundle loaded again
    # a plain httpx client still would: the count above would have seen it
    httpx.AsyncClient()
    assert len(loads) >= 1
    assert all(made)


def test_warm_up_makes_the_context_and_more_once_in_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The commands start `warm_up` as they start: the TLS context (and the zone list) are
    made in a thread of their own, once a process; a client made meanwhile gets that same
    context instead of loading the CA bundle a second time."""
    runtime._tls_context.cache_clear()
    monkeypatch.setattr(runtime, "_warming", [])
    made: list[str] = []
    runtime.warm_up(lambda: made.append("zones"))
    runtime.warm_up(lambda: made.append("again"))  # once a process
    shared = runtime.tls_context()  # waits for the thread's, if it is still loading
    (thread,) = runtime._warming
    thread.join(10)
    assert not thread.is_alive()
    assert made == ["zones"]
    assert runtime.tls_context() is shared
    assert runtime._tls_context.cache_info().misses == 1
