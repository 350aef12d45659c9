"""Where Google sends the browser back (GET /oauth/google/callback): with a login session, to
Settings → Google Calendar with the result as a notice; without one, a page in the browser's
language that links back. JSON clients keep their JSON answers."""

from __future__ import annotations

import html
import uuid

from calsync import i18n

from .conftest import Browser, Pages

ALICE = "alice@example.com"
ALICE_OTHER = "alice.private@example.com"
PAGE = "/settings/google"


def german(text: str) -> str:
    return i18n.language("de").gettext(text)


async def consent_from_the_page(pages: Pages, browser: Browser, account: str) -> str:
    """Press Connect Google on the settings page and allow on Google's: the callback path."""
    resp = await browser.post(PAGE + "/connect", csrf=await browser.token(PAGE))
    assert resp.status_code == 303, resp.text
    return await pages.api.consent(resp.headers["location"], account)


async def consent_from_the_api(pages: Pages, user_id: uuid.UUID, account: str) -> str:
    url = await pages.api.authorization_url(user_id)
    return await pages.api.consent(url, account)


async def test_with_a_session_the_settings_page_shows_the_result(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    pages.api.emu.account(ALICE_OTHER)
    user_id, key, browser = await pages.person(ALICE)
    callback = await consent_from_the_page(pages, browser, ALICE)
    resp = await browser.get(callback)
    assert resp.status_code == 303 and resp.headers["location"] == PAGE
    page = await browser.get(PAGE)
    assert page.status_code == 200
    assert "Google Calendar is now connected to alice@example.com." in page.text
    assert 'class="flash ok"' in page.text
    assert (await pages.api.status(user_id, key))["status"] == "connected"
    # the notice is shown once
    assert "is now connected to" not in (await browser.get(PAGE)).text

    # another Google account (of the company's domain): said so, and what happens to the old one
    await pages.api.account_policy(domains=["example.com"])
    resp = await browser.get(await consent_from_the_page(pages, browser, ALICE_OTHER))
    assert resp.status_code == 303 and resp.headers["location"] == PAGE
    page = html.unescape((await browser.get(PAGE)).text)
    assert "now connected to alice.private@example.com" in page
    assert (
        "This is a different Google account than before (alice@example.com): calsync no longer "
        "syncs with alice@example.com." in page
    )
    assert "never copied to alice.private@example.com" in page


async def test_with_a_session_a_failure_shows_message_and_remedy_translated(
    pages: Pages,
) -> None:
    pages.api.emu.account(ALICE)
    _, _, browser = await pages.person(ALICE)
    browser.client.headers["Accept-Language"] = "de"
    callback = await consent_from_the_page(pages, browser, ALICE)
    assert (await browser.get(callback)).status_code == 303
    await browser.get(PAGE)  # the success notice goes
    again = await browser.get(callback)  # the state was used already
    assert again.status_code == 303 and again.headers["location"] == PAGE
    page = html.unescape((await browser.get(PAGE)).text)
    message = german(
        "This Google sign-in link is no longer valid (already used, expired or for another user)."
    )
    remedy = german(
        "Start again from Settings → Google Calendar → Connect Google; each link works only once."
    )
    assert message.startswith("Dieser") and message in page
    assert remedy in page and 'class="flash error"' in page


async def test_without_a_session_a_page_in_the_browsers_language(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    user_id, _ = await pages.api.user(ALICE)
    callback = await consent_from_the_api(pages, user_id, ALICE)
    browser = pages.browser(**{"Accept-Language": "de-DE,de;q=0.9"})
    resp = await browser.get(callback)
    assert resp.status_code == 200, resp.text
    page = html.unescape(resp.text)
    assert '<html lang="de">' in page and resp.headers["content-language"] == "de"
    assert german("Connected as %(email)s") % {"email": ALICE} in page
    assert "Verbunden als alice@example.com" in page
    assert f'href="{PAGE}"' in page and german("Go to your Google Calendar settings") in page
    assert 'href="/login?next=/settings/google"' in page
    assert "Connected as" not in page and "close this window" not in page


async def test_without_a_session_a_failure_is_translated_and_links_back(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    browser = pages.browser(**{"Accept-Language": "de"})
    resp = await browser.get("/oauth/google/callback?state=forged-state&code=whatever")
    assert resp.status_code == 400
    page = html.unescape(resp.text)
    assert german("Google Calendar was not connected") in page
    assert (
        german(
            "This Google sign-in link is no longer valid (already used, expired or for another "
            "user)."
        )
        in page
    )
    assert (
        german(
            "Start again from Settings → Google Calendar → Connect Google; each link works only once."
        )
        in page
        and german("What to do:") in page
    )
    assert f'href="{PAGE}"' in page

    # cancelled on Google's page, in Norwegian
    user_id, _ = await pages.api.user(ALICE)
    url = await pages.api.authorization_url(user_id)
    callback = await pages.api.consent(url, ALICE, "deny")
    norwegian = pages.browser(**{"Accept-Language": "nb"})
    resp = await norwegian.get(callback)
    assert resp.status_code == 400
    page = html.unescape(resp.text)
    cancelled = "You cancelled on Google's page, so Google Calendar was not connected."
    assert i18n.language("nb").gettext(cancelled) != cancelled
    assert i18n.language("nb").gettext(cancelled) in page


async def test_a_session_of_another_user_gets_the_page_not_their_settings(pages: Pages) -> None:
    """An admin who started Ann's connection from the API and finishes it in a browser logged in
    as someone else: the page says who was connected; the admin's settings are not touched."""
    pages.api.emu.account(ALICE)
    ann_id, _ = await pages.api.user(ALICE)
    _, _, bob = await pages.person("bob@example.com")
    callback = await consent_from_the_api(pages, ann_id, ALICE)
    resp = await bob.get(callback)
    assert resp.status_code == 200, resp.text
    assert "Connected as alice@example.com" in resp.text
    assert "is now connected to" not in (await bob.get(PAGE)).text


async def test_json_answers_stay(pages: Pages) -> None:
    pages.api.emu.account(ALICE)
    user_id, _, browser = await pages.person(ALICE)
    callback = await consent_from_the_api(pages, user_id, ALICE)
    resp = await browser.get(callback, headers={"Accept": "application/json"})
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "connected",
        "user_id": str(user_id),
        "google_email": ALICE,
        "account_changed": False,
        "previous_google_email": None,
    }
    again = await browser.get(callback, headers={"Accept": "application/json"})
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "google.oauth_state_invalid"
