"""The SSRF guard: only http(s), and no private, loopback, link-local or otherwise
non-public address unless the operator allows it; at create/update and at each delivery."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from calsync.sync import webhook_targets
from calsync.sync.webhook_targets import UnsafeTarget, check_url

REFUSED = [
    "http://127.0.0.1/hooks",
    "http://10.1.2.3/hooks",
    "http://192.168.0.10/",
    "http://172.16.5.5/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hooks",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://100.64.0.1/",  # carrier-grade NAT: not global
]


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget) as err:
        await check_url(url, allow_private=False)
    assert "address" in err.value.message
    assert "CALSYNC_WEBHOOK_ALLOW_PRIVATE" in err.value.remedy
    await check_url(url, allow_private=True)  # the operator may allow them


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/", "gopher://x/", "/relative", "http://"]
)
async def test_only_http_urls_with_a_host(url: str) -> None:
    for allow in (False, True):
        with pytest.raises(UnsafeTarget):
            await check_url(url, allow_private=allow)


def _resolving_to(address: str) -> Any:
    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return fake


async def test_a_host_name_resolving_to_loopback_is_refused() -> None:
    # localhost resolves to loopback
    with pytest.raises(UnsafeTarget) as err:
        await check_url("http://localhost:9000/", allow_private=False)
    assert "loopback" in err.value.message and "localhost" in err.value.message


async def test_a_public_name_is_accepted_and_rebinding_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", _async(_resolving_to("93.184.216.34")))
    await check_url("https://crm.example.com/hooks", allow_private=False)
    # the same name later answers with a metadata address: refused at delivery
    monkeypatch.setattr(loop, "getaddrinfo", _async(_resolving_to("169.254.169.254")))
    with pytest.raises(UnsafeTarget) as err:
        await check_url("https://crm.example.com/hooks", allow_private=False)
    assert "link-local" in err.value.message


def _async(fn: Any) -> Any:
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapped


async def test_an_unresolvable_host_says_so() -> None:
    with pytest.raises(UnsafeTarget) as err:
        await check_url("https://no-such-host.invalid/", allow_private=False)
    assert "does not resolve" in err.value.message


def test_bad_port() -> None:
    with pytest.raises(UnsafeTarget):
        webhook_targets.check_scheme("http://example.com:99999/")
