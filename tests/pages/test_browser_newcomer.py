"""A newcomer's first hour in a real browser (issue 14): error pages that never dead-end, the API
docs with no CDN, and the sandbox's details. Playwright drives Debian's Chromium, as in
test_browser.py, whose server and browser fixtures this module reuses (its own instances).
Screenshots go to test-artifacts/pages/ (gitignored)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from calsync.store import crypto
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from tests.conftest import Emulator
from tests.pages.test_browser import (
    ARTIFACTS,
    AppServer,
    Company,
    browser,
    login,
    new_page,
    ring,
    run_async,
    server,
    switch_language,
)

pytestmark = pytest.mark.browser
__all__ = ["browser", "ring", "server"]  # fixtures, used by name

SA = "sync@crm-project.iam.gserviceaccount.com"


@pytest.fixture(autouse=True)
def _patient_expect() -> Iterator[None]:
    """expect() waits up to 20 s here (its default is 5): the machine's CI runs share cores;
    set back to the default after each test, so other modules keep theirs."""
    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=None)


def shot(page: Page, name: str, lang: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}.png"), full_page=True)


def test_error_pages_lead_somewhere(
    browser: Browser, server: AppServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    admin, alice = "admin@example.com", "alice@example.com"
    company = Company(server, emulator, ring)
    company.user(admin, role="admin")
    company.user(alice)

    # the admin switches the Calendar module off on the Integrations page
    boss = new_page(browser)
    login(boss, server, company, admin, "/admin/integrations")
    boss.uncheck("#calendar_module_enabled")
    boss.locator("#module-heading + form button[type=submit]").click()
    expect(
        boss.get_by_text("The Calendar module is switched off for this company.")
    ).to_be_visible()

    # a user's settings page says what is off and who switches it on; nothing loops
    page = new_page(browser)
    login(page, server, company, alice, "/settings/google")
    expect(page.get_by_role("heading", level=1)).to_have_text("The Calendar module is off")
    expect(page.locator(".who-switches")).to_contain_text(admin)
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    forward = page.get_by_role("navigation", name="Where to go from here")
    expect(forward.get_by_role("link")).to_have_count(2)
    shot(page, "module-off", "en")
    forward.get_by_role("link", name="Calendar").click()
    page.wait_for_url("**/calendar")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.goto(server.url + "/")
    page.wait_for_url("**/calendar")  # the start page does not lead back to the closed page

    # an unknown address and a malformed id: pages in the user's language, not JSON
    page.goto(server.url + "/no/such/page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    switch_language(page, "nb")
    expect(page.get_by_role("heading", level=1)).to_have_text("Fant ikke siden")
    expect(page.get_by_role("button", name="Logg ut")).to_be_visible()
    shot(page, "not-found", "nb")
    response = page.goto(server.url + "/diagnostics/not-a-uuid")
    assert response is not None and response.status == 422
    assert response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", level=1)).to_have_text("Adressen er ikke gyldig")
    expect(page.locator("main")).to_contain_text("user_id")
    expect(page.locator("body")).not_to_contain_text("Input should be")
    shot(page, "invalid-address", "nb")
    page.context.close()

    # the admin's module-off page links to the switch, which works
    boss.goto(server.url + "/settings/google")
    expect(boss.locator(".who-switches")).to_contain_text("you can switch it on yourself")
    boss.get_by_role("link", name="Switch the Calendar module on in Integrations").click()
    boss.wait_for_url("**/admin/integrations#module-heading")
    boss.check("#calendar_module_enabled")
    boss.locator("#module-heading + form button[type=submit]").click()
    expect(boss.get_by_text("The Calendar module is switched on.")).to_be_visible()
    boss.goto(server.url + "/settings/google")
    expect(boss.get_by_role("heading", level=1)).to_have_text("Google Calendar")
    boss.context.close()


def test_api_docs_load_nothing_from_outside(browser: Browser, server: AppServer) -> None:
    """Swagger UI renders and works with every request outside calsync blocked."""
    page = new_page(browser)
    outside: list[str] = []
    own = urlsplit(server.url).netloc

    def only_calsync(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == own:
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    page.context.route("**/*", only_calsync)
    page.goto(server.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("calsync")
    expect(page.locator(".opblock").first).to_be_visible()
    shot(page, "api-docs", "en")
    page.locator(".opblock-get .opblock-summary-path[data-path='/api/v1/activities']").click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert outside == [], outside
    # no ReDoc: its bundle loads its logo from a CDN
    assert page.goto(server.url + "/redoc").status == 404  # type: ignore[union-attr]
    page.context.close()


class SandboxServer(AppServer):
    """calsync in sandbox mode (as `make run`), on a real port, with the test's emulator."""

    mode = "sandbox"


