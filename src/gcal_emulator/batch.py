"""Batch requests: `POST /batch/calendar/v3`, multipart/mixed in, multipart/mixed out.

Each part is dispatched through the whole app again, so auth, scopes, quotas, the request log and
fault injection apply to every part as if it had been sent on its own (Google counts a batch of
n as n requests, too). Parts run one after another in the order given. The global latency is
the batch request's, once: a round trip to Google, not one per part.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from . import errors
from .errors import GoogleError

MAX_PARTS = 1000
# outer headers a part inherits unless it sets them itself (Google: all but Content-*)
NOT_INHERITED = {"host", "connection", "transfer-encoding", "expect", "accept-encoding", "te"}
# inner response headers that make no sense inside a batch part
NOT_ECHOED = {"content-length", "transfer-encoding", "connection", "date", "server"}


@dataclass
class Part:
    content_id: str | None
    method: str
    target: str  # path with query, or a full URL
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class PartResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _parse_error(detail: str) -> GoogleError:
    return GoogleError(400, "badRequest", f"Failed to parse batch request, error: {detail}")


def boundary_of(content_type: str) -> str:
    main, _, params = content_type.partition(";")
    if main.strip().lower() != "multipart/mixed":
        raise _parse_error("the body must be multipart/mixed")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip():
            return value.strip().strip('"')
    raise _parse_error("the multipart/mixed content type has no boundary")


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    """Header lines and the rest, split at the first empty line (CRLF or bare LF)."""
    positions = [(data.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n")]
    found = [(i, sep) for i, sep in positions if i >= 0]
    if data.startswith((b"\r\n", b"\n")):
        head, rest = b"", data[2:] if data.startswith(b"\r\n") else data[1:]
    elif found:
        i, sep = min(found)
        head, rest = data[:i], data[i + len(sep) :]
    else:
        head, rest = data, b""
    lines = [line.rstrip("\r") for line in head.decode("utf-8", "replace").split("\n")]
    return [line for line in lines if line], rest


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and out:  # folded continuation
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if sep:
            out.append((name.strip(), value.strip()))
    return out


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def split_parts(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise _parse_error("no part starts with the boundary")
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # close delimiter
        newline = chunk.find(b"\n")
        chunk = chunk[newline + 1 :] if newline >= 0 else b""
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        parts.append(chunk)
    return parts


def parse_part(raw: bytes) -> Part:
    part_lines, inner = _split_head(raw)
    part_headers = _headers(part_lines)
    content_id = _header(part_headers, "content-id")
    inner = inner.lstrip(b"\r\n")
    line_end = inner.find(b"\n")
    request_line = (inner if line_end < 0 else inner[:line_end]).decode("utf-8", "replace")
    words = request_line.strip().split()
    if len(words) < 2:
        raise _parse_error(f"a part has no request line: {request_line[:100]!r}")
    rest = b"" if line_end < 0 else inner[line_end + 1 :]
    lines: list[str]
    if rest.startswith((b"\r\n", b"\n")):
        lines, body = [], rest.lstrip(b"\r\n")
    else:
        lines, body = _split_head(rest)
    return Part(
        content_id=content_id,
        method=words[0].upper(),
        target=words[1],
        headers=_headers(lines),
        body=body,
    )


def response_content_id(content_id: str) -> str:
    """Google answers part `<x>` with `<response-x>`."""
    if content_id.startswith("<") and content_id.endswith(">"):
        return f"<response-{content_id[1:-1]}>"
    return f"response-{content_id}"


async def call_app(app: ASGIApp, outer: Request, part: Part) -> PartResponse:
    """Run one inner request through the ASGI app and collect its response."""
    target = urlsplit(part.target)
    path = target.path or "/"
    headers = list(part.headers)
    present = {name.lower() for name, _ in headers}
    for name, value in outer.headers.items():
        lname = name.lower()
        if lname in present or lname in NOT_INHERITED or lname.startswith("content-"):
            continue
        headers.append((name, value))
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    headers.append(("content-length", str(len(part.body))))
    if "host" not in present:
        headers.append(("host", outer.headers.get("host", "localhost")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": part.method,
        "scheme": outer.url.scheme,
        "server": outer.scope.get("server"),
        "client": outer.scope.get("client"),
        "root_path": "",
        "path": unquote(path),
        "raw_path": path.encode("latin-1", "replace"),
        "query_string": target.query.encode("latin-1", "replace"),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        # a part of a batch: the global latency was the batch request's (middleware.py)
        "state": {"batch_part": True},
        "extensions": {},
    }
    done = asyncio.Event()
    sent_body = False

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": part.body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    status: int | None = None
    out_headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            out_headers.extend(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception:
        if status is None:
            err = errors.backend_error()
            return PartResponse(
                500,
                [("Content-Type", "application/json; charset=UTF-8")],
                json.dumps(err.body()).encode(),
            )
    finally:
        done.set()
    return PartResponse(status or 500, out_headers, b"".join(chunks))


def _bad_part(error: GoogleError) -> PartResponse:
    return PartResponse(
        error.code,
        [("Content-Type", "application/json; charset=UTF-8")],
        json.dumps(error.body()).encode(),
    )


def render(parts: list[Part], responses: list[PartResponse], boundary: str) -> bytes:
    out: list[bytes] = []
    for part, resp in zip(parts, responses, strict=True):
        out.append(f"--{boundary}\r\nContent-Type: application/http\r\n".encode())
        if part.content_id:
            out.append(f"Content-ID: {response_content_id(part.content_id)}\r\n".encode())
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = "Unknown"
        out.append(f"\r\nHTTP/1.1 {resp.status} {reason}\r\n".encode())
        for name, value in resp.headers:
            if name.lower() not in NOT_ECHOED:
                out.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        out.append(f"Content-Length: {len(resp.body)}\r\n\r\n".encode())
        out.append(resp.body)
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def _allowed(batch_path: str, path: str) -> bool:
    if path.startswith(("/batch", "/emulator/")):
        return False
    if batch_path.rstrip("/") == "/batch":
        return True
    api_root = batch_path[len("/batch") :].rstrip("/") + "/"  # /calendar/v3/
    return path.startswith(api_root)


async def batch(request: Request) -> Response:
    boundary = boundary_of(request.headers.get("content-type", ""))
    raw_parts = split_parts(await request.body(), boundary)
    if not raw_parts:
        raise _parse_error("the batch has no parts")
    if len(raw_parts) > MAX_PARTS:
        raise GoogleError(
            400,
            "badRequest",
            f"A batch request cannot contain more than {MAX_PARTS} calls "
            f"(this one has {len(raw_parts)}).",
        )
    parts = [parse_part(raw) for raw in raw_parts]
    responses: list[PartResponse] = []
    for part in parts:
        path = urlsplit(part.target).path
        if not _allowed(request.url.path, path):
            responses.append(
                _bad_part(
                    errors.bad_request(
                        f"Every call in a batch must go to the batch's API: {part.target}"
                    )
                )
            )
            continue
        responses.append(await call_app(request.app, request, part))
    out_boundary = "batch_" + secrets.token_urlsafe(18)
    return Response(
        render(parts, responses, out_boundary),
        media_type=f"multipart/mixed; boundary={out_boundary}",
    )


routes = [
    Route("/batch/calendar/v3", batch, methods=["POST"]),
    Route("/batch", batch, methods=["POST"]),
]
