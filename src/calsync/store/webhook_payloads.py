"""What an outbound webhook says about an activity: the activity as the REST API shows it
(`web/api/activities.activity_out`, which tests/webhooks_out/test_payloads.py compares with
this), built below the web layer so the outbox can be written in the change's transaction.
`read_only` and `problem` are left out: they need the links and a time range, not the row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .models import Activity


def _when(local: datetime, all_day: bool, zone: str) -> str:
    if all_day:
        return local.date().isoformat()
    return local.replace(tzinfo=ZoneInfo(zone)).isoformat()


def _instant(value: datetime | None) -> str | None:
    """As pydantic writes an aware UTC datetime in JSON (`…Z`)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def activity_payload(row: Activity) -> dict[str, Any]:
    original = row.original_start_local
    return {
        "id": str(row.id),
        "type": row.type_key,
        "owner_id": str(row.owner_id),
        "subject": row.subject,
        "description": row.description,
        "location": row.location,
        "all_day": row.all_day,
        "time_zone": row.time_zone,
        "start": _when(row.start_local, row.all_day, row.time_zone),
        "end": _when(row.end_local, row.all_day, row.time_zone),
        "visibility": row.visibility,
        "transparency": row.transparency,
        "status": row.status,
        "attendees": [
            {
                "email": a.email,
                "display_name": a.display_name,
                "response_status": a.response_status,
                "optional": a.optional,
            }
            for a in row.attendees
        ],
        "recurrence": list(row.recurrence) if row.recurrence else None,
        "recurring_parent_id": str(row.recurring_parent_id) if row.recurring_parent_id else None,
        "original_start": _when(original, row.all_day, row.time_zone) if original else None,
        "organizer_email": row.organizer_email,
        "occurrence": False,
        "version": row.version,
        "created_at": _instant(row.created_at),
        "updated_at": _instant(row.updated_at),
        "deleted_at": _instant(row.deleted_at),
    }
