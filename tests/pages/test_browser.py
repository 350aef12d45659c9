"""The pages in a real browser: Playwright drives Debian's Chromium (installed by `make test`)
against calsync served by uvicorn on a free port and the emulator. Screenshots of every page in
two languages go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from calsync.settings import Settings
from calsync.store import apikeys, crypto, tenants, users
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from calsync.store.passwords import hash_password
from calsync.web.app import create_app
from tests.conftest import Emulator

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CALSYNC_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pages"
CLIENT_ID = "calsync-pages.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-pages-secret"
PASSWORD = "correct horse battery"
SA = "sync@crm-project.iam.gserviceaccount.com"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
ZONE = "Europe/Oslo"

if not Path(CHROMIUM).exists():  # pragma: no cover - the test set-up installs it
    # a failure, not a skip: a missing browser must not pass CI silently
    pytest.fail(f"no Chromium at {CHROMIUM}: run `make test`, which installs it", pytrace=False)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


def run_async(work: Any) -> Any:
    """asyncio.run in a thread of its own (Playwright's sync API owns this thread's loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(work)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class AppServer:
    """calsync on a real port in a thread, its public URL that port (http, as in development)."""

    mode = "production"

    def __init__(self, emulator_url: str, database_url: str, keyring: crypto.Keyring) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(
            google_emulator_url=emulator_url,
            public_url=self.url,
            google_client_id=CLIENT_ID,
            google_client_secret=SecretStr(CLIENT_SECRET),
            google_requests_per_minute=0,
            google_timeout_seconds=5.0,
            mode=self.mode,
        )
        self.db = Database(database_url, pooled=False)
        app = create_app(self.settings, database=self.db, keyring=keyring)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("calsync did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


@pytest.fixture(scope="module")
def ring() -> crypto.Keyring:
    return crypto.Keyring([crypto.generate_key()])


@pytest.fixture(scope="module")
def server(
    emulator_server: Any, tmp_path_factory: pytest.TempPathFactory, ring: crypto.Keyring
) -> Iterator[AppServer]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('browser') / 'calsync.db'}"

    async def migrate() -> None:
        db = Database(url, pooled=False)
        await upgrade(db)
        await db.dispose()

    run_async(migrate())
    app = AppServer(emulator_server.url, url, ring).start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for all browser tests (they live in this module). Module scope, not
    session: Playwright's sync API keeps an event loop running in this thread while it is
    open, which would break later tests' asyncio.run on the same worker."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", autouse=True)
def _artifacts() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


class Company:
    """A tenant of the test's own on the served app, with users who have passwords."""

    def __init__(self, server: AppServer, emulator: Emulator, ring: crypto.Keyring) -> None:
        self.server, self.emu, self.ring = server, emulator, ring
        self.name = f"Company {uuid.uuid4().hex[:8]}"
        self.admin_key = ""
        self.keys: dict[str, str] = {}
        self.ids: dict[str, uuid.UUID] = {}
        self._run(self._create())
        emulator.control(
            "POST",
            "/oauth-clients",
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [server.url + "/oauth/google/callback"],
            },
        )

    def _run(self, work: Any) -> Any:
        crypto.install(self.ring)
        return run_async(work)

    async def _create(self) -> None:
        db = Database(self.server.db.engine.url.render_as_string(False), pooled=False)
        async with db.session() as s:
            tenant = await tenants.create(s, self.name)
            _, self.admin_key = await apikeys.create(s, tenant.id)
            await s.commit()
            self.tenant_id = tenant.id
        await db.dispose()

    def user(self, email: str, role: str = "user") -> uuid.UUID:
        async def work() -> uuid.UUID:
            db = Database(self.server.db.engine.url.render_as_string(False), pooled=False)
            async with db.session() as s:
                user = await users.create(s, self.tenant_id, email, role=role)
                user.password_hash = hash_password(PASSWORD)
                _, self.keys[email] = await apikeys.create(s, self.tenant_id, user_id=user.id)
                await s.commit()
                user_id = user.id
            await db.dispose()
            return user_id

        self.ids[email] = self._run(work())
        return self.ids[email]

    def api(self, method: str, path: str, email: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[email]}"}
        return httpx.request(method, self.server.url + path, headers=headers, timeout=30, **kw)


