"""Scopes: parsing a request's scope string, the texts the consent page shows, the order
Google lists granted scopes in.
"""

from __future__ import annotations

from ..state import SCOPE_EMAIL, SCOPE_PROFILE

SCOPE_ALIASES = {"email": SCOPE_EMAIL, "profile": SCOPE_PROFILE}
IDENTITY_SCOPES = frozenset({SCOPE_EMAIL, SCOPE_PROFILE, "openid"})
SCOPE_TEXT = {
    "https://www.googleapis.com/auth/calendar": (
        "See, edit, share, and permanently delete all the calendars you can access using "
        "Google Calendar"
    ),
    "https://www.googleapis.com/auth/calendar.readonly": (
        "See and download any calendar you can access using your Google Calendar"
    ),
    "https://www.googleapis.com/auth/calendar.events": "View and edit events on all your calendars",
    "https://www.googleapis.com/auth/calendar.events.readonly": (
        "View events on all your calendars"
    ),
    SCOPE_EMAIL: "See your primary Google Account email address",
    SCOPE_PROFILE: (
        "See your personal info, including any personal info you've made publicly available"
    ),
    "openid": "Associate you with your personal info on Google",
}


def parse_scopes(raw: str) -> list[str]:
    """Space-separated scopes in request order, short aliases (`email`, `profile`) expanded."""
    out: list[str] = []
    for item in raw.split():
        scope = SCOPE_ALIASES.get(item, item)
        if scope not in out:
            out.append(scope)
    return out


def known_scope(scope: str) -> bool:
    return scope == "openid" or scope.startswith("https://www.googleapis.com/auth/")


def ordered_scopes(scopes: set[str] | frozenset[str]) -> list[str]:
    return sorted(scopes, key=lambda s: (s != SCOPE_EMAIL, s != SCOPE_PROFILE, s))
