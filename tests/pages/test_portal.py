"""Portal sessions (issue 17): a CRM's admin key asks for a one-time link that signs one of its
users into the pages; the link works once, expires, signs in exactly its user, and the pages
say "Back to <CRM>". Framing: nobody by default, the operator's origins when configured, and
then a SameSite=None cookie. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from calsync.obs import MASK, redact_text
from calsync.store import crypto
from calsync.store import portal_sessions as store
from calsync.store.db import Database
from calsync.store.models import PortalSession, WebSession
from calsync.sync.google_services import GoogleServices
from tests.calsync.conftest import make_world
from tests.conftest import Emulator
from tests.web.conftest import Api, build_app, register_client, settings_for

from .conftest import Pages

CRM = "https://crm.example.com/settings/calendar"


async def link(
    pages: Pages, user_id: uuid.UUID, key: str | None = None, **body: Any
) -> httpx.Response:
    return await pages.api.call("POST", f"/api/v1/users/{user_id}/portal-sessions", key, json=body)


async def new_link(pages: Pages, user_id: uuid.UUID, **body: Any) -> str:
    """A fresh link's path (/portal/<token>)."""
    resp = await link(pages, user_id, **body)
    assert resp.status_code == 201, resp.text
    return urlsplit(resp.json()["url"]).path


async def sessions_of(pages: Pages, user_id: uuid.UUID) -> int:
    async with pages.db.session() as s:
        return len(list(await s.scalars(select(WebSession).where(WebSession.user_id == user_id))))


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


async def test_link_signs_in_its_user_once(pages: Pages) -> None:
    alice = unique("alice")
    alice_id, _ = await pages.api.user(alice)
    resp = await link(pages, alice_id, return_url=CRM, return_label="Acme CRM")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    url = urlsplit(body["url"])
    assert f"{url.scheme}://{url.netloc}" == "https://crm.example.com"  # CALSYNC_PUBLIC_URL
    token = url.path.removeprefix("/portal/")
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    expires = datetime.fromisoformat(body["expires_at"])
    left = (expires - datetime.now(UTC)).total_seconds()
    assert 250 < left <= 300
    async with pages.db.session() as s:
        rows = list(await s.scalars(select(PortalSession).where(PortalSession.user_id == alice_id)))
    assert len(rows) == 1 and rows[0].token_hash == store.token_hash(token)
    assert token not in (rows[0].token_hash, rows[0].return_url)
    assert rows[0].tenant_id == pages.api.world.tenant_id and rows[0].used_at is None

    browser = pages.browser()
    opened = await browser.get(url.path)
    assert opened.status_code == 303 and opened.headers["location"] == "/settings/google"
    page = await browser.get("/settings/google")
    assert page.status_code == 200
    assert alice in page.text  # signed in as exactly this user
    assert f'href="{CRM}"' in page.text and "Back to Acme CRM" in page.text

    # the second use is refused, on this browser or any other; the first session stays valid
    again = await pages.browser().get(url.path)
    assert again.status_code == 410
    assert "This link has expired or was already used" in again.text
    assert "Open the Google Calendar settings again from Acme CRM." in again.text
    assert alice not in again.text
    still = await browser.get("/diagnostics")
    assert still.status_code == 200 and alice in still.text and "Back to Acme CRM" in still.text
    calendar = await browser.get("/calendar")
    assert calendar.status_code == 200 and "Back to Acme CRM" in calendar.text


async def test_link_without_return_url_shows_no_back_link(pages: Pages) -> None:
    bob = unique("bob")
    bob_id, _ = await pages.api.user(bob)
    browser = pages.browser()
    opened = await browser.get(await new_link(pages, bob_id))
    assert opened.status_code == 303
    page = await browser.get("/settings/google")
    assert bob in page.text and "Back to" not in page.text


async def test_label_defaults_to_host(pages: Pages) -> None:
    carol_id, _ = await pages.api.user(unique("carol"))
    browser = pages.browser()
    await browser.get(await new_link(pages, carol_id, return_url=CRM))
    page = await browser.get("/settings/google")
    assert "Back to crm.example.com" in page.text


