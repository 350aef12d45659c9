"""Every page in nb, sv, fi and de: every catalogue message translated, plurals through
ngettext with each language's Plural-Forms, and no English left on the rendered pages
(activity type names, outcome words, the stored "Busy" subject included)."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from babel.messages.pofile import read_po

from calsync import doctor, i18n
from calsync.web import catalogs
from calsync.web.pages import common
from tests.pages.conftest import Browser, Pages

OTHERS = ("nb", "sv", "fi", "de")
ALICE = "alice@example.com"
ZONE = "Europe/Oslo"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
PAGES = ("/settings/google", "/calendar", "/diagnostics", "/admin/integrations")


def _catalog(code: str) -> Any:
    po = i18n.LOCALE_DIR / code / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    with po.open("rb") as handle:
        return read_po(handle, locale=code, domain=i18n.DOMAIN)


def test_committed_template_is_what_extraction_finds() -> None:
    """A message added in code but not extracted (python -m calsync.web.catalogs) fails here."""
    found = {m.id for m in catalogs.extract() if m.id}
    committed = {m.id for m in catalogs.template() if m.id}
    assert found - committed == set(), "run python -m calsync.web.catalogs"
    assert committed - found == set(), "stale messages in messages.pot"


@pytest.mark.parametrize("code", OTHERS)
def test_every_message_is_translated(code: str) -> None:
    assert catalogs.missing(code) == []
    catalog = _catalog(code)
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        # the same placeholders in every form (a lost %(num)s would show the wrong number)
        wanted = set(PLACEHOLDER.findall(ids[-1])) - {"num"}
        for text in texts:
            assert set(PLACEHOLDER.findall(text)) - {"num"} == wanted, (code, ids[0], text)


@pytest.mark.parametrize("code", OTHERS)
def test_plurals_follow_each_language(code: str) -> None:
    catalog = _catalog(code)
    assert catalog.num_plurals == 2 and catalog.plural_expr.replace(" ", "") == "(n!=1)"
    plural = [m for m in catalog if m.id and isinstance(m.id, tuple)]
    assert len(plural) >= 10
    lang = i18n.language(code)
    one = lang.ngettext(
        "Seen once, last %(when)s", "Seen %(num)s times, last %(when)s", 1, when="x"
    )
    three = lang.ngettext(
        "Seen once, last %(when)s", "Seen %(num)s times, last %(when)s", 3, when="x"
    )
    assert one != three and "3" in three and "3" not in one


def test_no_message_writes_plurals_by_hand() -> None:
    """ "calendar(s)", "kalender(e)", "Kanal/Kanäle": plurals go through ngettext."""
    hand = re.compile(r"\w\((s|e|er|n|a|ar|en)\)|Kanal/Kanäle|kalender/kalendrar|annan/andra")
    for message in catalogs.template():
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        for text in ids:
            assert not re.search(r"\w\(s\)", text or ""), text
    for code in OTHERS:
        for message in _catalog(code):
            texts = message.string if isinstance(message.string, tuple) else (message.string,)
            for text in texts:
                if message.id and text:
                    assert not hand.search(text), (code, text)


def test_doctor_plurals_and_outcome_words() -> None:
    """The diagnostics page's texts: one/many forms, the outcome in words, times in the
    user's zone; the English support report keeps its own rendering."""
    text = doctor.Text.counted(
        i18n.Nn_(
            "The last sync, %(num)s minute ago: %(outcome)s.",
            "The last sync, %(num)s minutes ago: %(outcome)s.",
        ),
        1,
        {"outcome": "needs_reauth"},
    )
    assert text.render() == "The last sync, 1 minute ago: needs_reauth."
    i18n.activate("nb")
    try:
        shown = common.tr_text(text)
        assert shown == "Siste synkronisering for 1 minutt siden: Må kobles til på nytt."
        many = doctor.Text.counted((text.msgid, text.plural or ""), 5, {"outcome": "ok"})
        assert common.tr_text(many) == "Siste synkronisering for 5 minutter siden: Ferdig."
        i18n.activate("de")
        when = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
        i18n.activate_zone("Europe/Berlin")
        expires = doctor.Text(
            i18n.N_("The push channel for %(calendar)s expires at %(when)s."),
            {"calendar": "Arbeit", "when": when},
        )
        assert "13:00" in common.tr_text(expires)
        assert "2026-01-15T12:00:00+00:00" in expires.render()
        assert common.type_name("Project task") == "Projektaufgabe"
        assert common.type_name("Site visit") == "Site visit"  # a company's own type stays
    finally:
        i18n.activate("en")
        i18n.activate_zone(None)


