"""Login security (issue 13, item 4): failed logins throttled per account and per address
(429 + Retry-After, durable in the database), scrypt off the event loop, server-side sessions
that logout and password changes end; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from calsync.store import users, web_sessions
from calsync.store.models import LoginFailure, WebSession
from calsync.web.pages import login as login_module

from .conftest import PASSWORD, Browser, Pages, csrf_of, set_password

_addresses = itertools.count(1)


def fresh_address() -> str:
    """A client address of this test alone (the database is shared by the session's tests)."""
    return f"10.{uuid.uuid4().int % 250}.{next(_addresses) % 250}.{uuid.uuid4().int % 250}"


def browser_from(pages: Pages, address: str) -> Browser:
    transport = httpx.ASGITransport(app=pages.api.app, client=(address, 4711))
    client = httpx.AsyncClient(transport=transport, base_url="https://calsync.test")
    pages._clients.append(client)
    return Browser(pages.api, client)


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def person(pages: Pages, address: str) -> tuple[str, Browser]:
    email = unique_email()
    await pages.api.user(email)
    await set_password(pages.db, pages.api.world, email)
    return email, browser_from(pages, address)


async def user_id_of(pages: Pages, email: str) -> uuid.UUID:
    async with pages.db.session() as s:
        found = await users.by_email(s, pages.api.world.tenant_id, email)
    assert found is not None
    return found.id


async def test_an_account_is_throttled_after_five_failures(pages: Pages) -> None:
    email, browser = await person(pages, fresh_address())
    for _ in range(5):
        assert (await browser.login(email, "wrong password")).status_code == 401
    refused = await browser.login(email, "wrong password")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 900
    assert "Too many failed logins" in refused.text and "15 minutes" in refused.text
    # even the right password waits: the guesser cannot learn it
    assert (await browser.login(email, PASSWORD)).status_code == 429
    # from another address, too: the limit is the account's
    elsewhere = browser_from(pages, fresh_address())
    assert (await elsewhere.login(email, PASSWORD)).status_code == 429
    # translated, with the wait
    german = browser_from(pages, fresh_address())
    german.client.headers["Accept-Language"] = "de"
    page = await german.login(email, PASSWORD)
    assert page.status_code == 429 and "Zu viele fehlgeschlagene Anmeldungen" in page.text


async def test_a_success_resets_the_accounts_count(pages: Pages) -> None:
    email, browser = await person(pages, fresh_address())
    for _ in range(4):
        assert (await browser.login(email, "wrong password")).status_code == 401
    assert (await browser.login(email, PASSWORD)).status_code == 303
    for _ in range(4):
        assert (await browser.login(email, "wrong password")).status_code == 401


async def test_an_address_is_throttled_after_twenty_failures(pages: Pages) -> None:
    address = fresh_address()
    browser = browser_from(pages, address)
    for _ in range(20):  # a different account each time: only the address adds up
        assert (await browser.login(unique_email(), "wrong password")).status_code == 401
    email, same_place = await person(pages, address)
    refused = await same_place.login(email, PASSWORD)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    # the same account from another address is fine
    assert (await browser_from(pages, fresh_address()).login(email, PASSWORD)).status_code == 303
    async with pages.db.session() as s:
        stored = await s.scalar(
            select(func.count()).where(LoginFailure.kind == "address", LoginFailure.key == address)
        )
    assert stored == 20  # durable: every web process counts the same rows


async def test_parallel_guesses_count_in_full(pages: Pages) -> None:
    email, browser = await person(pages, fresh_address())
    token = await browser.token()
    company = await browser.api_company()
    data = {"csrf": token, "email": email, "password": "wrong password", "company": company}
    answers = await asyncio.gather(*(browser.client.post("/login", data=data) for _ in range(12)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {401, 429}
    assert codes.count(401) <= 5, codes  # no more passwords checked than the limit
    async with pages.db.session() as s:
        stored = await s.scalar(
            select(func.count()).where(LoginFailure.kind == "account", LoginFailure.key == email)
        )
    assert stored == codes.count(401)  # and every one checked counts


async def test_the_password_is_checked_off_the_event_loop(
    pages: Pages, monkeypatch: pytest.MonkeyPatch
) -> None:
    email, browser = await person(pages, fresh_address())
    threads: list[threading.Thread] = []
    original = login_module.verify_password

    def spy(password: str, stored: str | None) -> bool:
        threads.append(threading.current_thread())
        return original(password, stored)

    monkeypatch.setattr(login_module, "verify_password", spy)
    assert (await browser.login(email, PASSWORD)).status_code == 303
    assert (await browser.login(unique_email(), PASSWORD)).status_code == 401  # nobody: too
    assert len(threads) == 2
    assert all(t is not threading.main_thread() for t in threads)


async def test_a_cookie_from_before_logout_no_longer_works(pages: Pages) -> None:
    email, browser = await person(pages, fresh_address())
    assert (await browser.login(email, PASSWORD)).status_code == 303
    captured = dict(browser.client.cookies)
    assert (await browser.get("/calendar")).status_code == 200
    token = csrf_of((await browser.get("/calendar")).text)
    assert (await browser.post("/logout", csrf=token)).status_code == 303

    thief = browser_from(pages, fresh_address())
    for name, value in captured.items():
        thief.client.cookies.set(name, value)
    resp = await thief.get("/calendar")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")


async def test_a_password_change_ends_every_session_of_the_user(pages: Pages) -> None:
    email, laptop = await person(pages, fresh_address())
    phone = browser_from(pages, fresh_address())
    other_email, other = await person(pages, fresh_address())
    for browser, who in ((laptop, email), (phone, email), (other, other_email)):
        assert (await browser.login(who, PASSWORD)).status_code == 303
        assert (await browser.get("/calendar")).status_code == 200
    user_id = await user_id_of(pages, email)
    async with pages.db.session() as s:
        assert await web_sessions.end_all(s, user_id) == 2  # what `user set-password` calls
        await s.commit()
    assert (await laptop.get("/calendar")).status_code == 303
    assert (await phone.get("/calendar")).status_code == 303
    assert (await other.get("/calendar")).status_code == 200  # someone else's stays


async def test_a_login_is_a_server_side_session(pages: Pages) -> None:
    email, browser = await person(pages, fresh_address())
    assert (await browser.login(email, PASSWORD)).status_code == 303
    user_id = await user_id_of(pages, email)
    async with pages.db.session() as s:
        rows = (await s.scalars(select(WebSession).where(WebSession.user_id == user_id))).all()
    assert len(rows) == 1
    assert (rows[0].expires_at - rows[0].created_at).total_seconds() == 12 * 3600
