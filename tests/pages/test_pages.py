"""The pages over HTTP (httpx against the app): login, CSRF, escaping, languages, module off,
the settings actions; on SQLite and PostgreSQL."""

from __future__ import annotations

from calsync import i18n
from calsync.store import tenants
from calsync.web import catalogs

from .conftest import PASSWORD, Pages, csrf_of

ALICE = "alice@example.com"


async def test_login_logout_and_the_pages(pages: Pages) -> None:
    await pages.api.user(ALICE)
    from .conftest import set_password

    await set_password(pages.db, pages.api.world, ALICE)
    browser = pages.browser()
    resp = await browser.get("/settings/google")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/settings/google"
    page = await browser.get("/login?next=/calendar")
    assert page.status_code == 200 and "<title>Log in · calsync</title>" in page.text

    bad = await browser.login(ALICE, "wrong password")
    assert bad.status_code == 401 and "wrong" in bad.text
    nobody = await browser.login("nobody@example.com")
    assert nobody.status_code == 401
    # a login link never sends anyone to another site
    company = await browser.api_company()
    resp = await browser.post(
        "/login",
        {"email": ALICE, "password": PASSWORD, "company": company, "next": "//evil.example"},
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/settings/google"

    for path in ("/settings/google", "/calendar", "/diagnostics"):
        page = await browser.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "<h1>" in page.text
    # admins only
    assert (await browser.get("/admin/integrations")).status_code == 403

    token = csrf_of((await browser.get("/calendar")).text)
    resp = await browser.post("/logout", csrf=token)
    assert resp.status_code == 303
    assert (await browser.get("/calendar")).status_code == 303


async def test_every_form_needs_the_sessions_csrf_token(pages: Pages) -> None:
    _, _, browser = await pages.person(ALICE, role="admin")
    forms = [
        "/settings/google",
        "/settings/google/connect",
        "/settings/google/disconnect",
        "/settings/google/sync",
        "/settings/google/resume",
        "/admin/integrations/module",
        "/admin/integrations/settings",
        "/admin/integrations/service-account",
        "/admin/integrations/service-account/test",
        "/logout",
        "/language",
        "/login",
    ]
    for path in forms:
        for token in (None, "forged-token"):
            data = {"calendar_module_enabled": "", "lang": "de"}
            if token is not None:
                data["csrf"] = token
            resp = await browser.client.post(path, data=data)
            assert resp.status_code == 403, (path, token, resp.status_code)
            assert "The form has expired" in resp.text
    # nothing changed: the module is still on, still logged in
    async with pages.db.session() as s:
        tenant = await tenants.get(s, pages.api.world.tenant_id)
        assert tenant is not None and tenant.calendar_module_enabled
    assert (await browser.get("/calendar")).status_code == 200
    # another session's token is no good either
    other = pages.browser()
    other_token = await other.token()
    resp = await browser.post("/admin/integrations/module", {}, csrf=other_token)
    assert resp.status_code == 403


async def test_google_titles_are_escaped(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    user_id, _, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    pages.api.insert_event(ALICE, '<script>alert("x")</script> & <b>bold</b>', days=0)
    result = await pages.api.sync(user_id)
    assert result.status_code == 200 and result.json()["outcome"] == "ok", result.text
    page = await browser.get("/calendar")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<b>bold" not in page.text
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page.text
    )


async def test_language_from_the_browser_and_the_switcher(pages: Pages) -> None:
    german = pages.browser(**{"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    page = await german.get("/login")
    assert '<html lang="de">' in page.text and "Anmelden" in page.text
    assert page.headers["content-language"] == "de"
    norwegian = pages.browser(**{"Accept-Language": "nb-NO,no;q=0.9"})
    assert '<html lang="nb">' in (await norwegian.get("/login")).text
    for header, code in (("sv-SE", "sv"), ("fi", "fi"), ("no", "nb"), ("fr-FR, *;q=0.1", "en")):
        resp = await pages.browser(**{"Accept-Language": header}).get("/login")
        assert f'<html lang="{code}">' in resp.text, header
    # the switcher's cookie wins over the browser
    resp = await german.post("/language", {"lang": "sv", "next": "/login"})
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    assert '<html lang="sv">' in (await german.get("/login")).text
    # error pages too
    resp = await german.client.post("/language", data={"lang": "fi"})
    assert resp.status_code == 403 and '<html lang="sv">' in resp.text


def test_negotiation_rules() -> None:
    assert i18n.negotiate(None, "de-CH,fr;q=0.8") == "de"
    assert i18n.negotiate(None, "fr;q=1, fi;q=0.5, sv;q=0.7") == "sv"
    assert i18n.negotiate(None, "nn-NO") == "nb"
    assert i18n.negotiate(None, "de;q=0, sv;q=0.1") == "sv"
    assert i18n.negotiate(None, "garbage;;;,") == "en"
    assert i18n.negotiate("fi", "de") == "fi"
    assert i18n.negotiate("xx", "de") == "de"
    assert i18n.negotiate(None, None) == "en"


def test_every_message_is_translated() -> None:
    for code in i18n.LANGUAGES:
        if code != i18n.DEFAULT:
            assert catalogs.missing(code) == [], code


def test_the_pages_messages_are_all_in_the_catalogue() -> None:
    """Every message the templates and page code use is in messages.pot (error texts that
    other modules add later show in English until `python -m calsync.web.catalogs` is run)."""
    committed = {m.id for m in catalogs.template() if m.id}
    for message in catalogs.extract():
        where = {path for path, _ in message.locations}
        if message.id and not any(p.startswith("calsync/google/") for p in where):
            assert message.id in committed, message.id


def test_placeholders_survive_translation() -> None:
    import re

    for code in i18n.LANGUAGES:
        lang = i18n.language(code)
        for message in catalogs.template():
            if not message.id or not isinstance(message.id, str):
                continue
            wanted = set(re.findall(r"%\((\w+)\)s", message.id))
            got = set(re.findall(r"%\((\w+)\)s", lang.translations.gettext(message.id)))
            assert wanted == got, (code, message.id)


async def test_module_off_answers_clearly(pages: Pages) -> None:
    user_id, key, browser = await pages.person(ALICE, role="admin")
    resp = await browser.post(
        "/admin/integrations/module", {}, csrf=await browser.token("/admin/integrations")
    )
    assert resp.status_code == 303
    page = await browser.get("/settings/google")
    assert page.status_code == 403
    assert "Enable the Calendar module" in page.text
    german = await browser.get("/settings/google", headers={"Accept-Language": "de"})
    assert german.status_code == 403 and "Kalender-Modul" in german.text
    api = await pages.api.call("POST", f"/api/v1/users/{user_id}/google/connect", key)
    assert api.status_code == 403 and api.json()["error"]["code"] == "calendar_module_disabled"
    # diagnostics still work and say so
    diag = await browser.get("/diagnostics")
    assert diag.status_code == 200
    assert 'data-check="module"' in diag.text and "status-fail" in diag.text
