"""Every failure kind the emulator can produce reaches the right exception, code and remedy."""

from __future__ import annotations

import datetime as dt

import pytest

from calsync.google import errors
from calsync.google.calendar import CalendarClient
from calsync.google.retry import NO_RETRY
from calsync.settings import Settings
from tests.conftest import Emulator

from .conftest import ControlTokens

# (status, reason) injected on calendars.get → class, stable code, retryable
MATRIX: list[tuple[int, str | None, type[errors.GoogleError], str, bool]] = [
    (400, "invalid", errors.BadRequest, "google.bad_request", False),
    (400, "badRequest", errors.BadRequest, "google.bad_request", False),
    (401, "authError", errors.TokenExpired, "google.token_expired", False),
    (403, "userRateLimitExceeded", errors.RateLimited, "google.rate_limited", True),
    (403, "rateLimitExceeded", errors.RateLimited, "google.rate_limited", True),
    (429, "rateLimitExceeded", errors.RateLimited, "google.rate_limited", True),
    (403, "quotaExceeded", errors.QuotaExceeded, "google.quota_exceeded", False),
    (403, "dailyLimitExceeded", errors.QuotaExceeded, "google.quota_exceeded", False),
    (
        403,
        "insufficientPermissions",
        errors.InsufficientScope,
        "google.insufficient_scope",
        False,
    ),
    (
        403,
        "forbiddenForNonOrganizer",
        errors.ForbiddenForNonOrganizer,
        "google.forbidden_for_non_organizer",
        False,
    ),
    (403, "requiredAccessLevel", errors.Forbidden, "google.forbidden", False),
    (403, "forbidden", errors.Forbidden, "google.forbidden", False),
    (404, "notFound", errors.NotFound, "google.not_found", False),
    (409, "duplicate", errors.Duplicate, "google.duplicate", False),
    (410, "fullSyncRequired", errors.SyncTokenExpired, "google.sync_token_expired", False),
    (410, "updatedMinTooLongAgo", errors.SyncTokenExpired, "google.sync_token_expired", False),
    (410, "deleted", errors.Deleted, "google.deleted", False),
    (412, "conditionNotMet", errors.PreconditionFailed, "google.precondition_failed", False),
    (500, "backendError", errors.BackendError, "google.backend_error", True),
    (503, None, errors.BackendError, "google.backend_error", True),
]


@pytest.mark.parametrize(("status", "reason", "cls", "code", "retryable"), MATRIX)
async def test_injected_fault_maps_to_its_class(
    emulator: Emulator,
    settings: Settings,
    alice: str,
    status: int,
    reason: str | None,
    cls: type[errors.GoogleError],
    code: str,
    retryable: bool,
) -> None:
    fault: dict[str, object] = {"path_regex": "^/calendar/v3/calendars/", "status": status}
    if reason:
        fault["reason"] = reason
    emulator.control("POST", "/faults", fault)
    async with CalendarClient(
        ControlTokens(emulator, "alice@example.com"), settings=settings, retry=NO_RETRY
    ) as client:
        with pytest.raises(errors.GoogleError) as exc:
            await client.get_calendar(alice)
    err = exc.value
    assert type(err) is cls
    assert err.code == code
    assert err.retryable is retryable
    assert err.status == status
    assert err.reason == (reason or "backendError")
    assert err.message and err.remedy and err.detail
    assert code in str(err)
    assert err.as_dict()["remedy"] == err.remedy


async def test_timeout_is_a_network_error(emulator: Emulator, alice: str) -> None:
    emulator.control(
        "POST", "/faults", {"path_regex": "calendarList", "status": 200, "latency_ms": 400}
    )
    quick = Settings(google_emulator_url=emulator.url, google_timeout_seconds=0.1)
    async with CalendarClient(
        ControlTokens(emulator, "alice@example.com"), settings=quick, retry=NO_RETRY
    ) as client:
        with pytest.raises(errors.NetworkError) as exc:
            await client.calendars()
    assert exc.value.retryable and exc.value.code == "google.network_error"
    assert "Timeout" in (exc.value.detail or "")


async def test_connection_refused_is_a_network_error() -> None:
    nowhere = Settings(google_emulator_url="http://127.0.0.1:9", google_timeout_seconds=1)
    from calsync.google.auth import StaticToken

    async with CalendarClient(StaticToken("t"), settings=nowhere, retry=NO_RETRY) as client:
        with pytest.raises(errors.NetworkError):
            await client.get_calendar("primary")


def test_every_class_has_a_distinct_code_and_a_remedy() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.GoogleError)
    ]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for c in classes:
        assert c.code.startswith("google.")
        assert c.default_message.endswith((".", ")"))
        assert len(c.remedy) > 20


def test_retry_after_header_forms() -> None:
    now = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert errors.parse_retry_after("7") == 7
    assert errors.parse_retry_after("Tue, 01 Jan 2030 12:00:30 GMT", now) == 30
    assert errors.parse_retry_after("Tue, 01 Jan 2030 11:00:00 GMT", now) == 0
    assert errors.parse_retry_after("soon") is None
    assert errors.parse_retry_after(None) is None


def test_non_json_error_bodies_still_classify() -> None:
    err = errors.from_response(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(err, errors.BackendError) and err.reason is None
    assert "Bad Gateway" in (err.detail or "")
    assert isinstance(errors.from_response(418, {}, b""), errors.GoogleError)


@pytest.mark.parametrize(
    ("error", "service_account", "cls"),
    [
        ("invalid_grant", False, errors.GrantRevoked),
        ("unauthorized_client", False, errors.GrantRevoked),
        ("invalid_client", False, errors.InvalidClient),
        ("unauthorized_client", True, errors.UnauthorizedClient),
        ("invalid_client", True, errors.ServiceAccountKeyError),
        ("invalid_scope", False, errors.InsufficientScope),
        ("server_error", False, errors.BackendError),
        ("access_denied", False, errors.AuthorizationFailed),
    ],
)
def test_oauth_error_classes(
    error: str, service_account: bool, cls: type[errors.GoogleError]
) -> None:
    err = errors.from_oauth_error(error, "x", status=400, service_account=service_account)
    assert type(err) is cls and err.reason == error


async def test_googles_per_user_quota_is_rate_limited(
    emulator: Emulator, settings: Settings, alice: str
) -> None:
    emulator.control("POST", "/quotas", {"enabled": True, "per_user_per_minute": 3})
    async with CalendarClient(
        ControlTokens(emulator, "alice@example.com"), settings=settings, retry=NO_RETRY
    ) as client:
        for _ in range(3):
            await client.get_calendar(alice)
        with pytest.raises(errors.RateLimited) as exc:
            await client.get_calendar(alice)
    assert exc.value.reason == "userRateLimitExceeded" and exc.value.status == 403
    assert exc.value.retryable