async def test_link_expires(pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    dave = unique("dave")
    dave_id, _ = await pages.api.user(dave)
    path = await new_link(pages, dave_id, return_url=CRM, return_label="Acme CRM")
    later = datetime.now(UTC) + timedelta(seconds=301)
    monkeypatch.setattr(store, "utcnow", lambda: later)  # the clock moves past the lifetime
    browser = pages.browser()
    resp = await browser.get(path)
    assert resp.status_code == 410, resp.text
    assert "This link has expired or was already used" in resp.text
    assert "from Acme CRM" in resp.text
    assert dave not in resp.text
    assert (await browser.get("/settings/google")).status_code == 303  # to /login
    monkeypatch.undo()
    async with pages.db.session() as s:
        row = await store.find(s, path.removeprefix("/portal/"))
    assert row is not None and row.used_at is None  # never consumed


async def test_ttl_setting(pages: Pages) -> None:
    pages.api.app.state.settings = pages.api.app.state.settings.model_copy(
        update={"portal_link_ttl_seconds": 60}
    )
    erin_id, _ = await pages.api.user(unique("erin"))
    resp = await link(pages, erin_id)
    left = datetime.fromisoformat(resp.json()["expires_at"]) - datetime.now(UTC)
    assert 30 < left.total_seconds() <= 60


async def test_unknown_token(pages: Pages) -> None:
    browser = pages.browser()
    resp = await browser.get("/portal/" + "x" * 43)
    assert resp.status_code == 404
    assert "This link has expired or was already used" in resp.text
    assert "Open the Google Calendar settings again from your CRM." in resp.text
    assert (await browser.get("/portal/" + "y" * 500)).status_code == 404


async def test_link_replaces_another_users_session(pages: Pages) -> None:
    frank, grace = unique("frank"), unique("grace")
    frank_id, _, browser = await pages.person(frank)
    grace_id, _ = await pages.api.user(grace)
    before = await browser.get("/settings/google")
    assert frank in before.text
    assert await sessions_of(pages, frank_id) == 1
    resp = await browser.get(await new_link(pages, grace_id))
    assert resp.status_code == 303
    after = await browser.get("/settings/google")
    assert grace in after.text and frank not in after.text
    assert await sessions_of(pages, frank_id) == 0  # frank's login on this browser ended
    assert await sessions_of(pages, grace_id) == 1

    # a refused link also ends the browser's login: nobody else's pages behind it
    refused = await browser.get("/portal/" + "z" * 43)
    assert refused.status_code == 404 and grace not in refused.text
    assert (await browser.get("/settings/google")).status_code == 303


async def test_admin_signs_in_with_own_role(pages: Pages) -> None:
    boss = unique("boss")
    boss_id, _ = await pages.api.user(boss, "admin")
    browser = pages.browser()
    await browser.get(await new_link(pages, boss_id))
    assert (await browser.get("/admin/integrations")).status_code == 200
    ivan_id, _ = await pages.api.user(unique("ivan"))
    user_browser = pages.browser()
    await user_browser.get(await new_link(pages, ivan_id))
    assert (await user_browser.get("/admin/integrations")).status_code == 403


async def test_user_key_is_refused(pages: Pages) -> None:
    judy_id, judy_key = await pages.api.user(unique("judy"))
    resp = await link(pages, judy_id, judy_key)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "admin_required"
    _, admin_user_key = await pages.api.user(unique("admin"), "admin")
    ok = await link(pages, judy_id, admin_user_key)  # an admin user's key is an admin key
    assert ok.status_code == 201, ok.text


async def test_other_tenants_user_is_not_found(pages: Pages) -> None:
    other = await make_world(pages.db, pages.api.world.client)
    mallory_id, _ = await other.user(unique("mallory"))
    resp = await link(pages, mallory_id)  # tenant A's admin key, tenant B's user
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    assert (await link(pages, uuid.uuid4())).status_code == 404
    async with pages.db.session() as s:
        rows = list(
            await s.scalars(select(PortalSession).where(PortalSession.user_id == mallory_id))
        )
    assert rows == []
    # tenant B's own admin gets a link, and it signs in B's user, in B's tenant
    own = await other.call("POST", f"/api/v1/users/{mallory_id}/portal-sessions", json={})
    assert own.status_code == 201
    browser = pages.browser()
    await browser.get(urlsplit(own.json()["url"]).path)
    page = await browser.get("/settings/google")
    assert "mallory" in page.text


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("javascript:alert(1)", "invalid_return_url"),
        ("ftp://crm.example.com/", "invalid_return_url"),
        ("/relative/path", "invalid_return_url"),
        ("https://", "invalid_return_url"),
        ("https://user:pw@crm.example.com/", "invalid_return_url"),
        ('https://crm.example.com/"><script>', "invalid_return_url"),
        ("https://crm.example.com:99999/", "invalid_return_url"),
    ],
)
async def test_bad_return_url(pages: Pages, url: str, code: str) -> None:
    kim_id, _ = await pages.api.user(unique("kim"))
    resp = await link(pages, kim_id, return_url=url)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and "http" in error["remedy"]


async def test_too_long_label_and_url(pages: Pages) -> None:
    lee_id, _ = await pages.api.user(unique("lee"))
    long_label = await link(pages, lee_id, return_url=CRM, return_label="x" * 101)
    assert long_label.status_code == 422
    long_url = await link(pages, lee_id, return_url=CRM + "?" + "x" * 2000)
    assert long_url.status_code == 422


async def test_return_origins_setting(pages: Pages) -> None:
    settings = pages.api.app.state.settings
    pages.api.app.state.settings = settings.model_copy(
        update={"portal_return_origins": "https://crm.example.com:443, https://other.example"}
    )
    mia_id, _ = await pages.api.user(unique("mia"))
    assert (await link(pages, mia_id, return_url=CRM)).status_code == 201
    assert (await link(pages, mia_id, return_url="https://other.example/x")).status_code == 201
    refused = await link(pages, mia_id, return_url="https://evil.example/crm")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "return_url_not_allowed"
    assert "https://evil.example" in error["message"]
    assert "CALSYNC_PORTAL_RETURN_ORIGINS" in error["remedy"]
    http = await link(pages, mia_id, return_url="http://crm.example.com/")
    assert http.status_code == 422  # another scheme is another origin


