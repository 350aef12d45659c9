"""Calendar v3 events: list (sync tokens, paging, expansion), get, insert, update, patch, delete,
instances, move, import and quickAdd, with Google's validation, error bodies, ETags and the
copies that attendees with an emulator account see in their own primary calendar.

Events are stored in Google's wire format (`StoredEvent.data`); keys starting with "_" are
bookkeeping and never leave the emulator:
- `_gone` on a recurring master: instance ids (or the master's own id) that a `singleEvents=true`
  client may hold but that no longer exist after a change of start/end/recurrence, with the
  sequence of that change, so incremental syncs can report them cancelled.
- `_orphan` on an exception whose original start stopped being an occurrence of its master.

Choices where Google documents no number: `updatedMin` older than 28 days answers 410
updatedMinTooLongAgo; deleted events are kept for ever (Google purges them eventually).

Modules, bottom up: wire (times, ids, links, tokens), request (parameters, access),
response (`fields`, reader's view), validation (building an event from a body), series
(recurring instances), storage (commit, save, find), copies (attendee copies, e-mails), query
(list filters), index (per-calendar orders a list page resumes in), listing (what a list
answers, its order and pages), reads and writes (handlers).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from .reads import get_event, list_events, list_instances
from .writes import (
    delete_event,
    import_event,
    insert_event,
    move_event,
    patch_event,
    quick_add,
    update_event,
)

BASE = "/calendar/v3/calendars/{calendarId}/events"


routes: list[BaseRoute] = [
    Route(BASE, list_events, methods=["GET"]),
    Route(BASE, insert_event, methods=["POST"]),
    Route(BASE + "/import", import_event, methods=["POST"]),
    Route(BASE + "/quickAdd", quick_add, methods=["POST"]),
    Route(BASE + "/{eventId}/instances", list_instances, methods=["GET"]),
    Route(BASE + "/{eventId}/move", move_event, methods=["POST"]),
    Route(BASE + "/{eventId}", get_event, methods=["GET"]),
    Route(BASE + "/{eventId}", update_event, methods=["PUT"]),
    Route(BASE + "/{eventId}", patch_event, methods=["PATCH"]),
    Route(BASE + "/{eventId}", delete_event, methods=["DELETE"]),
]
