"""Which URLs outbound webhooks may be sent to (server-side request forgery guard).

Only http and https; the host is resolved and every address it resolves to must be public:
private, loopback, link-local (cloud metadata at 169.254.169.254), multicast, reserved and
unspecified addresses are refused unless the operator allows them
(CALSYNC_WEBHOOK_ALLOW_PRIVATE=true; the sandbox does). Checked when an endpoint is saved and
again before every delivery, since DNS answers change.

A delivery connects to the address that was checked (`Target.connect_url`), with the URL's
host in the Host header and as the TLS server name: were the HTTP client to resolve the name
again, a rebinding DNS server could answer a public address to the check and 127.0.0.1 to the
connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class UnsafeTarget(ValueError):
    def __init__(self, message: str, remedy: str) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy


ALLOW_REMEDY = (
    "use a public http(s) URL of your CRM; an operator who runs the receiver on a private "
    "network can allow that with CALSYNC_WEBHOOK_ALLOW_PRIVATE=true"
)


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    if not address.is_global:
        return "not global"
    return None


def check_scheme(url: str) -> tuple[str, int]:
    """The URL's host and port, if it is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget(
            f"webhook URLs must be http or https, not {parts.scheme or 'a relative URL'!r}",
            "give an absolute https:// URL of your CRM's webhook receiver",
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeTarget(f"the URL's port is not valid: {exc}", "give a port 1-65535") from exc
    if not parts.hostname:
        raise UnsafeTarget("the webhook URL has no host", "give a URL like https://crm.example/")
    return parts.hostname, port


@dataclass(frozen=True)
class Target:
    """Where a checked webhook URL is sent: `connect_url` names the checked address in place of
    a host name; `host` (the Host header) and `sni_hostname` keep the name, so virtual hosting
    and certificate checks see what the CRM registered. Both None: send to the URL as it is."""

    connect_url: str
    host: str | None = None
    sni_hostname: str | None = None


def _pinned(url: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Target:
    parts = urlsplit(url)
    shown = f"[{address}]" if address.version == 6 else str(address)
    netloc = shown if parts.port is None else f"{shown}:{parts.port}"
    if "@" in parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    host = parts.netloc.rsplit("@", 1)[-1]
    sni = parts.hostname if parts.scheme == "https" else None
    return Target(parts._replace(netloc=netloc).geturl(), host=host, sni_hostname=sni)


async def check_url(url: str, *, allow_private: bool) -> Target:
    """Where to send `url`'s webhooks; raise UnsafeTarget when it may not receive them."""
    host, port = check_scheme(url)
    if allow_private:
        return Target(url)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise UnsafeTarget(
                f"the webhook host {host!r} does not resolve: {exc}",
                "check the host name (DNS) of the URL",
            ) from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        why = _refused(address)
        if why is not None:
            shown = host if literal is not None else f"{host} ({address})"
            raise UnsafeTarget(
                f"webhook URL refused: {shown} is a {why} address, which calsync does not "
                "send to by default",
                ALLOW_REMEDY,
            )
    if literal is not None:
        return Target(url)
    return _pinned(url, addresses[0])
