"""A portal link in a real browser (issue 17): the CRM asks for a link with its admin key, the
user's browser opens it and lands on their own Google Calendar settings page with "Back to
<CRM>". Playwright drives Debian's Chromium, with test_browser.py's fixtures (own instances)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from calsync.store import crypto
from tests.conftest import Emulator
from tests.pages.test_browser import ARTIFACTS, AppServer, Company, browser, new_page, ring, server

pytestmark = pytest.mark.browser
__all__ = ["browser", "ring", "server"]  # fixtures, used by name

CRM = "https://crm.example.com/settings/calendar"


@pytest.fixture(autouse=True)
def _patient_expect() -> Iterator[None]:
    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=None)


def test_portal_link_opens_the_users_settings(
    browser: Browser, server: AppServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    alice = "alice@example.com"
    company = Company(server, emulator, ring)
    alice_id = company.user(alice)
    resp = httpx.post(
        f"{server.url}/api/v1/users/{alice_id}/portal-sessions",
        headers={"Authorization": f"Bearer {company.admin_key}"},
        json={"return_url": CRM, "return_label": "Acme CRM"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    url = resp.json()["url"]
    assert url.startswith(server.url + "/portal/")

    page = new_page(browser)
    page.goto(url)
    page.wait_for_url("**/settings/google")
    expect(page.get_by_role("heading", level=1)).to_have_text("Google Calendar")
    expect(page.locator(".me")).to_have_text(alice)
    back = page.get_by_role("link", name="Back to Acme CRM")
    expect(back).to_have_attribute("href", CRM)
    expect(back).to_have_attribute("target", "_top")
    # Google's consent page refuses to be framed: connecting leaves a CRM's iframe for the tab
    connect = page.locator("form[action='/settings/google/connect']")
    expect(connect).to_have_attribute("target", "_top")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "portal-settings-en.png"), full_page=True)

    # the Back link stays on the other pages of this session
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Diagnostics").click()
    page.wait_for_url("**/diagnostics")
    expect(page.get_by_role("link", name="Back to Acme CRM")).to_be_visible()

    # the same link a second time: refused, and nobody is signed in behind it
    other = new_page(browser)
    answer = other.goto(url)
    assert answer is not None and answer.status == 410
    expect(other.get_by_role("heading", level=1)).to_have_text(
        "This link has expired or was already used"
    )
    expect(
        other.get_by_text("Open the Google Calendar settings again from Acme CRM.")
    ).to_be_visible()
    expect(other.locator(".me")).to_have_count(0)
