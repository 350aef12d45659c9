"""When a sync reads the whole calendar instead of only what changed (docs/sync.md, "What a
sync reads").

A sync is O(changes): the pull lists Google's changes after the sync token, the push reads the
change feed after the binding's cursor (`push_seq`) and the links the pull left owing a write
(a partial index keeps those few rows apart). What neither names — an entry whose type the
admin exports since, a calendar unticked under entries already synced, a window made longer —
changed because a setting did. So the push scans every entry of the window only when:

- the binding has never synced (no sync token; for a CRM → Google binding, no scan yet),
- Google expired the sync token (410; the pull lists the window again),
- a full sync was asked for, or the private-events policy changed (the pull re-applies it),
- a setting the scans depend on differs from the one the last completed scan ran under
  (`settings_key`, stored as `calendar_binding.scanned_key`): the tenant's exported types and
  window, this calendar's role, direction and id, the account, and every calendar's role in
  the connection (a calendar ticked, unticked or made the export calendar).

The key is stored with the push cursor, in the transaction after the scan's writes, and only
when nothing the scan found was deferred: a crash or a write Google refused for now leaves the
old key, so the next run scans again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from calsync.store.models import CalendarBinding, Tenant


def settings_key(
    tenant: Tenant,
    binding: CalendarBinding,
    connection_calendars: Iterable[tuple[str, str]],
    google_email: str | None,
) -> str:
    """A digest of every setting that decides which entries the push's scans find;
    `connection_calendars`: (Google calendar id, role) of every binding of the connection."""
    described = {
        "exported": sorted(tenant.exported_type_keys or ()),
        "lookback": tenant.lookback_days,
        "calendar": binding.google_calendar_id,
        "role": binding.role,
        "direction": binding.direction,
        "account": google_email,
        "calendars": sorted((c, str(r)) for c, r in connection_calendars),
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def needs_scan(
    binding: CalendarBinding, key: str, *, full: bool, reapply: bool, pulls: bool
) -> bool:
    """Whether this run's push scans the whole window (see the module's docstring)."""
    first = binding.sync_token is None if pulls else binding.scanned_key is None
    return full or reapply or first or binding.scanned_key != key
