"""The pages' languages: gettext catalogues (Babel) read from the .po files at startup, the
language chosen per request (cookie, then Accept-Language), and `gettext` for templates and code.

The .po files are the source of truth; no compiled .mo is kept in git — `load_catalogs` compiles
them in memory when the app starts. `python -m calsync.web.i18n` re-extracts messages.pot and
merges new messages into every .po file (see docs/pages.md).
"""

from __future__ import annotations

import gettext as gettext_module
import io
import re
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import Translations

LANGUAGES: dict[str, str] = {
    "en": "English",
    "nb": "Norsk bokmål",
    "sv": "Svenska",
    "fi": "Suomi",
    "de": "Deutsch",
}
DEFAULT = "en"
COOKIE = "calsync_lang"
DOMAIN = "messages"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
# what browsers send for Norwegian besides nb
_ALIASES = {"no": "nb", "nn": "nb"}
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$|^\*$")


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    """Marks a singular/plural pair for extraction (ngettext where it is shown)."""
    return singular, plural


@dataclass(frozen=True)
class Language:
    code: str
    translations: gettext_module.NullTranslations
    locale: Locale

    def gettext(self, message: str, **params: Any) -> str:
        text = self.translations.gettext(message) if message else message
        return text % params if params else text

    def ngettext(self, singular: str, plural: str, n: int, **params: Any) -> str:
        text = self.translations.ngettext(singular, plural, n)
        return text % {"num": n, **params}


def _compile(po: Path, code: str) -> Translations:
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=code, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


@lru_cache(maxsize=1)
def load_catalogs() -> dict[str, Language]:
    """Every language, its .po compiled in memory (English is the messages themselves)."""
    out: dict[str, Language] = {}
    for code in LANGUAGES:
        translations: gettext_module.NullTranslations = gettext_module.NullTranslations()
        po = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
        if code != DEFAULT and po.exists():
            translations = _compile(po, code)
        out[code] = Language(code, translations, Locale.parse(code))
    return out


def language(code: str | None) -> Language:
    catalogs = load_catalogs()
    return catalogs.get(code or DEFAULT) or catalogs[DEFAULT]


def _accepted(header: str) -> list[str]:
    """Accept-Language's tags, best first (q=0 dropped, malformed entries ignored)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or not _TAG.match(tag):
            continue
        q = 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                continue
        if q > 0:
            ranked.append((-q, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The switcher's cookie wins; then the browser's languages in order; else English."""
    if cookie in LANGUAGES:
        return str(cookie)
    for tag in _accepted(accept_language or ""):
        primary = tag.split("-")[0].lower()
        primary = _ALIASES.get(primary, primary)
        if primary in LANGUAGES:
            return primary
    return DEFAULT


_current: ContextVar[Language | None] = ContextVar("calsync_language", default=None)
_zone: ContextVar[tzinfo | None] = ContextVar("calsync_zone", default=None)


def activate(code: str) -> Language:
    """Make `code` the language of this request (a context variable: per task)."""
    lang = language(code)
    _current.set(lang)
    return lang


def current() -> Language:
    return _current.get() or language(DEFAULT)


def gettext(message: str, **params: Any) -> str:
    return current().gettext(message, **params)


def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
    return current().ngettext(singular, plural, n, **params)