async def test_store_consume_is_atomic(pages: Pages) -> None:
    """Two consumers of one token: exactly one wins (the UPDATE's condition decides)."""
    nora_id, _ = await pages.api.user(unique("nora"))
    async with pages.db.session() as s:
        token, _ = await store.create(s, pages.api.world.tenant_id, nora_id, timedelta(minutes=5))
        await s.commit()
    async with pages.db.session() as s:
        first = await store.consume(s, token)
        await s.commit()
    async with pages.db.session() as s:
        second = await store.consume(s, token)
        await s.commit()
    assert first is not None and first.user_id == nora_id and first.used_at is not None
    assert second is None


# framing


async def test_pages_refuse_framing_by_default(pages: Pages) -> None:
    _, _, browser = await pages.person(unique("olga"))
    for path in ("/settings/google", "/login", "/diagnostics", "/no-such-page"):
        resp = await browser.get(path, headers={"accept": "text/html"})
        assert resp.headers["content-security-policy"] == "frame-ancestors 'none'", path
        assert resp.headers["x-frame-options"] == "DENY", path
    cookie = browser.client.cookies.jar
    assert all(c.get_nonstandard_attr("SameSite", "lax").lower() == "lax" for c in cookie)
    api = await pages.api.call("GET", "/api/v1/users")
    assert "content-security-policy" not in api.headers and "x-frame-options" not in api.headers


@pytest.fixture
async def framed(
    emulator: Emulator,
    db: Database,
    keyring: crypto.Keyring,
) -> AsyncIterator[Pages]:
    """The pages as a CRM frames them: CALSYNC_FRAME_ANCESTORS set, https public URL."""
    register_client(emulator)
    settings = settings_for(
        emulator, frame_ancestors="https://crm.example.com https://*.crm.example"
    )
    app = build_app(settings, db, keyring)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://calsync.test") as client:
        world = await make_world(db, client)
        helper = Pages(Api(world, app, emulator), db)
        yield helper
        await helper.aclose()
        services: GoogleServices = app.state.google
        await services.aclose()


async def test_framing_by_listed_origins(framed: Pages) -> None:
    pia = unique("pia")
    pia_id, _ = await framed.api.user(pia)
    browser = framed.browser()
    opened = await browser.get(await new_link(framed, pia_id, return_url=CRM))
    assert opened.status_code == 303
    set_cookie = opened.headers["set-cookie"].lower()
    assert "samesite=none" in set_cookie and "secure" in set_cookie and "httponly" in set_cookie
    page = await browser.get("/settings/google")
    assert page.status_code == 200 and pia in page.text  # the cookie carries the session
    assert page.headers["content-security-policy"] == (
        "frame-ancestors https://crm.example.com https://*.crm.example"
    )
    assert "x-frame-options" not in page.headers
    lang = await browser.post(
        "/language",
        {"lang": "de", "next": "/settings/google"},
        csrf=await browser.token("/settings/google"),
    )
    lang_cookie = lang.headers["set-cookie"].lower()
    assert "samesite=none" in lang_cookie and "secure" in lang_cookie
    api = await framed.api.call("GET", "/api/v1/users")
    assert "content-security-policy" not in api.headers


async def test_framing_setting_is_checked(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="space-separated list of origins"):
        settings_for(emulator, frame_ancestors="https://a.example; script-src *")
    with pytest.raises(ValueError, match="space-separated"):
        settings_for(emulator, frame_ancestors="https://a.example, https://b.example")
    http = settings_for(emulator, frame_ancestors="https://a.example", public_url="http://x")
    assert not http.framed  # browsers drop SameSite=None without Secure: the cookie stays Lax
    assert settings_for(emulator, frame_ancestors="  ").frame_ancestors is None


async def test_portal_texts_are_translated(pages: Pages) -> None:
    uma_id, _ = await pages.api.user(unique("uma"))
    browser = pages.browser(**{"accept-language": "de"})
    path = await new_link(pages, uma_id, return_url=CRM, return_label="Acme CRM")
    await browser.get(path)
    page = await browser.get("/settings/google")
    assert "Zurück zu Acme CRM" in page.text
    again = await browser.get(path)
    assert again.status_code == 410
    assert "Dieser Link ist abgelaufen oder wurde schon verwendet" in again.text
    assert "erneut aus Acme CRM" in again.text


async def test_tokens_never_reach_the_log(pages: Pages) -> None:
    vic_id, _ = await pages.api.user(unique("vic"))
    path = await new_link(pages, vic_id)
    line = redact_text(f'127.0.0.1:4711 - "GET {path} HTTP/1.1" 303')
    assert path.removeprefix("/portal/") not in line
    assert f'"GET /portal/{MASK} HTTP/1.1"' in line