def _english_fragments(code: str) -> dict[str, str]:
    """Pieces of English messages (between placeholders, two words or more) that the
    language translates differently: none may appear on that language's pages."""
    out: dict[str, str] = {}
    for message in _catalog(code):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        joined = " ".join(texts)
        for msgid in ids:
            for piece in PLACEHOLDER.split(msgid)[::2]:
                piece = piece.strip(" .,:;()–-")
                if len(piece) >= 10 and " " in piece and piece not in joined:
                    out[piece] = msgid
    return out


def _visible(page: str) -> str:
    """The page's text: tags out, the English support report (by design) out."""
    page = re.sub(r"<textarea[^>]*>.*?</textarea>", " ", page, flags=re.S)
    page = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"<option[^>]*>[^<]*</option>", " ", page)  # zone names, language names
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


async def _set_language(browser: Browser, code: str) -> None:
    resp = await browser.post("/language", {"lang": code, "next": "/login"})
    assert resp.status_code == 303, resp.text


async def test_every_page_in_every_language_has_no_english(pages: Pages) -> None:
    pages.api.emu.control("POST", "/accounts", {"email": ALICE, "timeZone": ZONE})
    user_id, key, browser = await pages.person(ALICE, role="admin")
    await pages.connect(browser, ALICE)
    resp = await pages.api.call(
        "PATCH", f"/api/v1/users/{user_id}/google/settings", key, json={"private_events": "busy"}
    )
    assert resp.status_code == 200, resp.text
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    with pages.api.google(ALICE) as g:
        made = g.post(
            f"/calendars/{ALICE}/events",
            json={
                "summary": "Dentist",
                "visibility": "private",
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
            },
        )
        assert made.status_code == 200, made.text
    assert (await pages.api.sync(user_id, key)).status_code == 200
    # Google then revokes access: the last run ends needs_reauth, the history has two runs
    pages.api.emu.control("POST", f"/accounts/{ALICE}/revoke-grants")
    await pages.api.sync(user_id, key)

    week = (start.date() - timedelta(days=start.weekday())).isoformat()
    for code in OTHERS:
        await _set_language(browser, code)
        fragments = _english_fragments(code)
        for path in (*PAGES, f"/calendar?week={week}"):
            page = await browser.get(path)
            assert page.status_code == 200, (code, path)
            assert f'<html lang="{code}">' in page.text
            text = _visible(page.text)
            left = sorted({msgid for piece, msgid in fragments.items() if piece in text})
            assert left == [], (code, path, left)
            for word in ("needs_reauth", " ok.", "ended", "Busy", "Project task", "Meeting"):
                assert word not in text, (code, path, word)
        calendar = _visible((await browser.get(f"/calendar?week={week}")).text)
        busy = {"nb": "Opptatt", "sv": "Upptagen", "fi": "Varattu", "de": "Beschäftigt"}[code]
        assert busy in calendar, code
        admin = _visible((await browser.get("/admin/integrations")).text)
        project = {"nb": "Prosjektoppgave", "sv": "Projektuppgift", "fi": "Projektitehtävä"}
        assert project.get(code, "Projektaufgabe") in admin, code


async def test_unknown_page_user_id_is_still_translated(pages: Pages) -> None:
    _, _, browser = await pages.person(ALICE, role="admin")
    await _set_language(browser, "fi")
    page = await browser.get(f"/diagnostics/{uuid.uuid4()}")
    assert page.status_code == 404 and "Ei löytynyt" in page.text
