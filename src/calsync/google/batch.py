"""Batch requests: many Calendar calls in one multipart/mixed HTTP request (/batch/calendar/v3).

The request is written by hand (it is a handful of CRLF-separated lines, see `encode`), and so
is the response split (`decode`: Google's CRLF-delimited parts, ≈ 10 µs instead of the stdlib
`email` parser's ≈ 0.8 ms for a batch of one); anything else in the response (LF-only lines,
folded headers, a transfer encoding) goes to the `email` parser, which understands every
multipart/mixed. Each part carries one embedded HTTP response (`parse_http_response`). Parts
are matched back to calls by Content-ID (`<response-ID>` answers `<ID>`), so their order on
the wire does not matter.

Per-part failures become exceptions in the result list. Parts failing with something retryable
are sent again in a smaller batch after a backoff (same `RetryPolicy` budget); parts answering
401 cause one token refresh and are resent. Failures of the batch request itself are raised.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
from collections.abc import Sequence
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from . import errors
from .calls import ApiCall

if TYPE_CHECKING:
    from .calendar import CalendarClient

MAX_BATCH = 1000  # Google's limit of calls per batch request
CRLF = "\r\n"


def encode(
    batch_calls: Sequence[ApiCall[Any]], content_ids: Sequence[str], path_prefix: str, boundary: str
) -> bytes:
    """The multipart/mixed body: one `application/http` part per call."""
    out: list[str] = []
    for call, cid in zip(batch_calls, content_ids, strict=True):
        target = path_prefix + call.path
        if call.params:
            target += "?" + str(httpx.QueryParams(call.params))
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: <{cid}>",
            "",
            f"{call.method} {target} HTTP/1.1",
        ]
        body = ""
        if call.body is not None:
            body = json.dumps(call.body, separators=(",", ":"), ensure_ascii=False)
            lines.append("Content-Type: application/json; charset=UTF-8")
        lines.extend(f"{k}: {v}" for k, v in call.headers.items())
        lines += ["", body]
        out.append(CRLF.join(lines))
    out.append(f"--{boundary}--{CRLF}")
    return CRLF.join(out).encode("utf-8")


def parse_http_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-cased) and body of one embedded `HTTP/1.1 200 OK ...` response."""
    raw = raw.lstrip(b"\r\n")
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            break
    else:
        head, body = raw, b""
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    parts = lines[0].decode("latin-1").split(" ", 2)  # HTTP/1.1 404 Not Found
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise errors.BackendError(detail=f"unreadable batch part: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, body


def decode(content_type: str, content: bytes) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Content-ID (without `<response-`/`>`) → embedded response, for every part."""
    parts = _split(content_type, content)
    if parts is None:
        return _decode_mime(content_type, content)
    out: dict[str, tuple[int, dict[str, str], bytes]] = {}
    for index, (cid, raw) in enumerate(parts):
        out[_content_id(cid) or f"#{index}"] = parse_http_response(raw)
    return out


_BOUNDARY = re.compile(r';\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_PLAIN_ENCODINGS = frozenset({"", "binary", "7bit", "8bit"})


def _split(content_type: str, content: bytes) -> list[tuple[str, bytes]] | None:
    """The parts of a multipart/mixed body as (Content-ID, payload), or None when it is not
    the plain shape Google sends (CRLF lines, unfolded headers, no transfer encoding)."""
    if not content_type.lower().startswith("multipart/"):
        return None
    found = _BOUNDARY.search(content_type)
    if found is None:
        return None
    delimiter = b"\r\n--" + (found.group(1) or found.group(2)).encode("latin-1")
    pieces = (b"\r\n" + content).split(delimiter)
    if len(pieces) < 2:
        return None
    out: list[tuple[str, bytes]] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return out  # the close delimiter; what follows is the epilogue
        padding, crlf, part = piece.partition(b"\r\n")
        if not crlf or padding.strip(b" \t"):
            return None  # a line that starts like the delimiter but is not one
        if part.startswith(b"\r\n"):
            head, body = b"", part[2:]
        else:
            head, sep, body = part.partition(b"\r\n\r\n")
            if not sep:
                return None
        cid = ""
        for line in head.decode("latin-1").split("\r\n") if head else ():
            name, colon, value = line.partition(":")
            if not colon or name[:1] in (" ", "\t") or "\n" in line or "\r" in line:
                return None  # folded or malformed: the email parser decides
            name = name.strip().lower()
            if name == "content-id":
                cid = cid or value.strip()  # the first, as the email parser's `get`
            elif name == "content-transfer-encoding":
                if value.strip().lower() not in _PLAIN_ENCODINGS:
                    return None
        out.append((cid, body))
    return None  # no close delimiter: truncated, let the email parser judge


def _content_id(value: str) -> str:
    cid = value.strip().strip("<>")
    if cid.startswith("response-"):
        cid = cid[len("response-") :]
    return cid


def _decode_mime(content_type: str, content: bytes) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """`decode` through the stdlib `email` parser: any multipart/mixed body."""
    envelope = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    msg = email.message_from_bytes(envelope + content, policy=email.policy.HTTP)
    if not msg.is_multipart():
        raise errors.BackendError(detail="batch response is not multipart/mixed")
    out: dict[str, tuple[int, dict[str, str], bytes]] = {}
    payload = msg.get_payload()
    assert isinstance(payload, list)
    for index, part in enumerate(payload):
        assert isinstance(part, Message)
        cid = _content_id(str(part.get("Content-ID", "")))
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            raw = str(part.get_payload()).encode("utf-8")
        out[cid or f"#{index}"] = parse_http_response(raw)
    return out


def _result(call: ApiCall[Any], status: int, headers: dict[str, str], body: bytes) -> Any:
    if status >= 400:
        return errors.from_response(status, headers, body)
    return call.parse(json.loads(body) if body.strip() else None)


async def _send_chunk(
    client: CalendarClient, batch_calls: Sequence[ApiCall[Any]]
) -> tuple[list[Any], str]:
    """One batch request with the client's retry policy; per-call results and the token used."""
    batch_id = uuid.uuid4().hex
    cids = [f"{batch_id}+{i}" for i in range(len(batch_calls))]
    boundary = f"batch_{batch_id}"
    body = encode(batch_calls, cids, urlsplit(client.api_root).path, boundary)
    used: list[str] = []

    def make(token: str) -> httpx.Request:
        used.append(token)
        return client.http.build_request(
            "POST",
            client.batch_url,
            content=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/mixed; boundary={boundary}",
            },
        )

    writes = any(call.method != "GET" for call in batch_calls)

    async def once() -> list[Any]:
        if writes and client.before_write is not None:
            await client.before_write()
        resp = await client.send_authorized(make, cost=len(batch_calls))
        if resp.status_code >= 400:
            raise errors.from_response(resp.status_code, resp.headers, resp.content)
        parts = decode(resp.headers.get("content-type", ""), resp.content)
        results: list[Any] = []
        for i, (call, cid) in enumerate(zip(batch_calls, cids, strict=True)):
            part = parts.get(cid) or parts.get(f"#{i}")
            if part is None:
                results.append(errors.BackendError(detail="Google left this call out of the batch"))
                continue
            try:
                results.append(_result(call, *part))
            except ValueError as exc:  # an answer that does not fit the model
                results.append(errors.BackendError(detail=f"unreadable answer: {exc}"))
        return results

    results = await client.retry.call(once)
    return results, used[-1]


