"""Error pages never dead-end: a browser gets HTML in its language with the navigation and links
onwards (404, 403, 422, 500); API clients (Accept: application/json, /api/...) keep the JSON
errors. With the Calendar module off, the settings page says what is off and who switches it on,
and the start page does not loop back to it."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request

from calsync.store import tenants
from calsync.web.errors import wants_html

from .conftest import Browser, Pages, csrf_of

ALICE = "alice@example.com"
ADMIN = "admin@example.com"
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # Chromium's
HREF = re.compile(r'<nav class="forward".*?</nav>', re.S)


def forward_links(html: str) -> list[str]:
    found = HREF.search(html)
    assert found, "no links onwards on the error page"
    return re.findall(r'href="([^"]+)"', found.group(0))


async def browser_of(pages: Pages, email: str, role: str = "user", lang: str = "en") -> Browser:
    _, _, browser = await pages.person(email, role)
    browser.client.headers.update({"Accept": HTML, "Accept-Language": lang})
    return browser


async def switch_module_off(pages: Pages) -> None:
    async with pages.db.session() as s:
        tenant = await tenants.get(s, pages.api.world.tenant_id)
        assert tenant is not None
        tenant.calendar_module_enabled = False
        await s.commit()


def request_with(path: str, accept: str | None) -> Request:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return Request({"type": "http", "method": "GET", "path": path, "headers": headers})


@pytest.mark.parametrize(
    ("path", "accept", "html"),
    [
        ("/nope", HTML, True),
        ("/nope", "text/html", True),
        ("/nope", "application/json", False),
        ("/nope", "application/json, text/html;q=0.5", False),
        ("/nope", "text/html, application/json", True),
        ("/nope", "*/*", False),  # curl, httpx: JSON
        ("/nope", None, False),
        ("/api/v1/nope", HTML, False),
        ("/webhooks/google", HTML, False),
        ("/nope", "text/html;q=0", False),
    ],
)
def test_who_gets_html(path: str, accept: str | None, html: bool) -> None:
    assert wants_html(request_with(path, accept)) is html


async def test_unknown_address_is_a_page_with_navigation(pages: Pages) -> None:
    browser = await browser_of(pages, ALICE, lang="nb")
    page = await browser.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="nb">' in page.text
    assert "Fant ikke siden" in page.text  # "Page not found"
    assert 'aria-label="Hovedmeny"' in page.text and "Logg ut" in page.text  # nav and Log out
    assert forward_links(page.text) == ["/settings/google", "/calendar", "/diagnostics"]
    assert '"error"' not in page.text and "detail" not in page.text
    # the same address for an API client: the JSON error
    api = await browser.get("/no/such/page", headers={"Accept": "application/json"})
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    # /api/ always answers JSON, even to a browser
    api_path = await browser.get("/api/v1/no-such-thing")
    assert api_path.status_code == 404 and api_path.json()["error"]["code"] == "not_found"


async def test_logged_out_404_offers_the_login(pages: Pages) -> None:
    browser = pages.browser(Accept=HTML, **{"Accept-Language": "de"})
    page = await browser.get("/nowhere")
    assert page.status_code == 404 and '<html lang="de">' in page.text
    assert "Seite nicht gefunden" in page.text
    assert forward_links(page.text) == ["/login"]


async def test_a_malformed_id_is_a_page_not_pydantic(pages: Pages) -> None:
    browser = await browser_of(pages, ADMIN, role="admin", lang="sv")
    page = await browser.get("/diagnostics/not-a-uuid")
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="sv">' in page.text and "user_id" in page.text
    assert "Input should be" not in page.text and "uuid_parsing" not in page.text
    assert "/diagnostics" in forward_links(page.text)
    api = await browser.get("/diagnostics/not-a-uuid", headers={"Accept": "application/json"})
    assert api.status_code == 422
    assert api.json()["error"]["code"] == "validation_failed"
    assert api.json()["error"]["fields"][0]["field"] == "user_id"


async def test_module_off_page_says_what_and_who_and_does_not_loop(pages: Pages) -> None:
    admin = await browser_of(pages, ADMIN, role="admin")
    alice = await browser_of(pages, ALICE)
    await switch_module_off(pages)

    page = await alice.get("/settings/google")
    assert page.status_code == 403
    assert "The Calendar module is off" in page.text
    assert "syncs nobody's Google Calendar" in page.text  # what is off
    assert f"an admin of your company ({ADMIN})" in page.text  # who switches it on
    assert "Log out" in page.text and 'href="/calendar"' in page.text  # navigation
    links = forward_links(page.text)
    assert "/settings/google" not in links and "/" not in links  # no loop
    assert links == ["/calendar", "/diagnostics"]
    for link in links:
        assert (await alice.get(link)).status_code == 200, link
    # the start page leads to the calendar, not back to the closed settings page
    home = await alice.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/calendar"

    # an admin gets the link to switch it on, and it works from there
    page = await admin.get("/settings/google")
    assert page.status_code == 403
    assert "you can switch it on yourself" in page.text
    assert forward_links(page.text)[0] == "/admin/integrations#module-heading"
    integrations = await admin.get("/admin/integrations")
    resp = await admin.post(
        "/admin/integrations/module",
        {"calendar_module_enabled": "on"},
        csrf=csrf_of(integrations.text),
    )
    assert resp.status_code == 303
    assert (await admin.get("/settings/google")).status_code == 200
    home = await admin.get("/")
    assert home.headers["location"] == "/settings/google"


async def test_module_off_in_german(pages: Pages) -> None:
    alice = await browser_of(pages, ALICE, lang="de")
    await browser_of(pages, ADMIN, role="admin")
    await switch_module_off(pages)
    page = await alice.get("/settings/google")
    assert page.status_code == 403 and '<html lang="de">' in page.text
    assert "Kalender-Modul" in page.text
    assert "Google Kalender" in page.text or "Google-Kalender" in page.text
    assert f"({ADMIN})" in page.text
    assert "syncs nobody" not in page.text and "Who can switch" not in page.text


async def test_unexpected_error_is_a_page_for_browsers_and_json_for_clients(
    pages: Pages,
) -> None:
    app: FastAPI = pages.api.app

    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/boom-for-test", boom, include_in_schema=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://calsync.test") as client:
        page = await client.get("/boom-for-test", headers={"Accept": HTML, "Accept-Language": "fi"})
        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")
        assert '<html lang="fi">' in page.text and "kaboom" not in page.text
        assert "Jokin meni vikaan" in page.text  # "Something went wrong"
        assert forward_links(page.text) == ["/login"]
        api = await client.get("/boom-for-test", headers={"Accept": "application/json"})
        assert api.status_code == 500
        assert api.json()["error"]["code"] == "internal_error"


# what a page makes the browser load: scripts, styles, images, frames, CSS url(...)
LOADED = re.compile(
    r"""(?:<(?:script|img|iframe|source)\b[^>]*\bsrc|<link\b[^>]*\bhref)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^)"']+)"""
)
SERVED = [
    "/docs",
    "/docs/oauth2-redirect",
    "/login",
    "/settings/google",
    "/calendar",
    "/diagnostics",
    "/admin/integrations",
    "/no/such/page",
]