def new_page(browser: Browser, lang: str = "en-US", width: int = 1280) -> Page:
    context = browser.new_context(
        locale=lang, viewport={"width": width, "height": 900}, extra_http_headers={}
    )
    context.set_default_timeout(20_000)
    return context.new_page()


def login(page: Page, server: AppServer, company: Company, email: str, path: str) -> None:
    page.goto(server.url + path)
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.fill("#company", company.name)
    page.locator("form.card button[type=submit]").click()
    page.wait_for_url(f"**{path}")


def shot(page: Page, name: str, lang: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}-{lang}.png"), full_page=True)


def switch_language(page: Page, code: str) -> None:
    page.select_option("#lang-select", code)
    page.locator("form[action='/language'] button").click()
    page.wait_for_load_state()
    expect(page.locator("html")).to_have_attribute("lang", code)


def monday_of(day: date) -> str:
    return (day - timedelta(days=day.weekday())).isoformat()


def test_user_connects_syncs_and_reconnects(
    browser: Browser, server: AppServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    alice = "alice@example.com"
    emulator.account(alice, "Alice Example")
    crm = emulator.control(
        "POST", f"/accounts/{alice}/calendars", {"summary": "CRM entries", "timeZone": ZONE}
    ).json()["id"]
    company = Company(server, emulator, ring)
    alice_id = company.user(alice)
    page = new_page(browser)
    page.goto(server.url + "/login")
    shot(page, "login", "en")

    login(page, server, company, alice, "/settings/google")
    expect(page.locator(".status-card .big")).to_contain_text("Not connected")
    page.get_by_role("button", name="click to connect Google").click()
    # Google's (the emulator's) consent page
    page.check(f"input[name=account][value='{alice}']")
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_text("Connected as alice@example.com")).to_be_visible()

    page.goto(server.url + "/settings/google")
    expect(page.get_by_text("Connected as alice@example.com")).to_be_visible()
    # import the primary calendar, write CRM entries to the separate one
    page.get_by_label(f"Import {alice}").check()
    page.get_by_label("Write CRM entries to CRM entries").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Your settings are saved.")).to_be_visible()
    expect(page.get_by_label("Write CRM entries to CRM entries")).to_be_checked()

    start = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    token = emulator.token(alice)
    google = httpx.Client(
        base_url=f"{emulator.url}/calendar/v3", headers={"Authorization": f"Bearer {token}"}
    )
    resp = google.post(
        f"/calendars/{alice}/events",
        json={
            "summary": "Board meeting <b>Q3</b>",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        },
    )
    assert resp.status_code == 200, resp.text

    page.get_by_role("button", name="Sync now").first.click()
    expect(page.get_by_text("Sync now finished:")).to_be_visible()
    # (Google's push notification may have brought the event in before Sync now did)
    expect(page.locator("table").last).to_contain_text("1 created")

    week = monday_of(start.date())
    page.goto(f"{server.url}/calendar?week={week}")
    entry = page.locator(".entry", has_text="Board meeting <b>Q3</b>")
    expect(entry).to_be_visible()
    expect(entry).to_contain_text("From Google")

    # a CRM activity reaches the chosen Google calendar after Sync now
    resp = company.api(
        "POST",
        "/api/v1/activities",
        alice,
        json={
            "owner_id": str(alice_id),
            "subject": "Customer call",
            "start": (start + timedelta(hours=3)).isoformat(),
            "end": (start + timedelta(hours=4)).isoformat(),
            "time_zone": ZONE,
            "visibility": "private",
        },
    )
    assert resp.status_code == 201, resp.text
    page.goto(server.url + "/settings/google")
    page.get_by_role("button", name="Sync now").first.click()
    expect(page.get_by_text("Sync now finished:")).to_be_visible()
    events = google.get(f"/calendars/{crm}/events").json()["items"]
    assert [e["summary"] for e in events] == ["Customer call"]

    page.goto(f"{server.url}/calendar?week={week}")
    mine = page.locator(".entry", has_text="Customer call")
    expect(mine).to_contain_text("From the CRM")
    expect(mine).to_contain_text("Private")
    shot(page, "calendar", "en")
    page.goto(server.url + "/settings/google")
    shot(page, "settings-connected", "en")
    switch_language(page, "de")
    expect(page.get_by_text("Verbunden als alice@example.com")).to_be_visible()
    shot(page, "settings-connected", "de")
    page.goto(f"{server.url}/calendar?week={week}")
    expect(page.get_by_text("Aus Google")).to_be_visible()
    shot(page, "calendar", "de")
    switch_language(page, "en")

    # Google revokes access: the card says so and what fixes it
    emulator.control("POST", f"/accounts/{alice}/revoke-grants")
    page.goto(server.url + "/settings/google")
    card = page.locator(".status-card")
    expect(card).to_contain_text("Needs reconnect")
    expect(card.locator(".remedy")).to_contain_text("Reconnect Google Calendar")
    expect(card.get_by_role("button", name="Reconnect Google")).to_be_visible()
    shot(page, "settings-needs-reconnect", "en")

    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("Google Calendar is disconnected.")).to_be_visible()
    expect(page.get_by_role("button", name="click to connect Google")).to_be_visible()

    # reconnected: no stale "Google no longer accepts…" and no old Sync now result beside it
    page.get_by_role("button", name="click to connect Google").click()
    page.check(f"input[name=account][value='{alice}']")
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_text("Connected as alice@example.com")).to_be_visible()
    page.goto(server.url + "/settings/google")
    card = page.locator(".status-card")
    expect(card).to_contain_text("Connected as alice@example.com")
    expect(card).not_to_contain_text("no longer accepts")
    expect(page.get_by_text("Sync now finished:")).to_have_count(0)
    # the history names calendars, never by raw id
    expect(page.locator("#runs-heading + .table-wrap")).to_contain_text("CRM entries")
    expect(page.locator("#runs-heading + .table-wrap")).not_to_contain_text(crm)

    # unticking everything is asked about first, then says there is nothing to do
    page.get_by_label(f"Import {alice}").uncheck()
    page.get_by_label("Do not write CRM entries to Google").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Before you save")).to_be_visible()
    expect(page.locator("#confirm")).to_contain_text("has nothing to do")
    page.get_by_role("button", name="Save anyway").click()
    expect(page.get_by_text("Your settings are saved.")).to_be_visible()
    expect(page.locator(".sync-state")).to_contain_text("Sync has nothing to do")
    expect(page.get_by_text("no longer syncing").first).to_be_visible()
    expect(page.locator(".status-card")).not_to_contain_text("Never")
    google.close()
    page.context.close()