async def _run_chunk(
    client: CalendarClient, batch_calls: Sequence[ApiCall[Any]], results: list[Any], offset: int
) -> None:
    policy = client.retry
    started = policy.clock()
    pending = list(range(len(batch_calls)))
    attempt = 1
    refreshed = False
    while pending:
        answers, token = await _send_chunk(client, [batch_calls[i] for i in pending])
        retry: list[int] = []
        expired: list[int] = []
        wait = 0.0
        for i, answer in zip(pending, answers, strict=True):
            results[offset + i] = answer
            if isinstance(answer, errors.TokenExpired) and not refreshed:
                expired.append(i)
            elif isinstance(answer, errors.GoogleError) and answer.retryable:
                retry.append(i)
                wait = max(wait, policy.backoff(attempt, answer))
        if retry:
            if policy.gives_up(attempt, started, wait):
                retry = []  # out of attempts or time: those parts keep their errors
            else:
                await policy.sleep(wait)
                attempt += 1
        if expired:
            refreshed = True  # at most one refresh per chunk, like a single call
            await client.auth.refresh(rejected=token)
        pending = sorted(retry + expired)


async def run_batch(
    client: CalendarClient, batch_calls: Sequence[ApiCall[Any]], *, chunk_size: int = 50
) -> list[Any]:
    """Results in the order of `batch_calls`: the parsed answer, or a `GoogleError` per call."""
    size = max(1, min(MAX_BATCH, chunk_size))
    results: list[Any] = [None] * len(batch_calls)
    for start in range(0, len(batch_calls), size):
        await _run_chunk(client, batch_calls[start : start + size], results, start)
    return results