async def test_no_page_loads_anything_from_outside(pages: Pages) -> None:
    """The API docs' Swagger UI comes from calsync (fastapi-offline), not a CDN; so does
    everything any page loads, including the error pages and the static CSS."""
    browser = await browser_of(pages, ADMIN, role="admin")
    assets: set[str] = set()
    for path in SERVED:
        page = await browser.get(path)
        assert page.status_code in (200, 404), (path, page.status_code)
        assert page.headers["content-type"].startswith("text/html"), path
        assert "cdn" not in page.text.lower(), path
        found = {a or b for a, b in LOADED.findall(page.text)}
        outside = {url for url in found if not url.startswith(("/", "#", "data:"))}
        assert outside == set(), (path, outside)
        assets |= found
    # the docs' own script and style are served, with content
    assert {
        "/static-offline-docs/swagger-ui-bundle.js",
        "/static-offline-docs/swagger-ui.css",
    } <= assets
    for asset in sorted(a for a in assets if a.startswith("/")):
        resp = await browser.get(asset)
        assert resp.status_code == 200 and len(resp.content) > 100, asset
        if asset.endswith(".css"):
            assert not re.search(r"url\(\s*[\"']?(https?:)?//", resp.text), asset
    # the docs page turns the online validator off (it would fetch a badge from outside)
    docs = await browser.get("/docs")
    assert '"validatorUrl": null' in docs.text
    assert (await browser.get("/redoc")).status_code == 404
