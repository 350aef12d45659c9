"""Who may finish a Google sign-in, and with which Google account (issue 13 item 3).

A sign-in started from the pages finishes only in the browser that started it; one started
through the REST API (the CRM sends its user's browser, no calsync session) works once and for
ten minutes. The Google account that comes back must pass the company's policy, or nothing is
stored, nothing syncs, and the fresh grant is revoked unless a connection relies on it.
"""

from __future__ import annotations

import html
import uuid
from datetime import timedelta

from sqlalchemy import update

from calsync import i18n
from calsync.store import connections
from calsync.store.base import utcnow
from calsync.store.models import GoogleConnection, OAuthState

from .conftest import Browser, Pages

ALICE = "alice@example.com"
PAGE = "/settings/google"
WRONG_BROWSER = "This Google sign-in was started in another browser, so it was not accepted here."


def outsider() -> str:
    """A Google account outside the company (unique: the emulator outlives a test)."""
    return f"mallory-{uuid.uuid4().hex[:8]}@outside.example"


async def connect_link(browser: Browser) -> str:
    resp = await browser.post(PAGE + "/connect", csrf=await browser.token(PAGE))
    assert resp.status_code == 303, resp.text
    assert "calsync_oauth" in resp.headers.get("set-cookie", "")
    return resp.headers["location"]


def live_grants(pages: Pages, email: str) -> int:
    """Grants of `email` Google still honours (ends them: call last)."""
    return int(
        pages.api.emu.control("POST", f"/accounts/{email}/revoke-grants").json()["revoked_grants"]
    )


async def connection_of(pages: Pages, user_id: uuid.UUID) -> GoogleConnection | None:
    async with pages.db.session() as s:
        conn = await connections.for_user(s, user_id)
        await s.commit()
    return conn


