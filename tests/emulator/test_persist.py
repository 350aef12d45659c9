"""`--state FILE`: the world round-trips through a file, in process and through the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gcal_emulator import persist
from gcal_emulator.server import EmulatorServer
from gcal_emulator.state import Channel, Fault, World

ADA = "ada@example.com"


def _world() -> World:
    world = World()
    world.clock.advance(3600)
    world.add_account(ADA, "Ada")
    cal = world.add_calendar(ADA, "CRM", time_zone="Europe/Oslo")
    cal.acl["bob@example.com"] = "reader"
    world.used_event_ids[cal.id].update({"abc123", "def456"})
    world.delegations["example.com"] = {"1234": {"https://www.googleapis.com/auth/calendar"}}
    world.issue_access_token(ADA, frozenset({"openid", "email"}), client_id="c1")
    world.channels["ch"] = Channel(
        id="ch",
        resource_id="r",
        resource_uri="u",
        token=None,
        address="https://example.com/hook",
        expiration_ms=1,
        kind="events",
        account=ADA,
        calendar_id=cal.id,
        params={"ttl": "60"},
        message_number=4,
    )
    world.faults.append(Fault(id=1, status=503, count=2, retry_after=5))
    return world


def test_round_trip_keeps_every_type(tmp_path: Path) -> None:
    world = _world()
    path = tmp_path / "state.json"
    persist.save(world, path)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind
    data = json.loads(path.read_text())
    assert data["format"] == "gcal_emulator-state"
    assert "lock" not in data["world"] and "change_listeners" not in data["world"]

    loaded = World()
    assert persist.load(loaded, path) is True
    assert loaded.accounts == world.accounts
    assert loaded.calendars == world.calendars
    assert loaded.calendar_list == world.calendar_list
    assert loaded.used_event_ids == world.used_event_ids
    assert isinstance(next(iter(loaded.used_event_ids.values())), set)
    assert loaded.delegations == world.delegations
    assert loaded.access_tokens == world.access_tokens
    token = next(iter(loaded.access_tokens.values()))
    assert isinstance(token.scopes, frozenset)
    assert loaded.valid_access_token(token.token) is not None
    assert loaded.channels == world.channels
    assert loaded.faults == world.faults
    assert loaded.seq == world.seq
    assert loaded.clock.offset == pytest.approx(3600)
    # a fresh world's own machinery is untouched
    assert loaded.lock is not world.lock and loaded.change_listeners == []


def test_missing_file_loads_nothing_and_bad_files_refuse(tmp_path: Path) -> None:
    world = World()
    assert persist.load(world, tmp_path / "nope.json") is False
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(persist.StateFileError):
        persist.load(world, bad)
    bad.write_text(json.dumps({"format": "something else", "version": 1, "world": {}}))
    with pytest.raises(persist.StateFileError):
        persist.load(world, bad)
    sneaky = {
        "format": persist.FORMAT,
        "version": persist.VERSION,
        "world": {"accounts": {"__dataclass__": "os:system", "fields": {}}},
    }
    bad.write_text(json.dumps(sneaky))
    with pytest.raises(persist.StateFileError):
        persist.load(world, bad)


def test_running_server_saves_periodically_and_on_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    server = EmulatorServer()
    server.app.state.state_file = str(path)
    server.app.state.state_save_interval = 0.1
    with server:
        httpx.post(f"{server.url}/emulator/v1/accounts", json={"email": ADA})
        # a periodic save may have written the empty world before the account existed: wait
        # for the save that has it (eventual, never more than a few intervals)
        deadline = time.monotonic() + 5
        while not _saved_accounts(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ADA in _saved_accounts(path)
        httpx.post(f"{server.url}/emulator/v1/accounts", json={"email": "bob@example.com"})
    # the final save at shutdown has bob even if no periodic save ran after him
    assert "bob@example.com" in json.loads(path.read_text())["world"]["accounts"]

    again = EmulatorServer()
    again.app.state.state_file = str(path)
    with again:
        accounts = httpx.get(f"{again.url}/emulator/v1/accounts").json()["items"]
    assert {a["email"] for a in accounts} == {ADA, "bob@example.com"}


def _saved_accounts(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    accounts: dict[str, object] = json.loads(path.read_text())["world"]["accounts"]
    return accounts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(state: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcal_emulator", "--port", str(port), "--state", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/emulator/v1/clock", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"emulator did not start: {proc.stderr.read() if proc.stderr else ''!r}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT if os.name != "nt" else signal.CTRL_C_EVENT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_cli_state_flag_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "emulator-state.json"
    proc, url = _serve(state)
    try:
        httpx.post(f"{url}/emulator/v1/accounts", json={"email": ADA})
        token = httpx.post(f"{url}/emulator/v1/accounts/{ADA}/tokens", json={}).json()[
            "access_token"
        ]
    finally:
        _stop(proc)
    assert state.exists()

    proc, url = _serve(state)
    try:
        accounts = httpx.get(f"{url}/emulator/v1/accounts").json()["items"]
        assert [a["email"] for a in accounts] == [ADA]
        # the access token is still good: an authenticated call gets past auth (404, not 401)
        resp = httpx.post(
            f"{url}/calendar/v3/channels/stop",
            json={"id": "x"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 404
    finally:
        _stop(proc)
