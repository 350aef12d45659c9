"""Attendee copies and e-mails: attendees with an emulator account see the organizer's event
in their own primary calendar; guests get the e-mails Google would send.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..state import Calendar, World
from .storage import save
from .wire import domain_of, html_link, public

# what an attendee may change on their own copy
PERSONAL = ("reminders", "colorId", "transparency")


def own_entry(data: dict[str, Any], email: str) -> dict[str, Any] | None:
    for att in data.get("attendees", []):
        if str(att.get("email", "")).lower() == email:
            return att  # type: ignore[no-any-return]
    return None


def _copy_for(
    world: World,
    origin: dict[str, Any],
    account_email: str,
    cal_id: str,
    existing: dict[str, Any] | None,
) -> dict[str, Any]:
    data = {k: copy.deepcopy(v) for k, v in public(origin).items() if k not in ("etag", "updated")}
    for role in ("organizer", "creator"):
        person = dict(data.get(role) or {})
        person.pop("self", None)
        if str(person.get("email", "")).lower() == account_email:
            person["self"] = True
        data[role] = person
    for att in data.get("attendees", []):
        att.pop("self", None)
        if str(att.get("email", "")).lower() == account_email:
            att["self"] = True
    data["htmlLink"] = html_link(data["id"], cal_id)
    ext = data.pop("extendedProperties", {})
    mine = (existing or {}).get("extendedProperties", {}).get("private")
    new_ext = {k: v for k, v in (("shared", ext.get("shared")), ("private", mine)) if v}
    if new_ext:
        data["extendedProperties"] = new_ext
    for key in PERSONAL:
        data.pop(key, None)
        if existing is not None and key in existing:
            data[key] = copy.deepcopy(existing[key])
    data.setdefault("reminders", {"useDefault": True})
    own = own_entry(data, account_email)
    if (
        existing is not None
        and existing.get("status") == "cancelled"
        and own is not None
        and own.get("responseStatus") == "declined"
    ):
        data["status"] = "cancelled"  # the attendee removed it from their calendar
    return data


def _attendee_accounts(world: World, data: dict[str, Any], origin_cal: str) -> dict[str, str]:
    """email -> primary calendar of attendees who have an emulator account."""
    out: dict[str, str] = {}
    if data.get("status") == "cancelled":
        return out
    for att in data.get("attendees", []):
        email = str(att.get("email", "")).lower()
        account = world.accounts.get(email)
        if account is not None and account.primary_calendar_id != origin_cal:
            out[email] = account.primary_calendar_id
    return out


def sync_copies(
    world: World,
    origin_cal: str,
    event_id: str,
    touched: set[str],
    previous_origin: str | None = None,
) -> None:
    """Bring every attendee's copy of one event in line with the organizer's version."""
    origin = world.events.get(origin_cal, {}).get(event_id)
    if origin is None:
        return
    wanted = _attendee_accounts(world, origin.data, origin_cal)
    organizers = {origin_cal, previous_origin}
    for email, account in world.accounts.items():
        cal_id = account.primary_calendar_id
        if cal_id == origin_cal:
            continue
        existing = world.events.get(cal_id, {}).get(event_id)
        if existing is not None:
            org = (existing.data.get("organizer") or {}).get("email")
            if org not in organizers:
                continue  # an unrelated event that happens to share the id
        if email in wanted:
            data = _copy_for(world, origin.data, email, cal_id, existing.data if existing else None)
            if existing is not None:
                old = {
                    k: v for k, v in public(existing.data).items() if k not in ("etag", "updated")
                }
                if old == data:
                    continue
            save(world, cal_id, data, existing)
            touched.add(cal_id)
        elif existing is not None and existing.data.get("status") != "cancelled":
            data = copy.deepcopy(existing.data)
            data["status"] = "cancelled"
            save(world, cal_id, data, existing)
            touched.add(cal_id)


def _recipients(data: dict[str, Any] | None) -> set[str]:
    if not data:
        return set()
    org = str((data.get("organizer") or {}).get("email", "")).lower()
    return {
        str(a["email"]).lower()
        for a in data.get("attendees", [])
        if str(a.get("email", "")).lower() != org and not a.get("resource")
    }


def record_emails(
    world: World,
    cal: Calendar,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    send_updates: str,
) -> None:
    """Record the e-mails Google would send to guests for an organizer's change."""
    if send_updates == "none":
        return
    organizer = str((new.get("organizer") or {}).get("email") or cal.id).lower()
    # the organizer of a calendar's events is the person who owns it
    org_domain = domain_of(cal.owner)
    before = _recipients(old) if old and old.get("status") != "cancelled" else set()
    after = _recipients(new) if new.get("status") != "cancelled" else set()
    plan = [(e, "invitation") for e in sorted(after - before)]
    plan += [(e, "update") for e in sorted(after & before)]
    plan += [(e, "cancellation") for e in sorted(before - after)]
    for email, kind in plan:
        if send_updates == "externalOnly" and domain_of(email) == org_domain:
            continue
        world.record_email(email, organizer, cal.id, new["id"], kind, new.get("summary", ""))


def tell_listeners(world: World, touched: Iterable[str]) -> None:
    for cal_id in sorted(set(touched)):
        world.changed("events", cal_id)
