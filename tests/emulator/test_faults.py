"""Fault injection, latency, quotas and the request log, seen by a client over HTTP."""

from __future__ import annotations

import time

import httpx

from tests.conftest import Emulator

ADA = "ada@example.com"
STOP = "/calendar/v3/channels/stop"


def _stop(emulator: Emulator, token: str) -> httpx.Response:
    """A cheap authenticated Calendar call: stopping an unknown channel answers 404."""
    return emulator.http.post(STOP, json={"id": "x"}, headers={"Authorization": f"Bearer {token}"})


def test_injected_503_with_retry_after_and_count(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    fault = emulator.control(
        "POST", "/faults", {"status": 503, "count": 2, "retry_after": 7, "path_regex": "channels"}
    ).json()
    assert fault["count"] == 2
    first = _stop(emulator, token)
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "7"
    assert first.json() == {
        "error": {
            "errors": [
                {
                    "domain": "global",
                    "reason": "backendError",
                    "message": "The service is currently unavailable.",
                }
            ],
            "code": 503,
            "message": "The service is currently unavailable.",
        }
    }
    assert emulator.control("GET", "/faults").json()["items"][0]["count"] == 1
    assert _stop(emulator, token).status_code == 503
    assert emulator.control("GET", "/faults").json()["items"] == []  # spent faults go away
    assert _stop(emulator, token).status_code == 404


def test_reason_shapes_the_body(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    emulator.control("POST", "/faults", {"status": 403, "reason": "rateLimitExceeded", "count": 1})
    resp = _stop(emulator, token)
    assert resp.status_code == 403
    error = resp.json()["error"]["errors"][0]
    assert (error["domain"], error["reason"]) == ("usageLimits", "rateLimitExceeded")


def test_method_and_path_regex_must_both_match(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    emulator.control(
        "POST", "/faults", {"status": 500, "method": "GET", "path_regex": "^/calendar/"}
    )
    assert _stop(emulator, token).status_code == 404  # POST: not matched
    got = emulator.http.get(
        "/calendar/v3/users/me/calendarList", headers={"Authorization": f"Bearer {token}"}
    )
    assert got.status_code == 500
    assert got.json()["error"]["errors"][0]["reason"] == "backendError"
    # the control API is never faulted
    assert emulator.http.get("/emulator/v1/faults").status_code == 200
    emulator.control("DELETE", "/faults")
    assert emulator.control("GET", "/faults").json()["items"] == []


def test_rate_is_a_probability(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    emulator.control("POST", "/faults", {"status": 500, "rate": 0.0})
    assert all(_stop(emulator, token).status_code == 404 for _ in range(20))
    emulator.control("DELETE", "/faults")
    emulator.control("POST", "/faults", {"status": 500, "rate": 0.5})
    statuses = [_stop(emulator, token).status_code for _ in range(200)]
    assert 50 < statuses.count(500) < 150
    assert set(statuses) == {404, 500}


def test_faults_on_the_token_endpoint_use_oauth_bodies(emulator: Emulator) -> None:
    emulator.control(
        "POST", "/faults", {"path_regex": "^/token$", "status": 400, "reason": "invalid_grant"}
    )
    resp = emulator.http.post("/token", data={"grant_type": "refresh_token", "refresh_token": "r"})
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    emulator.control("DELETE", "/faults")
    emulator.control("POST", "/faults", {"path_regex": "^/token$", "status": 503})
    assert emulator.http.post("/token", data={}).json()["error"] == "internal_failure"


def test_latency_global_and_per_fault(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    emulator.control("POST", "/latency", {"ms": 150})
    t0 = time.perf_counter()
    assert _stop(emulator, token).status_code == 404
    assert time.perf_counter() - t0 >= 0.15
    # control calls are neither slowed down nor logged
    emulator.control("GET", "/faults")
    logged = emulator.control("GET", "/requests").json()["items"]
    assert not any(r["path"].startswith("/emulator/") for r in logged)
    emulator.control("POST", "/latency", {"ms": 0})
    # a fault with a non-error status only delays
    emulator.control("POST", "/faults", {"status": 200, "latency_ms": 200, "count": 1})
    t0 = time.perf_counter()
    assert _stop(emulator, token).status_code == 404
    assert time.perf_counter() - t0 >= 0.2
    # an error fault may be slow too
    emulator.control("POST", "/faults", {"status": 500, "latency_ms": 100, "count": 1})
    t0 = time.perf_counter()
    assert _stop(emulator, token).status_code == 500
    assert time.perf_counter() - t0 >= 0.1


def test_quotas_answer_rate_limit_errors(emulator: Emulator) -> None:
    emulator.account(ADA)
    emulator.account("bob@example.com")
    ada = emulator.token(ADA)
    bob = emulator.token("bob@example.com")
    emulator.control("POST", "/quotas", {"per_user_per_minute": 3, "per_project_per_minute": 5})
    assert [_stop(emulator, ada).status_code for _ in range(3)] == [404, 404, 404]
    limited = _stop(emulator, ada)
    assert limited.status_code == 403
    error = limited.json()["error"]["errors"][0]
    assert (error["domain"], error["reason"]) == ("usageLimits", "userRateLimitExceeded")
    # bob has his own user budget but shares the project's
    assert [_stop(emulator, bob).status_code for _ in range(2)] == [404, 404]
    project = _stop(emulator, bob)
    assert project.status_code == 403
    assert project.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    # the windows slide with the emulator clock
    emulator.control("POST", "/clock", {"advance_seconds": 61})
    assert _stop(emulator, ada).status_code == 404
    emulator.control("POST", "/quotas", {"enabled": False})
    assert all(_stop(emulator, ada).status_code == 404 for _ in range(10))


def test_request_log_records_google_calls_with_account(emulator: Emulator) -> None:
    emulator.account(ADA)
    token = emulator.token(ADA)
    start = emulator.control("GET", "/requests").json()["last_seq"]
    _stop(emulator, token)
    emulator.http.get("/calendar/v3/users/me/calendarList?maxResults=5")  # anonymous
    log = emulator.control("GET", f"/requests?after={start}").json()
    items = log["items"]
    assert [(r["method"], r["path"], r["status"], r["account"]) for r in items] == [
        ("POST", STOP, 404, ADA),
        ("GET", "/calendar/v3/users/me/calendarList", items[1]["status"], None),
    ]
    assert items[1]["query"] == "maxResults=5"
    assert items[0]["seq"] < items[1]["seq"] == log["last_seq"]
    assert all(r["duration_ms"] >= 0 and r["at"] > 0 for r in items)
    later = emulator.control("GET", f"/requests?after={items[0]['seq']}").json()["items"]
    assert [r["seq"] for r in later] == [items[1]["seq"]]
    # faulted requests are logged too, with who made them
    emulator.control("POST", "/faults", {"status": 500, "count": 1})
    _stop(emulator, token)
    last = emulator.control("GET", "/requests").json()["items"][-1]
    assert (last["status"], last["account"]) == (500, ADA)