@pytest.fixture(scope="module")
def sandbox(
    emulator_server: Any, tmp_path_factory: pytest.TempPathFactory, ring: crypto.Keyring
) -> Iterator[SandboxServer]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sandbox') / 'calsync.db'}"

    async def migrate() -> None:
        db = Database(url, pooled=False)
        await upgrade(db)
        await db.dispose()

    run_async(migrate())
    app = SandboxServer(emulator_server.url, url, ring)
    app.start()
    yield app
    app.stop()


def test_sandbox_diagnostics_and_the_service_account_switch(
    browser: Browser, sandbox: SandboxServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    admin, ada = "admin@example.com", "ada@example.com"
    emulator.account(ada)
    company = Company(sandbox, emulator, ring)
    company.user(admin, role="admin")
    company.user(ada)

    # the sandbox's http webhook address is not a failure there
    page = new_page(browser, lang="de-DE")
    login(page, sandbox, company, ada, "/diagnostics")
    webhook = page.locator("[data-check=webhook]")
    expect(webhook).to_have_class("check status-sandbox")
    expect(webhook).to_contain_text("In der Sandbox nicht anwendbar")
    expect(page.locator("#sandbox-note")).to_be_visible()
    expect(page.locator("[data-check=webhook] .badge.status-fail")).to_have_count(0)
    shot(page, "diagnostics-sandbox", "de")
    switch_language(page, "en")
    expect(page.locator("[data-check=webhook]")).to_contain_text("fine in the sandbox")
    expect(page.locator("#report")).to_contain_text("[SANDBOX]")
    page.context.close()

    # the service-account upload says, before and after, that it switches the whole company
    created = emulator.control("POST", "/service-accounts", {"client_email": SA}).json()
    boss = new_page(browser)
    login(boss, sandbox, company, admin, "/admin/integrations")
    expect(boss.locator("#sa-switch")).to_contain_text("This switches the whole company.")
    expect(boss.locator("#auth-oauth")).to_be_checked()
    boss.set_input_files(
        "#key",
        files=[
            {
                "name": "key.json",
                "mimeType": "application/json",
                "buffer": json.dumps(created["json_key"]).encode(),
            }
        ],
    )
    boss.get_by_role("button", name="Upload key").click()
    expect(boss.locator(".flash.warn")).to_contain_text(
        f"The whole company now connects through the service account {SA}"
    )
    expect(boss.locator("#auth-sa")).to_be_checked()
    expect(boss.locator("#sa-switch")).to_contain_text(
        "The whole company connects through the service account now"
    )
    shot(boss, "service-account-switched", "en")
    # a second key (a replacement) switches nothing, so no warning
    boss.set_input_files(
        "#key",
        files=[
            {
                "name": "key.json",
                "mimeType": "application/json",
                "buffer": json.dumps(created["json_key"]).encode(),
            }
        ],
    )
    boss.get_by_role("button", name="Upload key").click()
    expect(boss.get_by_text(f"The key of {SA} is saved.", exact=False)).to_be_visible()
    expect(boss.locator(".flash.warn")).to_have_count(0)
    boss.context.close()
