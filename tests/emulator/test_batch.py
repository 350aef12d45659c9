"""Batch requests, raw and through google-api-python-client's BatchHttpRequest."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build, build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.conftest import Emulator

ADA = "ada@example.com"
HOOK = "http://127.0.0.1:9/hook"  # never answers; deliveries are not what these tests check


def _service(emulator: Emulator, token: str) -> Any:
    return build(
        "calendar",
        "v3",
        credentials=Credentials(token),
        static_discovery=True,
        client_options={"api_endpoint": f"{emulator.url}/calendar/v3/"},
    )


def _collector() -> tuple[dict[str, Any], Any]:
    results: dict[str, Any] = {}

    def callback(request_id: str, response: Any, exception: Exception | None) -> None:
        results[request_id] = exception if exception is not None else response

    return results, callback


def _raw_batch(emulator: Emulator, parts: list[str], token: str | None = None) -> Any:
    boundary = "b0undary"
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return emulator.http.post("/batch/calendar/v3", content=body.encode(), headers=headers)


def _split_response(resp: Any) -> list[tuple[dict[str, str], int, str]]:
    """(part headers, inner status, inner body) per part of a multipart/mixed answer."""
    ctype = resp.headers["content-type"]
    assert ctype.startswith("multipart/mixed; boundary=")
    boundary = ctype.split("boundary=", 1)[1].strip('"')
    text = resp.content.decode()
    assert text.rstrip().endswith(f"--{boundary}--")
    out = []
    for chunk in text.split(f"--{boundary}")[1:-1]:
        chunk = chunk.removeprefix("\r\n").removesuffix("\r\n")
        head, inner = chunk.split("\r\n\r\n", 1)
        part_headers = dict(line.split(": ", 1) for line in head.split("\r\n"))
        status_line, rest = inner.split("\r\n", 1)
        _, body = rest.split("\r\n\r\n", 1)
        out.append((part_headers, int(status_line.split(" ")[1]), body))
    return out


def test_google_client_batch_with_per_part_errors(emulator: Emulator) -> None:
    emulator.account(ADA)
    service = _service(emulator, emulator.token(ADA))
    results, callback = _collector()
    batch = BatchHttpRequest(callback=callback, batch_uri=f"{emulator.url}/batch/calendar/v3")
    body = {"type": "web_hook", "address": HOOK}
    batch.add(
        service.events().watch(calendarId="primary", body={**body, "id": "one"}), request_id="w1"
    )
    batch.add(
        service.events().watch(calendarId="primary", body={**body, "id": "two"}), request_id="w2"
    )
    batch.add(service.channels().stop(body={"id": "nope", "resourceId": "x"}), request_id="stop")
    batch.add(
        service.events().watch(calendarId="primary", body={**body, "id": "one"}), request_id="dup"
    )
    batch.execute()
    assert results["w1"]["id"] == "one" and results["w1"]["kind"] == "api#channel"
    assert results["w2"]["id"] == "two"
    stop = results["stop"]
    assert isinstance(stop, HttpError) and stop.resp.status == 404
    assert json.loads(stop.content)["error"]["errors"][0]["reason"] == "notFound"
    dup = results["dup"]
    assert isinstance(dup, HttpError) and dup.resp.status == 400
    assert dup.error_details[0]["reason"] == "channelIdNotUnique"
    # each part went through the app on its own: the log shows them with the caller
    log = emulator.control("GET", "/requests").json()["items"]
    inner = [r for r in log if r["path"].endswith("/watch") or r["path"].endswith("/stop")]
    assert len(inner) == 4
    assert {r["account"] for r in inner} == {ADA}


def test_new_batch_http_request_uses_discovery_batch_path(emulator: Emulator) -> None:
    """service.new_batch_http_request() posts to rootUrl + batchPath from the discovery doc."""
    emulator.account(ADA)
    doc = json.loads(get_static_doc("calendar", "v3"))
    assert doc["batchPath"] == "batch/calendar/v3"
    doc["rootUrl"] = f"{emulator.url}/"
    service = build_from_document(doc, credentials=Credentials(emulator.token(ADA)))
    results, callback = _collector()
    batch = service.new_batch_http_request(callback=callback)
    for i in range(3):
        body = {"id": f"c{i}", "type": "web_hook", "address": HOOK}
        batch.add(service.events().watch(calendarId="primary", body=body))
    batch.execute()
    assert sorted(r["id"] for r in results.values()) == ["c0", "c1", "c2"]
    paths = [r["path"] for r in emulator.control("GET", "/requests").json()["items"]]
    assert "/batch/calendar/v3" in paths


def test_raw_batch_echoes_content_ids_and_applies_outer_auth(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    watch = json.dumps({"id": "raw-1", "type": "web_hook", "address": HOOK})
    parts = [
        # CRLF, path only, Content-ID with brackets, auth inherited from the outer request
        "Content-Type: application/http\r\nContent-ID: <item1>\r\n\r\n"
        "POST /calendar/v3/calendars/primary/events/watch HTTP/1.1\r\n"
        f"Content-Type: application/json\r\n\r\n{watch}",
        # bare LF and a full URL, no Content-ID, its own (bad) Authorization wins
        "Content-Type: application/http\n\n"
        "POST https://www.googleapis.com/calendar/v3/channels/stop\n"
        "Authorization: Bearer not-a-token\nContent-Type: application/json\n\n"
        '{"id": "raw-1"}',
        "Content-Type: application/http\r\nContent-ID: item3\r\n\r\n"
        "POST /calendar/v3/channels/stop HTTP/1.1\r\n"
        'Content-Type: application/json\r\n\r\n{"id": "raw-1"}',
        # a part for another API is refused on its own
        "Content-Type: application/http\r\nContent-ID: <item4>\r\n\r\n"
        "GET /drive/v3/files HTTP/1.1\r\n\r\n",
    ]
    resp = _raw_batch(emulator, parts, token)
    assert resp.status_code == 200, resp.text
    out = _split_response(resp)
    assert [h.get("Content-ID") for h, _, _ in out] == [
        "<response-item1>",
        None,
        "response-item3",
        "<response-item4>",
    ]
    assert all(h["Content-Type"] == "application/http" for h, _, _ in out)
    assert [status for _, status, _ in out] == [200, 401, 204, 400]
    assert json.loads(out[0][2])["id"] == "raw-1"
    assert json.loads(out[1][2])["error"]["errors"][0]["reason"] == "authError"
    assert out[2][2] == ""
    assert "HTTP/1.1 204 No Content\r\n" in resp.text


def test_faults_hit_single_parts(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    emulator.control(
        "POST",
        "/faults",
        {"path_regex": "/channels/stop$", "status": 503, "count": 1, "retry_after": 3},
    )
    stop = (
        "Content-Type: application/http\r\nContent-ID: <s>\r\n\r\n"
        "POST /calendar/v3/channels/stop HTTP/1.1\r\n"
        'Content-Type: application/json\r\n\r\n{"id": "x"}'
    )
    out = _split_response(_raw_batch(emulator, [stop, stop], token))
    assert [status for _, status, _ in out] == [503, 404]
    assert json.loads(out[0][2])["error"]["errors"][0]["reason"] == "backendError"


def test_the_global_latency_is_the_batch_requests_once(emulator: Emulator) -> None:
    """It stands for a round trip to Google, and a batch is one: the batch request waits it,
    its parts do not wait it again (ten parts are not ten round trips). The request log's
    duration of each entry tells, not a clock in the test."""
    emulator.account(ADA)
    token = emulator.token(ADA)
    last = emulator.control("GET", "/requests?after=999999999").json()["last_seq"]
    emulator.control("POST", "/latency", {"ms": 300})
    stop = (
        "Content-Type: application/http\r\n\r\n"
        "POST /calendar/v3/channels/stop HTTP/1.1\r\n"
        'Content-Type: application/json\r\n\r\n{"id": "x"}'
    )
    out = _split_response(_raw_batch(emulator, [stop] * 10, token))
    emulator.control("POST", "/latency", {"ms": 0})
    assert [status for _, status, _ in out] == [404] * 10
    log = emulator.control("GET", f"/requests?after={last}").json()["items"]
    (envelope,) = [r for r in log if r["path"].startswith("/batch/")]
    parts = [r for r in log if r["path"].endswith("/channels/stop")]
    assert len(parts) == 10
    assert envelope["duration_ms"] >= 300
    assert all(r["duration_ms"] < 300 for r in parts), [r["duration_ms"] for r in parts]


def test_more_than_1000_parts_is_refused(emulator: Emulator) -> None:
    emulator.account(ADA)
    part = "Content-Type: application/http\r\n\r\nPOST /calendar/v3/channels/stop HTTP/1.1\r\n\r\n"
    resp = _raw_batch(emulator, [part] * 1001, emulator.token(ADA))
    assert resp.status_code == 400
    assert "1000" in resp.json()["error"]["message"]
    not_multipart = emulator.http.post(
        "/batch/calendar/v3", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert not_multipart.status_code == 400
    assert not_multipart.json()["error"]["code"] == 400


def test_batch_insert_of_100_events(emulator: Emulator) -> None:
    """The issue's acceptance case: 100 inserts in one batch, then one 404 part."""
    emulator.account(ADA)
    service = _service(emulator, emulator.token(ADA))
    results, callback = _collector()
    batch = BatchHttpRequest(callback=callback, batch_uri=f"{emulator.url}/batch/calendar/v3")
    for i in range(100):
        event = {
            "summary": f"Meeting {i}",
            "start": {"dateTime": f"2030-01-{1 + i % 28:02d}T10:00:00Z"},
            "end": {"dateTime": f"2030-01-{1 + i % 28:02d}T11:00:00Z"},
        }
        batch.add(service.events().insert(calendarId="primary", body=event), request_id=f"ins{i}")
    batch.add(
        service.events().get(calendarId="primary", eventId="nosuchevent"), request_id="missing"
    )
    batch.execute()
    inserted = [results[f"ins{i}"] for i in range(100)]
    errors = [r for r in inserted if isinstance(r, Exception)]
    assert not errors, errors[:3]
    assert [r["summary"] for r in inserted] == [f"Meeting {i}" for i in range(100)]
    assert len({r["id"] for r in inserted}) == 100
    missing = results["missing"]
    assert isinstance(missing, HttpError) and missing.resp.status == 404
    listed = service.events().list(calendarId="primary", maxResults=2500).execute()
    assert len(listed["items"]) == 100


@pytest.mark.parametrize("path", ["/batch", "/batch/calendar/v3"])
def test_both_batch_paths_answer(emulator: Emulator, path: str) -> None:
    emulator.account(ADA)
    part = (
        "Content-Type: application/http\r\nContent-ID: <p>\r\n\r\n"
        "POST /calendar/v3/channels/stop HTTP/1.1\r\n"
        'Content-Type: application/json\r\n\r\n{"id": "x"}'
    )
    body = f"--zz\r\n{part}\r\n--zz--\r\n".encode()
    resp = emulator.http.post(
        path,
        content=body,
        headers={
            "Content-Type": "multipart/mixed; boundary=zz",
            "Authorization": f"Bearer {emulator.token(ADA)}",
        },
    )
    assert resp.status_code == 200
    assert [status for _, status, _ in _split_response(resp)] == [404]