def test_admin_uploads_p12_key_and_tests_it(
    browser: Browser, server: AppServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    admin, alice = "admin@example.com", "alice@example.com"
    emulator.account(admin)
    emulator.account(alice)
    created = emulator.control("POST", "/service-accounts", {"client_email": SA}).json()
    emulator.control(
        "POST",
        "/domains/example.com/delegations",
        {"client_id": created["client_id"], "scopes": [CALENDAR_SCOPE]},
    )
    company = Company(server, emulator, ring)
    company.user(admin, role="admin")
    company.user(alice)
    page = new_page(browser)
    login(page, server, company, admin, "/admin/integrations")
    page.set_input_files(
        "#key",
        files=[
            {
                "name": "key.p12",
                "mimeType": "application/x-pkcs12",
                "buffer": base64.b64decode(created["p12_base64"]),
            }
        ],
    )
    page.fill("#client_email", SA)
    page.fill("#sa_password", created["p12_password"])
    page.get_by_role("button", name="Upload key").click()
    expect(page.get_by_text(f"The key of {SA} is saved.")).to_be_visible()
    expect(page.get_by_text(f"Key uploaded for {SA} (P12).")).to_be_visible()

    page.fill("#test_email", alice)
    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.locator(".test-result")).to_contain_text("Test passed")
    shot(page, "admin", "en")

    # the Workspace admin removes the delegation: Test says what to do in the admin console
    emulator.control(
        "DELETE", "/domains/example.com/delegations", {"client_id": created["client_id"]}
    )
    page.get_by_role("button", name="Test", exact=True).click()
    result = page.locator(".test-result")
    expect(result).to_contain_text("Test failed")
    expect(result.locator(".remedy")).to_contain_text("admin.google.com")
    expect(result.locator(".remedy")).to_contain_text("Domain-wide delegation")
    switch_language(page, "nb")
    expect(page.get_by_role("heading", name="Integrasjoner")).to_be_visible()
    shot(page, "admin", "nb")
    page.context.close()