async def test_a_sign_in_started_on_the_pages_finishes_only_in_that_browser(
    pages: Pages,
) -> None:
    pages.api.emu.account(ALICE)
    user_id, key, browser = await pages.person(ALICE)
    mallory = outsider()
    pages.api.emu.account(mallory)
    await pages.api.account_policy("any")  # even when any account may be linked
    callback = await pages.api.consent(await connect_link(browser), mallory)

    # the link opened in another browser (no cookie): refused, with what to do
    other = pages.browser()
    resp = await other.get(callback)
    assert resp.status_code == 400
    page = html.unescape(resp.text)
    assert WRONG_BROWSER in page and "press Connect Google there" in page
    # ... logged in there as someone else: the same
    _, _, bob = await pages.person("bob@example.com")
    assert (await bob.get(callback, headers={"Accept": "application/json"})).json()["error"][
        "code"
    ] == "google.oauth_state_invalid"  # the state was used up by the first attempt
    assert (await pages.api.status(user_id, key))["status"] == "not_connected"
    assert await connection_of(pages, user_id) is None

    # a second sign-in, with a cookie of another browser: refused as well
    callback = await pages.api.consent(await connect_link(browser), mallory)
    other.client.cookies.set("calsync_oauth", "x" * 43)
    resp = await other.get(callback, headers={"Accept": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "google.oauth_wrong_browser"
    assert await connection_of(pages, user_id) is None

    # in the browser that started it, it works
    callback = await pages.api.consent(await connect_link(browser), ALICE)
    done = await browser.get(callback)
    assert done.status_code == 303 and done.headers["location"] == PAGE
    assert (await pages.api.status(user_id, key))["google_email"] == ALICE


async def test_the_wrong_browser_page_is_translated(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    _, _, browser = await pages.person(ALICE)
    callback = await pages.api.consent(await connect_link(browser), ALICE)
    german = pages.browser(**{"Accept-Language": "de"})
    page = html.unescape((await german.get(callback)).text)
    translated = i18n.language("de").gettext(WRONG_BROWSER)
    assert translated != WRONG_BROWSER and translated in page


async def test_an_api_link_works_without_a_session_once_and_only_for_ten_minutes(
    pages: Pages,
) -> None:
    pages.api.emu.account(ALICE)
    user_id, key = await pages.api.user(ALICE)
    resp = await pages.api.call("POST", f"/api/v1/users/{user_id}/google/connect", key)
    assert resp.json()["expires_in"] == 600

    # expired: refused, nothing stored
    callback = await pages.api.consent(await pages.api.authorization_url(user_id, key), ALICE)
    async with pages.db.session() as s:
        await s.execute(update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    late = await pages.browser().get(callback)
    assert late.status_code == 400 and "no longer valid" in html.unescape(late.text)
    assert await connection_of(pages, user_id) is None

    # in time, in a browser without any calsync session: connected, once
    callback = await pages.api.consent(await pages.api.authorization_url(user_id, key), ALICE)
    crm_browser = pages.browser()
    assert (await crm_browser.get(callback)).status_code == 200
    assert (await pages.api.status(user_id, key))["status"] == "connected"
    again = await pages.browser().get(callback)
    assert again.status_code == 400


async def test_an_account_outside_the_company_is_refused_and_nothing_reaches_it(
    pages: Pages,
) -> None:
    """The reported attack: Alice's link completed as someone else's Google account. Her private
    appointment must not end up in that account's calendar."""
    pages.api.emu.account(ALICE)
    user_id, key = await pages.api.user(ALICE)
    await pages.api.activity(user_id, "Salary talk")
    mallory = outsider()
    pages.api.emu.account(mallory)
    callback = await pages.api.consent(await pages.api.authorization_url(user_id, key), mallory)
    stranger = pages.browser()
    resp = await stranger.get(callback)
    assert resp.status_code == 403
    page = html.unescape(resp.text)
    assert f"Your company does not allow linking the Google account {mallory}." in page
    assert f"sign in on Google's page with {ALICE}" in page and "Nothing was stored" in page
    assert await connection_of(pages, user_id) is None
    assert (await pages.api.status(user_id, key))["status"] == "not_connected"
    assert pages.api.events(mallory) == []
    assert live_grants(pages, mallory) == 0  # the fresh grant was revoked at Google


async def test_the_refusal_names_the_company_domains_and_is_translated(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    _, _, browser = await pages.person(ALICE)
    browser.client.headers["Accept-Language"] = "sv"
    await pages.api.account_policy(domains=["example.com", "example.org"])
    mallory = outsider()
    pages.api.emu.account(mallory)
    callback = await pages.api.consent(await connect_link(browser), mallory)
    resp = await browser.get(callback)
    assert resp.status_code == 303 and resp.headers["location"] == PAGE
    page = html.unescape((await browser.get(PAGE)).text)
    swedish = i18n.language("sv")
    refused = "Your company does not allow linking the Google account %(email)s."
    assert swedish.gettext(refused) != refused
    assert swedish.gettext(refused, email=mallory) in page
    assert f"{ALICE}, …@example.com, …@example.org" in page


async def test_the_policies(pages: Pages) -> None:
    """company: own e-mail or the company's domains; own_email: only the CRM e-mail; any."""
    colleague_account = f"alice-{uuid.uuid4().hex[:6]}@example.com"
    mallory = outsider()
    for email in (ALICE, colleague_account, mallory):
        pages.api.emu.account(email)
    user_id, key = await pages.api.user(ALICE)

    async def attempt(account: str) -> int:
        url = await pages.api.authorization_url(user_id, key)
        resp = await pages.api.callback(await pages.api.consent(url, account), json=True)
        if resp.status_code == 403:
            assert resp.json()["error"]["code"] == "google_account_refused"
        return resp.status_code

    assert await attempt(colleague_account) == 403  # company, no domains: own e-mail only
    await pages.api.account_policy(domains=["Example.COM"])
    assert await attempt(colleague_account) == 200
    assert await attempt(mallory) == 403
    await pages.api.account_policy("own_email")
    assert await attempt(colleague_account) == 403
    assert (await pages.api.status(user_id, key))["google_email"] == colleague_account
    assert await attempt(ALICE) == 200
    await pages.api.account_policy("any")
    assert await attempt(mallory) == 200


async def test_a_refused_account_that_another_connection_uses_keeps_its_grant(
    pages: Pages,
) -> None:
    """Revoking ends the whole grant at Google: a colleague's working connection to the same
    account must not lose its access because Alice tried it."""
    shared = outsider()
    pages.api.emu.account(ALICE)
    pages.api.emu.account(shared)
    bob_id, bob_key = await pages.api.user("bob@example.com")
    alice_id, alice_key = await pages.api.user(ALICE)
    await pages.api.account_policy("any")
    await pages.api.connect(bob_id, shared, bob_key)
    await pages.api.account_policy("company")
    url = await pages.api.authorization_url(alice_id, alice_key)
    resp = await pages.api.callback(await pages.api.consent(url, shared), json=True)
    assert resp.status_code == 403
    assert (await pages.api.sync(bob_id, bob_key)).json()["outcome"] == "ok"
    assert live_grants(pages, shared) >= 1


async def test_the_policy_settings_are_checked(pages: Pages) -> None:
    resp = await pages.api.call("GET", "/api/v1/tenant/settings")
    assert resp.json()["google_account_policy"] == "company"
    assert resp.json()["google_domains"] == []
    await pages.api.account_policy(domains=["@example.com", "example.org."])
    for body, field in (
        ({"google_domains": ["example.com", "not a domain"]}, "google_domains"),
        ({"google_domains": ["localhost"]}, "google_domains"),
        ({"google_account_policy": "everyone"}, "google_account_policy"),
        ({"google_account_policy": None}, "google_account_policy"),
    ):
        resp = await pages.api.call("PATCH", "/api/v1/tenant/settings", json=body)
        assert resp.status_code == 422, resp.text
        assert field in resp.text
    # nothing was replaced by the bad values
    resp = await pages.api.call("GET", "/api/v1/tenant/settings")
    assert resp.json()["google_domains"] == ["example.com", "example.org"]
    assert resp.json()["google_account_policy"] == "company"


async def test_status_and_page_show_the_linked_account_and_when_it_changed(
    pages: Pages,
) -> None:
    second = f"alice-{uuid.uuid4().hex[:6]}@example.com"
    pages.api.emu.account(ALICE)
    pages.api.emu.account(second)
    user_id, key, browser = await pages.person(ALICE)
    assert (await pages.api.status(user_id, key))["linked_at"] is None
    await pages.connect(browser, ALICE)
    first = await pages.api.status(user_id, key)
    assert first["google_email"] == ALICE and first["linked_at"] is not None
    page = html.unescape((await browser.get(PAGE)).text)
    assert "Linked since" in page

    # the same account again: still linked since then
    await pages.connect(browser, ALICE)
    assert (await pages.api.status(user_id, key))["linked_at"] == first["linked_at"]
    # another account: linked now
    await pages.api.account_policy(domains=["example.com"])
    await pages.connect(browser, second)
    changed = await pages.api.status(user_id, key)
    assert changed["google_email"] == second and changed["linked_at"] > first["linked_at"]


async def test_the_admin_page_sets_the_policy(pages: Pages) -> None:
    _, _, admin = await pages.person("boss@example.com", role="admin")
    page = await admin.get("/admin/integrations")
    assert 'name="google_account_policy" value="company" checked' in page.text
    csrf = await admin.token("/admin/integrations")
    resp = await admin.post(
        "/admin/integrations/accounts",
        {"google_account_policy": "company", "google_domains": "example.com\nExample.org"},
        csrf=csrf,
    )
    assert resp.status_code == 303
    page = html.unescape((await admin.get("/admin/integrations")).text)
    assert "The Google account policy is saved." in page
    assert "example.com\nexample.org</textarea>" in page
    # a bad domain: said which, nothing changed
    resp = await admin.post(
        "/admin/integrations/accounts",
        {"google_account_policy": "any", "google_domains": "example.com\nnot_a_domain"},
        csrf=await admin.token("/admin/integrations"),
    )
    page = html.unescape((await admin.get("/admin/integrations")).text)
    assert "'not_a_domain' is not a domain name" in page
    settings = (await pages.api.call("GET", "/api/v1/tenant/settings")).json()
    assert settings["google_account_policy"] == "company"
    assert settings["google_domains"] == ["example.com", "example.org"]
