"""The message catalogues' upkeep: extract every translatable text (templates, page code, the
doctor, Google's and calsync's error texts) into messages.pot and merge it into each language's
.po file. `python -m calsync.web.catalogs` runs it (docs/pages.md); the tests compare the result
with the committed files.

It sits in web, not beside calsync/i18n.py, because it reads texts from every layer (the error
classes, the calsync.* codes table); i18n.py stays a base module that imports nothing above.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from calsync.i18n import DEFAULT, DOMAIN, LANGUAGES, LOCALE_DIR, load_catalogs
from calsync.sync import codes


def _error_messages() -> Iterable[tuple[str, str]]:
    """Error texts defined as class attributes (not literal gettext calls): Google's errors
    and the stored remedies; they are translated where the pages show them."""
    for cls in sorted(codes.google_error_classes().values(), key=lambda c: c.code):
        yield cls.default_message, f"google error {cls.code}"
        yield cls.remedy, f"remedy for {cls.code}"
    for code in codes.CATALOGUED:
        remedy = codes.TEXTS[code].remedy
        if remedy is not None:
            yield remedy, f"remedy for {code}"


def extract() -> Catalog:
    """messages.pot: templates, page code, the doctor, and the error texts."""
    from babel.messages.extract import extract_from_dir

    root = LOCALE_DIR.parent
    catalog = Catalog(project="calsync", domain=DOMAIN)
    method_map = [
        ("web/templates/**.html", "jinja2"),
        ("web/pages/**.py", "python"),
        ("i18n.py", "python"),
        ("web/oauth.py", "python"),
        ("doctor/**.py", "python"),
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


if __name__ == "__main__":  # python -m calsync.web.catalogs
    update()
    sys.stdout.write(f"updated {LOCALE_DIR}\n")
