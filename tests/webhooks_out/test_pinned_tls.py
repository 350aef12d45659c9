"""The webhook deliverer connects to the address its SSRF check resolved
(sync/webhook_targets: `connect_url`) and names the registered host for TLS (`sni_hostname`)
and HTTP (`Host`). Against a real TLS server on 127.0.0.1 whose certificate names only the
registered host: the pinned request is verified by that name; without it, the address alone
fails the certificate check."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from calsync import runtime


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length) if length else b""


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A certificate for `host` and its key, PEM."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


async def test_a_pinned_address_is_verified_by_the_name_it_was_registered_with(
    tmp_path: Any,
) -> None:
    """The webhook deliverer connects to the address its SSRF check resolved and names the
    host for TLS (`sni_hostname`) and HTTP (`Host`): the certificate is checked against the
    registered name, not the address — and without the name, the address fails the check."""
    import ssl

    cert, key = self_signed("crm.example.com")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    hosts: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        hosts.extend(line for line in head.split(b"\r\n") if line.lower().startswith(b"host:"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=serving)
    port = server.sockets[0].getsockname()[1]

    def client() -> httpx.AsyncClient:  # one each: a pooled connection is not checked again
        return runtime.http_client(verify=trusting, timeout=5)

    try:
        async with client() as http:
            r = await http.post(
                f"https://127.0.0.1:{port}/hooks",
                content=b"{}",
                headers={"host": "crm.example.com"},
                extensions={"sni_hostname": "crm.example.com"},
            )
        assert r.status_code == 204
        assert [h.lower() for h in hosts] == [b"host: crm.example.com"]
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(f"https://127.0.0.1:{port}/hooks", content=b"{}")
    finally:
        server.close()
