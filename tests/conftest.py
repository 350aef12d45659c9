"""Shared fixtures: a real emulator over HTTP for every test that needs Google."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.types import ASGIApp

from gcal_emulator.server import EmulatorServer
from tests.emulator.response_check import ResponseChecker

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


class Emulator:
    """A running emulator plus a synchronous client for its control API."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.url = server.url
        self.world = server.world
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def control(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        resp = self.http.request(method, f"/emulator/v1{path}", json=json)
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp

    def account(self, email: str, name: str | None = None) -> str:
        """Create a Google account and return its primary calendar id."""
        body: dict[str, str] = {"email": email}
        if name:
            body["name"] = name
        return str(self.control("POST", "/accounts", body).json()["primary_calendar_id"])

    def token(self, email: str, scopes: list[str] | None = None) -> str:
        body = {"scopes": scopes} if scopes else {}
        return str(self.control("POST", f"/accounts/{email}/tokens", body).json()["access_token"])

    def delete_service_account_key(self, client_email: str, key_id: str) -> None:
        """IAM's keys.delete, as the service account itself (a cloud-platform token)."""
        token = self.token(client_email, [CLOUD_PLATFORM])
        resp = self.http.delete(
            f"/v1/projects/-/serviceAccounts/{client_email}/keys/{key_id}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 200, resp.text


_checkers: list[ResponseChecker] = []


def _checked(app: ASGIApp) -> ASGIApp:
    checker = ResponseChecker(app)
    _checkers.append(checker)
    return checker


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(wrap=_checked) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> Iterator[Emulator]:
    """A clean emulator for one test (state reset before it). Every Calendar API response it
    serves during the test is checked against Google's discovery document."""
    emu = Emulator(emulator_server)
    emu.control("POST", "/reset")
    for checker in _checkers:
        checker.problems.clear()
    yield emu
    emu.http.close()
    problems = [p for checker in _checkers for p in checker.problems]
    assert not problems, "emulator answered outside the discovery schema:\n" + "\n".join(problems)