def test_diagnostics_fail_the_webhook_check_on_http(
    browser: Browser, server: AppServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    bob = "bob@example.com"
    emulator.account(bob)
    company = Company(server, emulator, ring)
    company.user(bob)
    page = new_page(browser, lang="fi-FI")
    login(page, server, company, bob, "/diagnostics")
    expect(page.locator("html")).to_have_attribute("lang", "fi")
    webhook = page.locator("[data-check=webhook]")
    expect(webhook).to_have_class("check status-fail")
    expect(webhook).to_contain_text("https")
    expect(page.locator("#report")).to_contain_text("calsync support report")
    shot(page, "diagnostics", "fi")
    switch_language(page, "en")
    expect(page.locator("[data-check=webhook]")).to_contain_text("is not https")
    expect(page.locator("[data-check=connection]")).to_contain_text("Not connected.")
    shot(page, "diagnostics", "en")
    page.context.close()


PAGES = ["/login", "/settings/google", "/calendar", "/diagnostics", "/admin/integrations"]


def test_every_page_is_labelled_and_fits_375px(
    browser: Browser, server: AppServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    carol = "carol@example.com"
    emulator.account(carol)
    company = Company(server, emulator, ring)
    company.user(carol, role="admin")
    page = new_page(browser, lang="sv-SE", width=375)
    page.goto(server.url + "/login")
    for path in PAGES:
        if path != "/login" and "/login" in page.url:
            login(page, server, company, carol, path)
        page.goto(server.url + path)
        assert page.title().strip() and "calsync" in page.title(), path
        assert page.locator("h1").count() == 1, path
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(el => el.type !== 'hidden')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                              && !el.getAttribute('aria-labelledby'))
                .map(el => el.outerHTML)"""
        )
        assert unlabelled == [], (path, unlabelled)
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('button')]
                .filter(b => !b.textContent.trim() && !b.getAttribute('aria-label'))
                .map(b => b.outerHTML)"""
        )
        assert unnamed == [], (path, unnamed)
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, overflow)
        name = path.strip("/").replace("/", "-")
        shot(page, f"{name}-375px", "sv")


