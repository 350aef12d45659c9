"""The settings page tells the truth (issue 12.2, 12.6, 14.4): a paused calendar with its two
ways out, a Save that leaves nothing to sync or moves CRM entries is asked about first, the
sync state, calendar names and unticked calendars in the history, "Finished with issues"
explained, the conflict log, a one-shot Sync now result. SQLite and PostgreSQL."""

from __future__ import annotations

import html
import uuid

from calsync.store import bindings, connections, runs

from .conftest import Browser, Pages, csrf_of

ALICE = "alice@example.com"
N = 24


async def connected(pages: Pages) -> tuple[uuid.UUID, str, Browser, str]:
    pages.api.emu.account(ALICE, "Alice")
    crm = str(
        pages.api.emu.control("POST", f"/accounts/{ALICE}/calendars", {"summary": "CRM"}).json()[
            "id"
        ]
    )
    user_id, key, browser = await pages.person(ALICE)
    await pages.connect(browser, ALICE)
    return user_id, key, browser, crm


async def page_text(browser: Browser, **headers: str) -> str:
    resp = await browser.get("/settings/google", headers=headers)
    assert resp.status_code == 200, resp.text
    return html.unescape(resp.text)


async def save(browser: Browser, data: dict[str, object]) -> str:
    token = csrf_of((await browser.get("/settings/google")).text)
    resp = await browser.post("/settings/google", data, csrf=token)
    if resp.status_code == 303:
        return await page_text(browser)
    assert resp.status_code == 200, resp.text
    return html.unescape(resp.text)


async def test_a_paused_calendar_is_resumed_from_the_page(pages: Pages) -> None:
    user_id, key, browser, _ = await connected(pages)
    api = pages.api
    ids = [api.insert_event(ALICE, f"Visit {i}", days=1 + i % 5) for i in range(N)]
    assert (await api.sync(user_id, key)).json()["outcome"] == "ok"
    with api.google(ALICE) as g:
        for event_id in ids:
            g.delete(f"/calendars/{ALICE}/events/{event_id}")
    assert (await api.sync(user_id, key)).json()["outcome"] == "paused"

    text = await page_text(browser)
    assert "Sync is paused" in text, text[text.find("status-heading") :][:3000]
    assert f"Google reported {N} synced entries as deleted" in text, text[
        text.find("status-heading") :
    ][:3000]
    assert "Apply the deletions" in text and "Resume: I restored them" in text
    german = await page_text(browser, **{"Accept-Language": "de"})
    assert "Löschungen übernehmen" in german

    binding_id = (await api.call("GET", f"/api/v1/users/{user_id}/google/calendars", key)).json()[
        "calendars"
    ][0]["id"]
    token = csrf_of((await browser.get("/settings/google")).text)
    bad = await browser.post(
        "/settings/google/resume", {"binding_id": "nope", "choice": "deletions"}, csrf=token
    )
    assert bad.status_code == 303
    assert "Some of the values are not valid" in await page_text(browser)
    resp = await browser.post(
        "/settings/google/resume", {"binding_id": binding_id, "choice": "deletions"}, csrf=token
    )
    assert resp.status_code == 303
    text = await page_text(browser)
    assert "Resumed: the sync that starts now applies the deletions." in text
    await api.services.drain()
    assert await api.activities(user_id) == []
    text = await page_text(browser)
    assert "Apply the deletions" not in text and "Sync is on." in text


async def test_unticking_everything_is_asked_about_and_says_nothing_to_do(pages: Pages) -> None:
    user_id, key, browser, _ = await connected(pages)
    await pages.api.activity(user_id, "Budget review")
    assert (await pages.api.sync(user_id, key)).json()["outcome"] == "ok"

    form = {"enabled": "on", "calendars": "shown", "export": "", "direction": "two_way"}
    text = await save(browser, form)
    assert "Before you save" in text and "has nothing to do" in text and "Save anyway" in text
    assert (await pages.api.status(user_id, key))["import_calendar_ids"] == [ALICE]  # unchanged
    text = await save(browser, {**form, "confirm": "yes"})
    assert "Your settings are saved." in text
    assert "Sync has nothing to do: no calendar is chosen." in text
    assert "Sync is on." not in text
    assert "Never" not in text  # the last sync and the history stay
    assert "no longer syncing" in text


