"""Batch requests against the emulator: order, per-call failures, chunking, retries, 401."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calsync.google import batch, calls, errors
from calsync.google.calendar import CalendarClient
from calsync.google.models import Event
from calsync.google.retry import RetryPolicy
from calsync.settings import Settings
from tests.conftest import Emulator

from .conftest import ControlTokens, FakeTime, log_mark, log_since
from .test_calendar import google_id, meeting


async def test_1000_ops_return_1000_results_in_order_with_failures(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    taken = google_id()
    await client.insert_event(alice, meeting("already there", id=taken))
    ops: list[calls.ApiCall[Any]] = []
    expected: list[type | str] = []
    for i in range(1000):
        if i % 100 == 7:
            ops.append(calls.events_insert(alice, meeting(f"dup {i}", id=taken)))
            expected.append(errors.Duplicate)
        elif i % 100 == 42:
            ops.append(calls.events_get(alice, f"missing{i:05d}"))
            expected.append(errors.NotFound)
        else:
            ops.append(calls.events_insert(alice, meeting(f"op {i}", day=1 + i % 28)))
            expected.append(f"op {i}")
    mark = log_mark(emulator)
    results = await client.batch(ops, chunk_size=1000)
    assert len(results) == 1000
    for result, want in zip(results, expected, strict=True):
        if isinstance(want, str):
            assert isinstance(result, Event) and result.summary == want
        else:
            assert type(result) is want
    outer = [r for r in log_since(emulator, mark) if r["path"].startswith("/batch")]
    assert len(outer) == 1  # one HTTP request for all 1000
    listed = [e async for page in client.list_events(alice, max_results=2500) for e in page.items]
    assert len(listed) == 1 + 980


async def test_default_chunks_of_50(emulator: Emulator, client: CalendarClient, alice: str) -> None:
    assert client.batch_size == 50
    ops = [calls.events_insert(alice, meeting(f"e{i}")) for i in range(120)]
    mark = log_mark(emulator)
    results = await client.batch(ops)
    assert [r.summary for r in results] == [f"e{i}" for i in range(120)]
    outer = [r for r in log_since(emulator, mark) if r["path"].startswith("/batch")]
    assert len(outer) == 3


async def test_mixed_calls_and_empty_answers(client: CalendarClient, alice: str) -> None:
    created = await client.insert_event(alice, meeting("to delete"))
    assert created.id and created.etag
    results = await client.batch(
        [
            calls.events_get(alice, created.id),
            calls.events_patch(alice, created.id, {"summary": "x"}, if_match='"1"'),
            calls.events_delete(alice, created.id),
            calls.calendars_get(alice),
        ]
    )
    assert isinstance(results[0], Event) and results[0].etag == created.etag
    assert isinstance(results[1], errors.PreconditionFailed)
    assert results[2] is None
    assert results[3].id == alice


async def test_retryable_parts_are_resent_alone(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    retry = RetryPolicy(sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(2))
    ids = [google_id() for _ in range(5)]
    # the 3rd part is throttled twice; the emulator runs parts in order
    emulator.control(
        "POST",
        "/faults",
        {
            "path_regex": f"/events/{ids[2]}$",
            "status": 403,
            "reason": "rateLimitExceeded",
            "retry_after": 3,
            "count": 2,
        },
    )
    async with CalendarClient(
        ControlTokens(emulator, "alice@example.com"), settings=settings, retry=retry
    ) as client:
        await client.batch([calls.events_insert(alice, meeting(id=i)) for i in ids])
        mark = log_mark(emulator)
        results = await client.batch([calls.events_get(alice, i) for i in ids])
    assert [r.id for r in results] == ids
    assert fake_time.sleeps == [3, 3]
    inner = [r for r in log_since(emulator, mark) if "/events/" in r["path"]]
    assert len(inner) == 5 + 1 + 1


async def test_parts_give_up_when_the_budget_is_spent(
    emulator: Emulator, settings: Settings, fake_time: FakeTime, alice: str
) -> None:
    retry = RetryPolicy(
        max_attempts=3, sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(2)
    )
    emulator.control("POST", "/faults", {"path_regex": "/events/flaky", "status": 503})
    async with CalendarClient(
        ControlTokens(emulator, "alice@example.com"), settings=settings, retry=retry
    ) as client:
        results = await client.batch(
            [calls.calendars_get(alice), calls.events_get(alice, "flaky0000")]
        )
    assert results[0].id == alice
    assert isinstance(results[1], errors.BackendError)
    assert len(fake_time.sleeps) == 2


async def test_expired_token_refreshes_once_for_the_batch(
    emulator: Emulator, settings: Settings, retry: RetryPolicy, alice: str
) -> None:
    tokens = ControlTokens(emulator, "alice@example.com")
    async with CalendarClient(tokens, settings=settings, retry=retry) as client:
        await client.get_calendar(alice)
        emulator.control("POST", "/tokens/expire", {"email": "alice@example.com"})
        results = await client.batch([calls.calendars_get(alice) for _ in range(3)])
    assert [r.id for r in results] == [alice] * 3
    assert tokens.refresh_count == 2


def test_encode_and_decode_round_trip() -> None:
    ops: list[calls.ApiCall[Any]] = [
        calls.events_patch("a@b.c", "e1", {"summary": "Ø"}, if_match='"9"'),
        calls.events_delete("a#b@c", "e2"),
    ]
    body = batch.encode(ops, ["x+0", "x+1"], "/calendar/v3", "batch_b").decode()
    assert "PATCH /calendar/v3/calendars/a%40b.c/events/e1?sendUpdates=none HTTP/1.1" in body
    assert 'If-Match: "9"' in body and '{"summary":"Ø"}' in body
    assert "DELETE /calendar/v3/calendars/a%23b%40c/events/e2?sendUpdates=none" in body
    assert body.endswith("--batch_b--\r\n")
    answer = (
        b"--resp\r\nContent-Type: application/http\r\nContent-ID: <response-x+1>\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n\r\n"
        b"--resp\r\nContent-Type: application/http\r\nContent-ID: <response-x+0>\r\n\r\n"
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: "10"\r\n\r\n'
        b'{"id": "e1"}\r\n'
        b"--resp--\r\n"
    )
    parts = batch.decode("multipart/mixed; boundary=resp", answer)
    assert parts["x+0"][0] == 200 and parts["x+0"][1]["etag"] == '"10"'
    assert parts["x+0"][2].strip() == b'{"id": "e1"}'
    assert parts["x+1"][0] == 204


async def test_before_write_runs_before_every_request_that_changes_google(
    emulator: Emulator, client: CalendarClient, alice: str
) -> None:
    """The runner's lease check (jobs/execute.py) hangs on `before_write`: awaited before each
    write, single or batched, never before a read; raising from it sends nothing."""
    checks: list[str] = []

    async def check() -> None:
        checks.append("check")

    client.before_write = check
    created = await client.insert_event(alice, meeting("checked"))
    assert created.id is not None
    await client.get_event(alice, created.id)
    [page async for page in client.list_events(alice)]
    assert checks == ["check"]
    await client.batch([calls.events_get(alice, created.id)])
    assert checks == ["check"]
    await client.batch([calls.events_patch(alice, created.id, {"summary": "x"})])
    assert checks == ["check", "check"]

    class Stop(Exception):
        pass

    async def refuse() -> None:
        raise Stop

    client.before_write = refuse
    mark = log_mark(emulator)
    with pytest.raises(Stop):
        await client.delete_event(alice, created.id)
    with pytest.raises(Stop):
        await client.batch([calls.events_delete(alice, created.id)])
    assert log_since(emulator, mark) == []
    assert (await client.get_event(alice, created.id)).summary == "x"


_part_bodies = st.binary(max_size=60).map(lambda b: b.replace(b"--resp", b"-x-resp"))


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from(["<response-x+0>", "<response-x+1>", "", "<other>"]),
            st.integers(100, 599),
            st.sampled_from([b"", b'{"id": "e1"}', b"\r\na --resp inside a line\r\n"]),
            _part_bodies,
        ),
        min_size=1,
        max_size=4,
    ),
    preamble=st.sampled_from([b"", b"preamble\r\n"]),
    epilogue=st.sampled_from([b"", b"\r\n", b"epilogue\r\n"]),
    boundary_param=st.sampled_from(
        ["boundary=resp", 'boundary="resp"', "charset=x; boundary=resp"]
    ),
)
def test_decode_reads_what_the_email_parser_reads(
    parts: list[tuple[str, int, bytes, bytes]],
    preamble: bytes,
    epilogue: bytes,
    boundary_param: str,
) -> None:
    """The hand-written split gives what the stdlib `email` parser gives, for Google's shape
    with any payload (a "--resp" inside a line is not a delimiter)."""
    body = [preamble]
    for cid, status, json_body, extra in parts:
        body.append(b"--resp\r\nContent-Type: application/http\r\n")
        if cid:
            body.append(f"Content-ID: {cid}\r\n".encode())
        body.append(f'\r\nHTTP/1.1 {status} X\r\nETag: "1"\r\n\r\n'.encode() + json_body + extra)
        body.append(b"\r\n")
    body.append(b"--resp--\r\n" + epilogue)
    content = b"".join(body)
    content_type = f"multipart/mixed; {boundary_param}"
    assert batch._split(content_type, content) is not None
    assert batch.decode(content_type, content) == batch._decode_mime(content_type, content)


@pytest.mark.parametrize(
    "content",
    [
        b"--resp\nContent-Type: application/http\n\nHTTP/1.1 200 OK\n\n{}\n--resp--\n",  # LF only
        b"--resp\r\nContent-ID:\r\n <response-x+0>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n--resp--",
        b"--resp\r\nContent-Transfer-Encoding: base64\r\n\r\nSFRUUC8xLjEgMjAwIE9LDQoNCnt9\r\n--resp--",
        b"--resp\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n--resp",  # no close delimiter
        b"--resp\r\n\r\nHTTP/1.1 200 OK\r\n\r\n\r\n--resp is no delimiter\r\n--resp--\r\n",
    ],
)
def test_decode_leaves_other_shapes_to_the_email_parser(content: bytes) -> None:
    content_type = "multipart/mixed; boundary=resp"
    assert batch._split(content_type, content) is None
    try:
        expected = batch._decode_mime(content_type, content)
    except errors.BackendError:
        with pytest.raises(errors.BackendError):
            batch.decode(content_type, content)
    else:
        assert batch.decode(content_type, content) == expected