def _no_page_overflow(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, (page.url, overflow)


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return dict(box)


def test_week_grid_in_the_users_time_zone_at_desktop_and_phone_width(
    browser: Browser, server: AppServer, emulator: Emulator, ring: crypto.Keyring
) -> None:
    """Item 6 and 7 of issue 14: the week as a time grid in the user's zone (the primary
    calendar's by default, chosen in settings), readable at 375 px; the history table scrolls
    on a phone instead of breaking words. Screenshots: week and settings, en and nb, desktop
    and 375 px."""
    dave = "dave@example.com"
    emulator.control("POST", "/accounts", {"email": dave, "timeZone": ZONE})
    company = Company(server, emulator, ring)
    dave_id = company.user(dave)
    oslo = ZoneInfo(ZONE)
    tuesday = datetime(2027, 1, 12, 9, 0, tzinfo=oslo)  # 08:00 UTC
    for subject, start, hours in (
        ("Customer call", tuesday, 1.0),
        ("Steering group", tuesday + timedelta(minutes=30), 1.5),
        ("Lunch with Kari", tuesday.replace(hour=12), 1.0),
    ):
        resp = company.api(
            "POST",
            "/api/v1/activities",
            dave,
            json={
                "owner_id": str(dave_id),
                "subject": subject,
                "start": start.isoformat(),
                "end": (start + timedelta(hours=hours)).isoformat(),
                "time_zone": ZONE,
            },
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["start"].endswith("+01:00")  # the API keeps zone-aware times
    resp = company.api(
        "POST",
        "/api/v1/activities",
        dave,
        json={
            "owner_id": str(dave_id),
            "subject": "Trade fair",
            "start": "2027-01-13",
            "end": "2027-01-15",
            "all_day": True,
            "time_zone": ZONE,
        },
    )
    assert resp.status_code == 201, resp.text
    week = "/calendar?week=2027-01-11"

    page = new_page(browser)
    login(page, server, company, dave, "/settings/google")
    page.get_by_role("button", name="click to connect Google").click()
    page.check(f"input[name=account][value='{dave}']")
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_text(f"Connected as {dave}")).to_be_visible()
    synced = company.api("POST", f"/api/v1/users/{dave_id}/google/sync", dave, json={"wait": True})
    assert synced.status_code == 200, synced.text

    # desktop, English: Oslo time without choosing anything
    page.goto(server.url + week)
    expect(page.locator("h2").first).to_contain_text(ZONE)
    call = page.locator(".entry", has_text="Customer call")
    expect(call).to_contain_text("9:00 AM")
    nine = page.locator(".hour", has_text="9:00 AM")
    call_box, nine_box = call.bounding_box(), nine.bounding_box()
    assert call_box and nine_box and abs(call_box["y"] - nine_box["y"]) < 4
    steering = page.locator(".entry", has_text="Steering group").bounding_box()
    assert steering and steering["x"] > call_box["x"] + 10  # side by side, not on top
    assert abs(steering["width"] - call_box["width"]) < 4
    fair = page.locator(".allday .entry", has_text="Trade fair")
    expect(fair).to_have_count(2)  # Wednesday and Thursday, in the all-day row
    shot(page, "week-desktop", "en")
    page.goto(server.url + "/settings/google")
    expect(page.locator("#time-zone")).to_contain_text(ZONE)
    shot(page, "settings-desktop", "en")

    # the user chooses Helsinki: the grid moves an hour, the history shows Helsinki times
    page.select_option("#time_zone", "Europe/Helsinki")
    page.get_by_role("button", name="Use this time zone").click()
    expect(page.get_by_text("Times are now shown in Europe/Helsinki.")).to_be_visible()
    page.goto(server.url + week)
    expect(page.locator(".entry", has_text="Customer call")).to_contain_text("10:00 AM")
    page.select_option("#lang-select", "nb")
    page.locator("form[action='/language'] button").click()
    expect(page.locator("html")).to_have_attribute("lang", "nb")
    expect(page.locator("h2").first).to_contain_text("tider i Europe/Helsinki")
    expect(page.locator(".entry", has_text="Customer call")).to_contain_text("10:00")
    shot(page, "week-desktop", "nb")
    page.goto(server.url + "/settings/google")
    page.select_option("#time_zone", "")
    page.get_by_role("button", name="Bruk denne tidssonen").click()
    expect(
        page.get_by_text("Tider følger igjen tidssonen til Google-kalenderen din.")
    ).to_be_visible()
    shot(page, "settings-desktop", "nb")
    page.context.close()

    # 375 px, both languages: the page never scrolls sideways; the week grid scrolls inside
    # its frame with readable columns; table cells keep whole words
    for lang, code in (("en-US", "en"), ("nb-NO", "nb")):
        phone = new_page(browser, lang=lang, width=375)
        login(phone, server, company, dave, week)
        expect(phone.locator("html")).to_have_attribute("lang", code)
        _no_page_overflow(phone)
        frame = phone.locator(".week-scroll")
        scroll = frame.evaluate("el => el.scrollWidth - el.clientWidth")
        assert scroll > 0
        entry = _box(phone, ".entry")
        assert entry["width"] >= 80
        size = phone.locator(".entry .subject").first.evaluate(
            "el => parseFloat(getComputedStyle(el).fontSize)"
        )
        assert size >= 12
        assert _box(phone, ".hour")["x"] >= 0
        shot(phone, "week-375px", code)
        phone.goto(server.url + "/settings/google")
        _no_page_overflow(phone)
        narrow = phone.evaluate(
            """() => [...document.querySelectorAll('[aria-labelledby=runs-heading] :is(td, th)')]
                .filter(td => td.getBoundingClientRect().width < 90)
                .map(td => td.textContent.trim())"""
        )
        assert narrow == [], narrow
        rows = phone.locator("[aria-labelledby=runs-heading] tbody tr")
        assert rows.count() >= 1
        # no word in the history is broken across lines (letter by letter, as it was)
        broken = phone.evaluate(
            """() => {
              const out = [];
              for (const cell of document.querySelectorAll('[aria-labelledby=runs-heading] td')) {
                const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
                for (let node = walk.nextNode(); node; node = walk.nextNode()) {
                  for (const m of node.data.matchAll(/\\S+/g)) {
                    const range = document.createRange();
                    range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
                    const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                    if (tops.size > 1) out.push(m[0]);
                  }
                }
              }
              return out; }"""
        )
        assert broken == [], broken
        shot(phone, "settings-375px", code)
        phone.context.close()
