"""Which URLs outbound webhooks may be sent to (server-side request forgery guard).

Only http and https; the host is resolved and every address it resolves to must be public:
private, loopback, link-local (cloud metadata at 169.254.169.254), multicast, reserved and
unspecified addresses are refused unless the operator allows them
(CALSYNC_WEBHOOK_ALLOW_PRIVATE=true; the sandbox does). Checked when an endpoint is saved and
again before every delivery, since DNS answers change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
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


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeTarget when `url` may not receive webhooks."""
    host, port = check_scheme(url)
    if allow_private:
        return
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
