"""Service accounts with domain-wide delegation, against the emulator's JWT-bearer token endpoint."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from calsync.google import errors
from calsync.google.calendar import CalendarClient
from calsync.google.retry import RetryPolicy
from calsync.google.service_account import (
    SCOPE_CALENDAR,
    ServiceAccountKey,
    ServiceAccountTokens,
)
from calsync.settings import Settings
from tests.conftest import Emulator

from .conftest import log_mark, log_since

SA_EMAIL = "calsync-sync@crm-project.iam.gserviceaccount.com"


def make_service_account(emulator: Emulator, *, delegate: bool = True) -> dict[str, Any]:
    sa: dict[str, Any] = emulator.control(
        "POST", "/service-accounts", {"client_email": SA_EMAIL}
    ).json()
    if delegate:
        emulator.control(
            "POST",
            "/domains/example.com/delegations",
            {"client_id": sa["client_id"], "scopes": [SCOPE_CALENDAR]},
        )
    return sa


@pytest.fixture
def people(emulator: Emulator) -> None:
    emulator.account("alice@example.com", "Alice Example")
    emulator.account("bob@example.com", "Bob Example")


async def _calendars_as(
    key: ServiceAccountKey, user: str, settings: Settings, retry: RetryPolicy
) -> list[str]:
    tokens = ServiceAccountTokens(key, settings=settings, retry=retry)
    try:
        async with CalendarClient(tokens.for_user(user), settings=settings, retry=retry) as c:
            return [entry.id for entry in await c.calendars()]
    finally:
        await tokens.aclose()


async def test_json_key_impersonates_each_user(
    emulator: Emulator, people: None, settings: Settings, retry: RetryPolicy
) -> None:
    sa = make_service_account(emulator)
    key = ServiceAccountKey.from_json(json.dumps(sa["json_key"]))
    assert key.client_email == SA_EMAIL and key.client_id == sa["client_id"]
    assert "alice@example.com" in await _calendars_as(key, "alice@example.com", settings, retry)
    assert "bob@example.com" in await _calendars_as(key, "bob@example.com", settings, retry)


async def test_p12_key_with_default_password(
    emulator: Emulator, people: None, settings: Settings, retry: RetryPolicy
) -> None:
    sa = make_service_account(emulator)
    assert sa["p12_password"] == "notasecret"
    key = ServiceAccountKey.from_p12(base64.b64decode(sa["p12_base64"]), client_email=SA_EMAIL)
    assert key.source == "p12"
    assert "alice@example.com" in await _calendars_as(key, "alice@example.com", settings, retry)


def test_wrong_p12_password_fails_clearly(emulator: Emulator) -> None:
    sa = make_service_account(emulator, delegate=False)
    with pytest.raises(errors.ServiceAccountKeyError) as exc:
        ServiceAccountKey.from_p12(
            base64.b64decode(sa["p12_base64"]),
            client_email=SA_EMAIL,
            password="wrong",
            filename="calsync-key.p12",
        )
    err = exc.value
    assert err.code == "google.service_account_key"
    assert "calsync-key.p12" in err.message
    assert "password is wrong" in err.message and "notasecret" in err.message
    assert "Add key" in err.remedy


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x00\x01garbage", "not a P12 file"),
        (b'{"type": "service_account"}', "is a JSON key"),
        (b"-----BEGIN PRIVATE KEY-----\n", "PEM file"),
        (b"", "not a P12 file"),
    ],
)
def test_corrupt_p12_file_is_named(content: bytes, words: str) -> None:
    with pytest.raises(errors.ServiceAccountKeyError, match=words):
        ServiceAccountKey.from_p12(content, client_email=SA_EMAIL, filename="upload.p12")


def test_truncated_p12_is_reported(emulator: Emulator) -> None:
    sa = make_service_account(emulator, delegate=False)
    data = base64.b64decode(sa["p12_base64"])
    with pytest.raises(errors.ServiceAccountKeyError, match="damaged"):
        ServiceAccountKey.from_p12(data[: len(data) // 2], client_email=SA_EMAIL)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "is not a JSON file"),
        ('{"web": {"client_id": "x"}}', "OAuth client file"),
        ('{"type": "authorized_user"}', "not a service-account key"),
        ('{"type": "service_account", "client_email": "a@b"}', "missing private_key"),
        (
            '{"type": "service_account", "client_email": "a@b", "private_key": "junk"}',
            "cannot be read",
        ),
    ],
)
def test_bad_json_key_is_named(content: str, words: str) -> None:
    with pytest.raises(errors.ServiceAccountKeyError, match=words):
        ServiceAccountKey.from_json(content, filename="key.json")


async def test_client_id_not_authorised_for_delegation(
    emulator: Emulator, people: None, settings: Settings, retry: RetryPolicy
) -> None:
    sa = make_service_account(emulator, delegate=False)
    tokens = ServiceAccountTokens(ServiceAccountKey.from_json(sa["json_key"]), settings=settings)
    with pytest.raises(errors.UnauthorizedClient) as exc:
        await tokens.check("alice@example.com")
    await tokens.aclose()
    err = exc.value
    assert err.code == "google.unauthorized_client"
    assert err.message == (
        "The client ID is not authorised for domain-wide delegation in the Google Admin console "
        "(Security → API controls → Domain-wide delegation)."
    )
    assert "https://www.googleapis.com/auth/calendar" in err.remedy
    assert err.reason == "unauthorized_client"


async def test_delegation_with_too_narrow_scope_is_unauthorised(
    emulator: Emulator, people: None, settings: Settings
) -> None:
    sa = make_service_account(emulator, delegate=False)
    emulator.control(
        "POST",
        "/domains/example.com/delegations",
        {"client_id": sa["client_id"], "scopes": [SCOPE_CALENDAR + ".readonly"]},
    )
    tokens = ServiceAccountTokens(ServiceAccountKey.from_json(sa["json_key"]), settings=settings)
    with pytest.raises(errors.UnauthorizedClient):
        await tokens.check("alice@example.com")
    await tokens.aclose()


async def test_unknown_user_in_domain(emulator: Emulator, people: None, settings: Settings) -> None:
    sa = make_service_account(emulator)
    tokens = ServiceAccountTokens(ServiceAccountKey.from_json(sa["json_key"]), settings=settings)
    with pytest.raises(errors.DelegatedUserNotFound) as exc:
        await tokens.check("carol.crm@example.com")
    await tokens.aclose()
    assert exc.value.message == (
        "No such user in the Workspace domain — the CRM e-mail must equal the Google e-mail."
    )
    assert exc.value.code == "google.delegation_unknown_user"


async def test_deleted_service_account_key(
    emulator: Emulator, people: None, settings: Settings
) -> None:
    sa = make_service_account(emulator)
    old = ServiceAccountKey.from_json(sa["json_key"])
    make_service_account(emulator)  # a new key: the old one stays valid until it is deleted
    emulator.delete_service_account_key(SA_EMAIL, sa["private_key_id"])
    tokens = ServiceAccountTokens(old, settings=settings)
    with pytest.raises(errors.ServiceAccountKeyError, match="deleted"):
        await tokens.check("alice@example.com")
    await tokens.aclose()


async def test_tokens_are_cached_per_user_until_near_expiry(
    emulator: Emulator, people: None, settings: Settings
) -> None:
    sa = make_service_account(emulator)
    tokens = ServiceAccountTokens(ServiceAccountKey.from_json(sa["json_key"]), settings=settings)
    mark = log_mark(emulator)
    alice = tokens.for_user("alice@example.com")
    assert tokens.for_user("ALICE@example.com") is alice
    first = await alice.access_token()
    assert await alice.access_token() == first
    await tokens.for_user("bob@example.com").access_token()
    posts = [r for r in log_since(emulator, mark) if r["path"] == "/token"]
    assert len(posts) == 2
    # within the leeway before expiry a new token is fetched
    assert alice.token is not None and alice.token.expires_at is not None
    alice.token.expires_at = alice._clock() + 30
    assert await alice.access_token() != first
    await tokens.aclose()
