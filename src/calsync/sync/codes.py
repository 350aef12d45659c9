"""Every `calsync.*` code — the errors calsync itself reports, next to Google's `google.*` ones —
with its message and remedy, in one table: runs, issues and connections store only the code (and
a message naming the entry), so the API, the pages and the doctor look the remedy up here.

The codes themselves are the `Code` enum of store/statuses.py, below every layer that writes one
(the store writes two: the mass-delete guard's issue and the abandoned run); this module, in
sync, holds their texts. Two are raised as GoogleError subclasses in sync (`tokens.NotConnected`,
`errors.CalendarGone`): their texts live on the class, and the table reads them from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from calsync.google import errors
from calsync.store.statuses import Code

from .errors import CalendarGone
from .tokens import NotConnected

SETTINGS = errors.SETTINGS_PAGE

#: what to do about a guard pause: exactly the actions the page, the API and the CLI offer
GUARD_REMEDY = (
    "In Settings → Google Calendar, press “Apply the deletions” if the entries were deleted on "
    "purpose, or restore them in Google Calendar and press “Resume: I restored them” (API: POST "
    ".../google/calendars/{binding_id}/resume; CLI: calsync resume)."
)


@dataclass(frozen=True)
class Texts:
    #: the general message; an issue's stored message names the entry and says more
    message: str
    #: None: nothing for anyone to do
    remedy: str | None


TEXTS: dict[Code, Texts] = {
    Code.SYNC_IN_PROGRESS: Texts(
        "Another sync of this calendar is running.",
        "Nothing to do: the running sync picks up every change.",
    ),
    Code.MASS_DELETE_GUARD: Texts(
        "Sync paused: Google reported many of this calendar's synced appointments as deleted; "
        "nothing was deleted in the CRM.",
        GUARD_REMEDY,
    ),
    Code.CALENDAR_UNSELECTED: Texts(
        "This calendar is no longer selected: its entries stay in the CRM, no longer synced.",
        "Tick it again in Settings → Google Calendar to sync it; nothing is duplicated.",
    ),
    Code.BINDING_DISABLED: Texts(
        "Sync is switched off for this calendar.", f"Switch sync on in {SETTINGS}."
    ),
    Code.BINDING_PAUSED: Texts("Sync of this calendar is paused.", GUARD_REMEDY),
    Code.BINDING_DISABLED_STAGE: Texts(
        "Sync of this calendar is disabled.", f"Choose another calendar in {SETTINGS}."
    ),
    Code.NOT_CONNECTED: Texts(NotConnected.default_message, NotConnected.remedy),
    Code.CALENDAR_GONE: Texts(CalendarGone.default_message, CalendarGone.remedy),
    # another run finished what the stopped one started
    Code.RUN_ABANDONED: Texts(
        "The worker running this sync stopped; another run finished it.", None
    ),
    Code.AMBIGUOUS_MATCH: Texts(
        "Google events and CRM activities look the same; calsync did not guess which belong "
        "together.",
        "Delete the duplicates or change one of them (title or time) so each entry is "
        "unique; calsync links or copies them on the next sync.",
    ),
    Code.EVENT_UNSUPPORTED: Texts(
        "A Google event cannot be stored in the CRM.",
        "Shorten or correct the event in Google Calendar; it syncs after the change.",
    ),
    Code.RECURRENCE_UNSUPPORTED: Texts(
        "A Google series repeats in a way the CRM cannot represent; it shows as its first "
        "occurrence and is read-only in the CRM.",
        "Change the series in Google Calendar (e.g. a daily, weekly, monthly or yearly "
        "rule), or keep editing it there.",
    ),
    Code.RECURRENCE_INVALID: Texts(
        "A CRM series has a recurrence Google would refuse; it is not synced.",
        "Change the series' recurrence in the CRM to a daily, weekly, monthly or yearly rule.",
    ),
    Code.MOVE_FAILED: Texts(
        "A CRM entry could not be moved from the calendar that received CRM entries before.",
        "Move the event in Google Calendar yourself (open it, choose the calendar), "
        "or give your account 'Make changes to events' on both calendars; calsync "
        "tries again on the entry's next change.",
    ),
}

#: the remedies the pages translate (messages.pot; web/catalogs.py extracts them): the others
#: reach users as the issue's stored remedy, in English
CATALOGUED = (
    Code.BINDING_DISABLED,
    Code.BINDING_DISABLED_STAGE,
    Code.BINDING_PAUSED,
    Code.MASS_DELETE_GUARD,
    Code.SYNC_IN_PROGRESS,
)


_CODES = frozenset(Code)


def google_error_classes() -> dict[str, type[errors.GoogleError]]:
    """Every GoogleError subclass by its code (calsync's own, like NotConnected, included)."""
    found: dict[str, type[errors.GoogleError]] = {}
    todo: list[type[errors.GoogleError]] = [errors.GoogleError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


def remedy_for(code: str | None) -> str | None:
    """The remedy that goes with a stored error code (runs and connections keep only the code):
    a calsync.* code's from the table, a google.* code's from its GoogleError class."""
    if not code:
        return None
    if code in _CODES:
        return TEXTS[Code(code)].remedy
    cls = google_error_classes().get(code)
    return cls.remedy if cls is not None else None
