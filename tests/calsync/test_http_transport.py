"""calsync's HTTP clients send through aiohttp (`runtime.Transport`, a third of httpx's own
transport's CPU a request) and must behave as httpx's own transport did: the same requests on
the wire, the same responses, and for each way a server or the network can fail, the same
httpx error — the class a sync's failure and a webhook delivery's error are reported by
(`google.errors.NetworkError`'s detail names it) and the retry decides on."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest

from calsync import runtime
from calsync.google import errors
from calsync.google.calendar import send

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TRANSPORTS = ["httpx", "calsync"]


def transport(kind: str) -> httpx.AsyncBaseTransport:
    if kind == "httpx":
        return httpx.AsyncHTTPTransport(verify=runtime.tls_context())
    return runtime.Transport(verify=runtime.tls_context())


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length) if length else b""


class Server:
    """A local TCP server answering with `handler`; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture(params=TRANSPORTS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=transport(request.param), timeout=httpx.Timeout(5.0, read=0.5)
    ) as http:
        yield http


async def test_a_process_client_sends_through_aiohttp() -> None:
    async with runtime.http_client(timeout=5) as http:
        assert isinstance(http._transport, runtime.Transport)
    given = httpx.MockTransport(lambda _: httpx.Response(204))
    async with runtime.http_client(transport=given) as http:
        assert http._transport is given


async def test_requests_and_answers_as_httpx_sends_them() -> None:
    """A POST's body and headers arrive as sent, a gzip answer is decoded, its headers read,
    and the next requests reuse the one kept-alive connection — through both transports."""
    seen: dict[str, list[tuple[bytes, bytes]]] = {}

    def handler_for(kind: str) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head, body = await read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                seen.setdefault(kind, []).append((head, body))
                answer = gzip.compress(json.dumps({"echo": body.decode()}).encode())
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Encoding: gzip\r\nX-Trace: a, b\r\n"
                    + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()

        return handler

    for kind in TRANSPORTS:
        async with Server(handler_for(kind)) as server:
            async with httpx.AsyncClient(transport=transport(kind), timeout=5) as http:
                for i in range(3):
                    r = await http.post(
                        f"{server.url}/calendar/v3/x?q=ä {i}",
                        json={"n": i},
                        headers={"Authorization": "Bearer t", "X-Goog-Api-Client": "calsync"},
                    )
                    assert r.status_code == 200
                    assert r.json() == {"echo": json.dumps({"n": i}, separators=(",", ":"))}
                    assert r.headers["x-trace"] == "a, b"
                    assert r.headers["content-type"] == "application/json"
            assert server.connections == 1, kind
    for (h1, b1), (h2, b2) in zip(seen["httpx"], seen["calsync"], strict=True):
        assert b1 == b2

        def fields(head: bytes) -> dict[bytes, bytes]:
            lines = head.split(b"\r\n")
            pairs = (line.split(b":", 1) for line in lines[1:] if b":" in line)
            return {k.strip().lower(): v.strip() for k, v in pairs}

        assert h1.split(b"\r\n")[0] == h2.split(b"\r\n")[0]  # method, path and query
        want = (b"authorization", b"x-goog-api-client", b"content-type", b"content-length")
        for name in want:
            assert fields(h1)[name] == fields(h2)[name], name


async def test_a_refused_connection_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/")


async def test_a_server_that_hangs_up_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Server(hang_up) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_a_body_cut_short_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"items": [')
        await writer.drain()

    async with Server(cut) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_an_answer_that_is_not_http_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with Server(garbage) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)


async def test_a_silent_server_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(3)

    async with Server(silent) as server:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url)


async def test_a_body_that_stalls_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(3)

    async with Server(stall) as server:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.NetworkError),
        (aiohttp.InvalidURL("x"), httpx.UnsupportedProtocol),
    ],
)
def test_each_aiohttp_error_is_httpx_s_for_the_same_failure(
    raised: BaseException, expected: type[httpx.TransportError]
) -> None:
    """Raised bare or as httpx-aiohttp's own mapping (which calls a hang-up a ConnectTimeout)."""
    for wrapped in (False, True):
        with pytest.raises(httpx.TransportError) as got:
            with runtime.errors():
                if not wrapped:
                    raise raised
                try:
                    raise raised
                except BaseException as exc:
                    raise httpx.ConnectTimeout(str(exc)) from exc
        assert type(got.value) is expected
        assert got.value.__cause__ is raised


async def test_a_google_call_that_meets_a_hang_up_says_so() -> None:
    """What a sync's failure shows: the network error, retryable, named as it happened."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Server(hang_up) as server, runtime.http_client(timeout=5) as http:
        with pytest.raises(errors.NetworkError) as got:
            await send(http, http.build_request("GET", f"{server.url}/calendar/v3/users/me"))
    assert got.value.retryable
    assert "RemoteProtocolError" in str(got.value.detail)


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


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_pinned_address_is_verified_by_the_name_it_was_registered_with(
    kind: str, tmp_path: Any
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
        chosen = (
            httpx.AsyncHTTPTransport(verify=trusting)
            if kind == "httpx"
            else runtime.Transport(verify=trusting)
        )
        return httpx.AsyncClient(transport=chosen, timeout=5)

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