def zone_of(name: str | None) -> ZoneInfo:
    """An IANA zone by name; UTC for none or an unknown name."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def valid_zone(name: str) -> bool:
    return name in _zone_names()


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_names() -> list[str]:
    """Every IANA zone a user may choose, sorted (the settings form's list)."""
    return sorted(name for name in _zone_names() if "/" in name or name == "UTC")


def activate_zone(name: str | None) -> tzinfo:
    """Make the user's time zone the one the pages show times in (per request)."""
    zone = zone_of(name)
    _zone.set(zone)
    return zone


def current_zone() -> tzinfo:
    return _zone.get() or UTC


def _local(value: datetime) -> datetime:
    """A stored time in the user's zone (naive times from the store are UTC)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(current_zone())


def format_when(value: datetime | date | None, style: str = "medium") -> str:
    """A date or time in the current language ("" for none); times in the user's zone."""
    if value is None:
        return ""
    locale = current().locale
    if isinstance(value, datetime):
        return format_datetime(_local(value), style, tzinfo=current_zone(), locale=locale)
    return format_date(value, style, locale=locale)


def format_clock(value: datetime) -> str:
    return format_time(_local(value), "short", tzinfo=current_zone(), locale=current().locale)


def format_day(value: date) -> str:
    return format_date(value, "EEE d MMM", locale=current().locale)


# -- catalogue maintenance ------------------------------------------------------------------


def _error_messages() -> Iterable[tuple[str, str]]:
    """Error texts defined as class attributes (not literal gettext calls): Google's errors
    and the stored remedies; they are translated where the pages show them."""
    from calsync.google import errors

    from . import google_status

    seen: list[type[errors.GoogleError]] = []
    todo: list[type[errors.GoogleError]] = [errors.GoogleError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    for cls in sorted(seen, key=lambda c: c.code):
        yield cls.default_message, f"google error {cls.code}"
        yield cls.remedy, f"remedy for {cls.code}"
    for code, remedy in sorted(google_status._CALSYNC_REMEDIES.items()):
        yield remedy, f"remedy for {code}"


def extract() -> Catalog:
    """messages.pot: templates, page code, the doctor, and the error texts."""
    from babel.messages.extract import extract_from_dir

    root = Path(__file__).resolve().parent.parent
    catalog = Catalog(project="calsync", domain=DOMAIN)
    method_map = [
        ("web/templates/**.html", "jinja2"),
        ("web/pages/**.py", "python"),
        ("web/i18n.py", "python"),
        ("web/oauth.py", "python"),
        ("doctor.py", "python"),
    ]
    options = {"web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "Nn_": (1, 2)}
    for filename, lineno, message, comments, _context in extract_from_dir(
        str(root), method_map, options, keywords=keywords
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments)
    for message, note in _error_messages():
        catalog.add(message, None, [("calsync/google/errors.py", 0)], auto_comments=[note])
    return catalog


def update(translations: Mapping[str, Mapping[str, str]] | None = None) -> None:
    """Write messages.pot and merge it into every language's .po (new messages untranslated)."""
    template = extract()
    LOCALE_DIR.mkdir(parents=True, exist_ok=True)
    with (LOCALE_DIR / f"{DOMAIN}.pot").open("wb") as handle:
        write_po(handle, template, omit_header=False, width=100)
    for code in LANGUAGES:
        if code == DEFAULT:
            continue
        po = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
        if po.exists():
            with po.open("rb") as handle:
                catalog = read_po(handle, locale=code, domain=DOMAIN)
        else:
            po.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=code, domain=DOMAIN, project="calsync")
        catalog.update(template, no_fuzzy_matching=True)
        for msgid, text in (translations or {}).get(code, {}).items():
            if msgid in catalog and text:
                catalog[msgid].string = text
                catalog[msgid].flags.discard("fuzzy")
        catalog.obsolete.clear()
        with po.open("wb") as handle:
            write_po(handle, catalog, omit_header=False, width=100, include_previous=False)
    load_catalogs.cache_clear()


def template() -> Catalog:
    """The committed messages.pot (what the translations are checked against)."""
    with (LOCALE_DIR / f"{DOMAIN}.pot").open("rb") as handle:
        return read_po(handle, domain=DOMAIN)


def missing(code: str, against: Catalog | None = None) -> list[str]:
    """Messages of the template that `code`'s .po does not translate (tests use it)."""
    po = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=code, domain=DOMAIN)
    out = []
    for message in against if against is not None else template():
        if not message.id:
            continue
        found = catalog.get(message.id)
        text = found.string if found is not None else None
        if not text or (found is not None and found.fuzzy):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
        elif isinstance(text, tuple) and not all(text):
            out.append(str(message.id[0]))
    return out


if __name__ == "__main__":  # python -m calsync.web.i18n
    update()
    sys.stdout.write(f"updated {LOCALE_DIR}\n")
