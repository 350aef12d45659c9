"""Started as a new user would: `calsync serve` with no Google settings (what `make run` does)
serves the sandbox; an event created in the emulator as a demo user shows up through the CRM
API with no manual sync."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check, within: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sandbox_serves_and_syncs_a_google_change(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")} | {
        "CALSYNC_DATA_DIR": str(tmp_path / "data")
    }
    out = (tmp_path / "stdout.txt").open("w+")
    err = (tmp_path / "stderr.txt").open("w+")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "calsync"), "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=err,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, Path(err.name).read_text()[-3000:]
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 120, "/readyz")  # a first start under a loaded CI machine
        banner = Path(out.name).read_text()
        key = re.search(r"Admin API key:\s+(csk_\S+)", banner)
        emulator = re.search(r"Google emulator:\s+(http://\S+)", banner)
        assert key and emulator, banner
        # only the users with a Google account in the emulator are listed as connected
        connected = banner.split("already connected):")[1].split("without a Google account")[0]
        assert "ada@demo.example" in connected and "bo@demo.example" in connected
        assert "admin@demo.example" not in connected
        assert "admin@demo.example" in banner.split("without a Google account")[1]
        admin = {"Authorization": f"Bearer {key.group(1)}"}
        emu = emulator.group(1)

        def activities() -> list[dict[str, object]]:
            resp = httpx.get(f"{base}/api/v1/activities", headers=admin, timeout=5)
            assert resp.status_code == 200, resp.text
            rows: list[dict[str, object]] = resp.json()["activities"]
            return rows

        # the demo data was imported at start
        subjects = {a["subject"] for a in activities()}
        assert {"Company off-site", "Customer visit: Nordic Trading"} <= subjects
        # a change in Google, made as the demo user
        token = httpx.post(f"{emu}/emulator/v1/accounts/ada@demo.example/tokens", json={}).json()
        start = (datetime.now(UTC) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
        resp = httpx.post(
            f"{emu}/calendar/v3/calendars/ada@demo.example/events",
            headers={"Authorization": f"Bearer {token['access_token']}"},
            json={
                "summary": "Made in Google just now",
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
            },
        )
        assert resp.status_code == 200, resp.text
        made = time.monotonic()
        wait_for(
            lambda: any(a["subject"] == "Made in Google just now" for a in activities()),
            10,
            "the Google event as a CRM activity",
        )
        assert time.monotonic() - made < 5
        # the demo user's diagnostics: a sandbox, not "Something is wrong" (http webhooks)
        with httpx.Client(base_url=base, timeout=10) as browser:
            form = browser.get("/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf, form
            login = {"email": "ada@demo.example", "password": "calsync-demo"}
            resp = browser.post("/login", data={"csrf": csrf.group(1), **login})
            assert resp.status_code == 303, resp.text
            page = browser.get("/diagnostics")
            assert page.status_code == 200
            assert 'class="check status-sandbox" data-check="webhook"' in page.text
            assert "status-fail" not in page.text, page.text
            assert "Something is wrong" not in page.text
        # a restart keeps the demo company (once) and prints a fresh admin key
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
