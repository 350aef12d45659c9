"""The reference CRM (examples/reference_crm) beside calsync and the emulator, every part its own
process as a CRM vendor would run them: `calsync serve` in sandbox mode (the emulator inside),
and the CRM started with the admin key the sandbox printed. Issue 17's end-to-end test:

- the CRM registers its webhook endpoint and copies the users and their calendars;
- a change made in Google reaches the CRM's view through a signed webhook within 2 s;
- an activity created in the CRM reaches Google;
- a forged webhook is refused and changes nothing;
- the CRM's "Google Calendar" button opens the right user's settings page in calsync, with a
  working "Back to Reference CRM" link (Playwright, Debian's Chromium).
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.pages.test_browser import ARTIFACTS, browser, new_page
from tests.sandbox.test_serve import free_port, wait_for

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # a fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
CRM_SCRIPT = ROOT / "examples" / "reference_crm" / "crm.py"


class Process:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, name: str) -> None:
        self.out = (cwd / f"{name}.out").open("w+")
        self.err = (cwd / f"{name}.err").open("w+")
        self.proc = subprocess.Popen(args, env=env, stdout=self.out, stderr=self.err, cwd=cwd)

    def alive(self) -> None:
        assert self.proc.poll() is None, Path(self.err.name).read_text()[-3000:]

    def stdout(self) -> str:
        return Path(self.out.name).read_text()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def answers(url: str, proc: Process) -> bool:
    proc.alive()
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    port, crm_port = free_port(), free_port()
    calsync = Process(
        [str(Path(sys.executable).parent / "calsync"), "serve", "--port", str(port)],
        env | {"CALSYNC_DATA_DIR": str(tmp_path / "data")},
        tmp_path,
        "calsync",
    )
    crm: Process | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/readyz", calsync), 120, "calsync's /readyz")
        banner = calsync.stdout()
        key = re.search(r"Admin API key:\s+(csk_\S+)", banner)
        emulator = re.search(r"Google emulator:\s+(http://\S+)", banner)
        assert key and emulator, banner
        crm_args = [sys.executable, str(CRM_SCRIPT), "--calsync", base, "--port", str(crm_port)]
        crm = Process(
            [*crm_args, "--db", str(tmp_path / "crm.db")],
            env | {"CALSYNC_ADMIN_KEY": key.group(1)},
            tmp_path,
            "crm",
        )
        crm_url = f"http://127.0.0.1:{crm_port}"
        wait_for(lambda: answers(crm_url + "/", crm), 60, "the reference CRM")
        yield {
            "calsync": base,
            "crm": crm_url,
            "emulator": emulator.group(1),
            "admin": {"Authorization": f"Bearer {key.group(1)}"},
            "crm_db": tmp_path / "crm.db",
        }
    finally:
        if crm is not None:
            crm.stop()
        calsync.stop()


def crm_view(crm: str, user_id: str) -> dict[str, dict[str, Any]]:
    resp = httpx.get(f"{crm}/users/{user_id}/activities.json", timeout=5)
    assert resp.status_code == 200, resp.text
    return {a["subject"]: a for a in resp.json()["activities"]}


def test_the_reference_crm_end_to_end(stack: dict[str, Any], browser: Browser) -> None:
    crm, emu = stack["crm"], stack["emulator"]
    users = httpx.get(f"{stack['calsync']}/api/v1/users", headers=stack["admin"]).json()["users"]
    ada = next(u["id"] for u in users if u["email"] == "ada@demo.example")

    # the CRM copied the users and ada's calendar (the sandbox's demo events)
    home = httpx.get(crm + "/").text
    assert "ada@demo.example" in home and "bo@demo.example" in home
    assert "Customer visit: Nordic Trading" in crm_view(crm, ada)
    endpoints = httpx.get(
        f"{stack['calsync']}/api/v1/webhook-endpoints", headers=stack["admin"]
    ).json()["endpoints"]
    assert [e["url"] for e in endpoints] == [crm + "/webhooks/calsync"]

    # Google → calsync → signed webhook → the CRM's view, one change after another
    token = httpx.post(f"{emu}/emulator/v1/accounts/ada@demo.example/tokens", json={}).json()
    google = httpx.Client(
        base_url=f"{emu}/calendar/v3/calendars/ada@demo.example",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    delays = []
    for n in range(5):
        subject = f"Booked in Google #{n}"
        resp = google.post(
            "/events",
            json={
                "summary": subject,
                "start": {"dateTime": (start + timedelta(hours=n)).isoformat()},
                "end": {"dateTime": (start + timedelta(hours=n, minutes=30)).isoformat()},
            },
        )
        assert resp.status_code == 200, resp.text
        made = time.monotonic()
        row = wait_for(lambda s=subject: crm_view(crm, ada).get(s), 15, subject)  # type: ignore[misc]
        delays.append(time.monotonic() - made)
        assert row["source"] == "google" and row["deleted"] == 0
    print(f"Google → reference CRM: {[round(d, 3) for d in delays]} s")
    assert statistics.median(delays) < 2, delays

    # an edit and a delete in Google follow
    event_id = next(
        e["id"] for e in google.get("/events").json()["items"] if e["summary"] == subject
    )
    google.patch(f"/events/{event_id}", json={"location": "Room 7"}).raise_for_status()
    wait_for(lambda: crm_view(crm, ada)[subject]["location"] == "Room 7", 15, "the edit")
    google.delete(f"/events/{event_id}").raise_for_status()
    wait_for(lambda: crm_view(crm, ada)[subject]["deleted"] == 1, 15, "the delete")

    # an activity created in the CRM reaches Google
    when = (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    resp = httpx.post(
        f"{crm}/users/{ada}/activities",
        data={"subject": "Made in the CRM", "start": when, "minutes": "45"},
    )
    assert resp.status_code == 303, resp.text
    assert crm_view(crm, ada)["Made in the CRM"]["source"] == "crm"

    def in_google() -> bool:
        items = google.get("/events", params={"q": "Made in the CRM"}).json()["items"]
        return any(e.get("summary") == "Made in the CRM" for e in items)

    wait_for(in_google, 15, "the CRM's activity in Google")

    # a forged webhook: refused, and the view does not change
    before = crm_view(crm, ada)
    forged = httpx.post(
        f"{crm}/webhooks/calsync",
        content=b'{"type":"activity.deleted","timestamp":"2026-01-01T00:00:00Z","data":{}}',
        headers={
            "webhook-id": "msg_forged",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
            "content-type": "application/json",
        },
    )
    assert forged.status_code == 400
    assert crm_view(crm, ada) == before

    # the "Google Calendar" button: ada's own settings in calsync, and back to the CRM
    expect.set_options(timeout=20_000)
    try:
        page = new_page(browser)
        page.goto(f"{crm}/users/{ada}")
        expect(page.get_by_text("Booked in Google #0")).to_be_visible()
        page.get_by_role("button", name="Google Calendar").click()
        page.wait_for_url("**/settings/google")
        assert page.url.startswith(stack["calsync"])
        expect(page.get_by_role("heading", level=1)).to_have_text("Google Calendar")
        expect(page.locator(".me")).to_have_text("ada@demo.example")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "reference-crm-portal-en.png"), full_page=True)
        page.get_by_role("link", name="Back to Reference CRM").click()
        page.wait_for_url(f"{crm}/users/{ada}")
        expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    finally:
        expect.set_options(timeout=None)
