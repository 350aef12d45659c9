"""Calendar v3 calendarList, calendars, acl and colors, as Google serves them.

calendar_list.py (a person's list, its sync tokens and pages), calendar.py (a calendar's own
metadata), acl.py (sharing rules), colors.py (the palettes); common.py holds what they share.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from .acl import acl_collection, acl_rule
from .calendar import calendar, calendars_insert
from .calendar_list import calendar_list, calendar_list_entry, calendar_list_insert
from .colors import colors

_V3 = "/calendar/v3"
routes: list[BaseRoute] = [
    Route(f"{_V3}/users/me/calendarList", calendar_list, methods=["GET"]),
    Route(f"{_V3}/users/me/calendarList", calendar_list_insert, methods=["POST"]),
    Route(
        f"{_V3}/users/me/calendarList/{{calendarId}}",
        calendar_list_entry,
        methods=["GET", "PUT", "PATCH", "DELETE"],
    ),
    Route(f"{_V3}/calendars", calendars_insert, methods=["POST"]),
    Route(f"{_V3}/calendars/{{calendarId}}", calendar, methods=["GET", "PUT", "PATCH", "DELETE"]),
    Route(f"{_V3}/calendars/{{calendarId}}/acl", acl_collection, methods=["GET", "POST"]),
    Route(
        f"{_V3}/calendars/{{calendarId}}/acl/{{ruleId}}",
        acl_rule,
        methods=["GET", "PUT", "PATCH", "DELETE"],
    ),
    Route(f"{_V3}/colors", colors, methods=["GET"]),
]