async def test_moving_crm_entries_is_asked_about_with_the_count(pages: Pages) -> None:
    user_id, key, browser, crm = await connected(pages)
    await pages.api.activity(user_id, "Budget review")
    await pages.api.activity(user_id, "Customer call", days=4)
    assert (await pages.api.sync(user_id, key)).json()["outcome"] == "ok"
    form = {"enabled": "on", "calendars": "shown", "import": ALICE, "export": crm}
    text = await save(browser, form)
    assert f"2 entries made in the CRM will move from “{ALICE}” to “CRM”" in text
    norsk = await browser.post(
        "/settings/google",
        form,
        csrf=csrf_of((await browser.get("/settings/google")).text),
        headers={"Accept-Language": "nb"},
    )
    assert "Lagre likevel" in norsk.text
    text = await save(browser, {**form, "confirm": "yes"})
    assert "Your settings are saved." in text
    assert (await pages.api.status(user_id, key))["export_calendar_id"] == crm


async def test_history_names_calendars_and_explains_partial(pages: Pages) -> None:
    user_id, _, browser, _ = await connected(pages)
    async with pages.db.session() as s:
        conn = await connections.for_user(s, user_id)
        assert conn is not None
        (binding,) = await bindings.for_connection(s, conn.id)
        binding.summary = "Sales team"
        run = await runs.start(
            s, pages.api.world.tenant_id, binding.id, trigger="poll", full_sync=False
        )
        await runs.finish(s, run.id, outcome="partial", counts={"issues": 1}, full_sync=False)
        runs.record_conflict(
            s,
            pages.api.world.tenant_id,
            binding.id,
            run.id,
            field="summary",
            base=["Review"],
            crm=["Budget review"],
            google=["Budget meeting"],
            decision="google",
            policy="latest_wins",
            activity_id=None,
            link_id=None,
            google_event_id=None,
        )
        await s.commit()
    text = await page_text(browser)
    assert "Sales team" in text and "Finished with issues" in text
    assert "“Finished with issues” means" in text and 'href="#issues"' in text
    assert "Recent conflicts" in text
    assert "Budget review" in text and "Budget meeting" in text and "Google's value" in text
    finnish = await page_text(browser, **{"Accept-Language": "fi"})
    assert "Viimeaikaiset ristiriidat" in finnish


async def test_the_sync_now_result_shows_once(pages: Pages) -> None:
    _, _, browser, _ = await connected(pages)
    token = csrf_of((await browser.get("/settings/google")).text)
    assert (await browser.post("/settings/google/sync", csrf=token)).status_code == 303
    await pages.api.services.drain()
    assert "Sync now finished:" in await page_text(browser)
    assert "Sync now finished:" not in await page_text(browser)


async def test_a_calendar_under_suspicion_is_explained_with_nothing_to_do(pages: Pages) -> None:
    """A calendar whose channels missed a change (or the echo of calsync's write) is shown:
    what happened, that calsync polls it meanwhile (the tenant's interval), and that the user
    need not do anything — in every language; nothing is shown while a channel of it is
    trusted (one suspect twin, the other delivering: changes still arrive in real time)."""
    user_id, _, browser, _ = await connected(pages)
    text = await page_text(browser)
    assert "Google stopped telling calsync" not in text

    async def suspect(*columns: str) -> None:
        async with pages.api.world.db.session() as s:
            conn = await connections.for_user(s, user_id)
            assert conn is not None
            (binding,) = [b for b in await bindings.for_connection(s, conn.id) if b.enabled]
            assert binding.channel_id and binding.twin_channel_id  # twins, the default
            for column in columns:
                setattr(binding, column, binding.created_at)
            await s.commit()

    await suspect("channel_suspect_since")
    assert "Google stopped telling calsync" not in await page_text(browser)
    await suspect("channel_suspect_since", "twin_channel_suspect_since")
    text = await page_text(browser)
    start = text.find("channel-suspect")
    assert start > 0, text[text.find("status-heading") :][:3000]
    notice = text[start:][:1200]
    assert "Google stopped telling calsync about changes to" in notice
    assert "calsync checks this calendar itself every 5 minutes" in notice
    assert "What to do:" in notice and "goes away by itself" in notice
    norsk = await page_text(browser, **{"accept-language": "nb"})
    assert "Google sluttet å varsle calsync om endringer i" in norsk
    assert "hvert 5. minutt" in norsk
