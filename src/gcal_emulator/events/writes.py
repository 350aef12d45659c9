"""Write handlers: insert, import, quickAdd, update, patch, delete and move."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..auth import json_body
from ..state import StoredEvent, World
from .copies import PERSONAL, own_entry, record_emails, sync_copies, tell_listeners
from .request import Ctx, Params, calendar_for, check_if_match, context
from .response import respond
from .storage import commit, exceptions_of, find, origin_calendar, save
from .validation import SERVER_FIELDS, build, merge_patch
from .wire import fmt_time, html_link, new_id, public

_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
# a change to one of these is "significant": the event's sequence goes up, as in iCalendar
SIGNIFICANT = ("start", "end", "recurrence", "summary", "location")


# -- insert / import / quickAdd ------------------------------------------------------------------


def _new_event(
    ctx: Ctx,
    body: dict[str, Any],
    *,
    event_id: str | None,
    organizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    world, cal = ctx.world, ctx.cal
    used = world.used_event_ids.setdefault(cal.id, set())
    if event_id is not None:
        if not isinstance(event_id, str) or not _ID_RE.match(event_id):
            raise errors.invalid("Invalid resource id value.")
        if event_id in used or event_id in ctx.store:
            raise errors.duplicate()
    else:
        event_id = new_id()
        while event_id in used:
            event_id = new_id()
    ical_uid = body.get("iCalUID")
    if ical_uid is not None:
        if not isinstance(ical_uid, str) or not ical_uid:
            raise errors.invalid("Invalid iCalUID value.")
    data = build(body, cal)
    me = world.accounts.get(ctx.tok.email)
    creator = {"email": ctx.tok.email, "self": True}
    if me is not None and me.name:
        creator["displayName"] = me.name
    if organizer is None:
        owner = world.accounts.get(cal.owner)
        organizer = {"email": cal.id, "displayName": cal.summary, "self": True}
        if owner is not None and cal.id == owner.primary_calendar_id:
            organizer["displayName"] = owner.name
    if creator["email"] != cal.id:
        creator.pop("self")
    out: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": "",
        "id": event_id,
        "status": data.pop("status"),
        "htmlLink": html_link(event_id, cal.id),
        "created": None,  # stamped by storage.commit with the instant it stores
        "updated": None,
    }
    out.update(data)
    out["creator"] = creator
    out["organizer"] = organizer
    out["iCalUID"] = ical_uid or f"{event_id}@google.com"
    seq = body.get("sequence", 0)
    out["sequence"] = seq if isinstance(seq, int) and seq >= 0 else 0
    _mark_organizer_attendee(out, cal.id)
    return out


def _mark_organizer_attendee(data: dict[str, Any], cal_id: str) -> None:
    org = str((data.get("organizer") or {}).get("email", "")).lower()
    for att in data.get("attendees", []):
        email = str(att.get("email", "")).lower()
        att.pop("organizer", None)
        att.pop("self", None)
        if email == org:
            att["organizer"] = True
        if email == cal_id.lower():
            att["self"] = True


async def insert_event(request: Request) -> Response:
    ctx = context(request, write=True)
    p = Params(request)
    send_updates = p.send_updates()
    body = await json_body(request)
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        if body.get("iCalUID") is not None and any(
            ev.data.get("iCalUID") == body["iCalUID"] and "recurringEventId" not in ev.data
            for ev in ctx.store.values()
        ):
            raise errors.duplicate()
        data = _new_event(ctx, body, event_id=body.get("id"))
        ev = save(world, cal.id, data, None)
        touched = {cal.id}
        sync_copies(world, cal.id, data["id"], touched)
        record_emails(world, cal, None, ev.data, send_updates)
        tell_listeners(world, touched)
        out = public(ev.data)
    return respond(request, out, etag=out["etag"])


async def import_event(request: Request) -> Response:
    """Add a private copy of an existing event (identified by iCalUID); again updates it."""
    ctx = context(request, write=True)
    Params(request)
    body = await json_body(request)
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        ical_uid = body.get("iCalUID")
        if not isinstance(ical_uid, str) or not ical_uid:
            raise errors.required("Missing iCalUID.")
        if (body.get("eventType") or "default") != "default":
            raise errors.invalid("Only events of type default can be imported.")
        organizer = body.get("organizer")
        if organizer is not None:
            if not isinstance(organizer, dict) or not organizer.get("email"):
                raise errors.invalid("Invalid organizer.")
            organizer = {
                k: organizer[k] for k in ("email", "displayName") if organizer.get(k) is not None
            }
            if str(organizer["email"]).lower() == cal.id.lower():
                organizer["self"] = True
        existing = next(
            (
                ev
                for ev in ctx.store.values()
                if ev.data.get("iCalUID") == ical_uid and "recurringEventId" not in ev.data
            ),
            None,
        )
        if existing is not None:
            prev = existing.data
            built = build(body, cal)
            data = {k: prev[k] for k in SERVER_FIELDS if k in prev}
            data.update(built)
            if organizer is not None:
                data["organizer"] = organizer
            seq = body.get("sequence")
            data["sequence"] = max(prev.get("sequence", 0), seq if isinstance(seq, int) else 0)
            _mark_organizer_attendee(data, cal.id)
            ev = save(world, cal.id, data, existing)
        else:
            data = _new_event(ctx, body, event_id=body.get("id"), organizer=organizer)
            ev = save(world, cal.id, data, None)
        tell_listeners(world, {cal.id})
        out = public(ev.data)
    return respond(request, out, etag=out["etag"])


async def quick_add(request: Request) -> Response:
    """A minimal quickAdd: the text becomes the title of a one-hour event at the next hour."""
    ctx = context(request, write=True)
    p = Params(request)
    send_updates = p.send_updates()
    text = p.get_str("text")
    if text is None:
        raise errors.required("Required parameter: text", "text")
    with ctx.world.lock:
        now = ctx.world.clock.now_dt().astimezone(ctx.tz)
        start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        body = {
            "summary": text,
            "start": {"dateTime": fmt_time(start)},
            "end": {"dateTime": fmt_time(start + timedelta(hours=1))},
        }
        data = _new_event(ctx, body, event_id=None)
        ev = save(ctx.world, ctx.cal.id, data, None)
        record_emails(ctx.world, ctx.cal, None, ev.data, send_updates)
        tell_listeners(ctx.world, {ctx.cal.id})
        out = public(ev.data)
    return respond(request, out, etag=out["etag"])


# -- update / patch -----------------------------------------------------------------------------


def _client_view(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in public(data).items() if k not in SERVER_FIELDS}


def _personal_free(data: dict[str, Any], email: str) -> dict[str, Any]:
    """What an attendee may not change: everything but personal fields and their own reply."""
    out = copy.deepcopy(_client_view(data))
    for key in PERSONAL:
        out.pop(key, None)
    ext = out.pop("extendedProperties", {})
    if ext.get("shared"):
        out["extendedProperties"] = {"shared": ext["shared"]}
    for att in out.get("attendees", []):
        if str(att.get("email", "")).lower() == email:
            for k in ("responseStatus", "comment", "additionalGuests"):
                att.pop(k, None)
    return out


async def _modify(request: Request, *, replace: bool) -> Response:
    ctx = context(request, write=True)
    p = Params(request)
    send_updates = p.send_updates()
    body = await json_body(request)
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        event_id = request.path_params["eventId"]
        target = find(world, cal.id, event_id)
        if target is None:
            raise errors.not_found()
        cur = target.data
        check_if_match(request, cur["etag"])
        instance = "recurringEventId" in cur
        if replace:
            candidate = dict(body)
            if instance:
                candidate.pop("recurrence", None)
        else:
            candidate = merge_patch(_client_view(cur), body)
        if "status" not in candidate and replace:
            candidate["status"] = "confirmed"
        built = build(candidate, cal, instance=instance)

        new = {k: copy.deepcopy(cur[k]) for k in SERVER_FIELDS if k in cur}
        new.update(built)
        seq = cur.get("sequence", 0)
        if any(cur.get(k) != new.get(k) for k in SIGNIFICANT):
            seq += 1
        given = body.get("sequence")
        if isinstance(given, int) and not isinstance(given, bool):
            if given < cur.get("sequence", 0):
                raise errors.invalid(
                    "Invalid sequence value. The specified sequence number is below the "
                    "current sequence number of the resource."
                )
            seq = max(seq, given)
        new["sequence"] = seq
        _mark_organizer_attendee(new, cal.id)

        touched = {cal.id}
        origin_cal = origin_calendar(world, cal.id, cur)
        if origin_cal is not None:
            me = cal.id.lower()
            if _personal_free(cur, me) != _personal_free(new, me):
                raise errors.forbidden_for_non_organizer()
            old_entry = own_entry(cur, me) or {}
            new_entry = own_entry(new, me) or {}
            ev = save(world, cal.id, new, target.stored)
            if any(
                old_entry.get(k) != new_entry.get(k)
                for k in ("responseStatus", "comment", "additionalGuests")
            ):
                _reply(world, origin_cal, event_id, me, new_entry, touched)
        else:
            ev = save(world, cal.id, new, target.stored)
            sync_copies(world, cal.id, event_id, touched)
            if new.get("status") == "cancelled" and not instance:
                for exc in exceptions_of(world, cal.id, event_id):
                    sync_copies(world, cal.id, exc.data["id"], touched)
            record_emails(world, cal, cur, ev.data, send_updates)
        tell_listeners(world, touched)
        out = public(ev.data)
    return respond(request, out, etag=out["etag"])


def _reply(
    world: World,
    origin_cal: str,
    event_id: str,
    email: str,
    entry: dict[str, Any],
    touched: set[str],
) -> None:
    """An attendee's response reaches the organizer's event, and from there every copy."""
    target = find(world, origin_cal, event_id)
    if target is None:
        return
    data = copy.deepcopy(target.data)
    for att in data.get("attendees", []):
        if str(att.get("email", "")).lower() == email:
            for k in ("responseStatus", "comment", "additionalGuests"):
                att.pop(k, None)
                if k in entry:
                    att[k] = entry[k]
    save(world, origin_cal, data, target.stored)
    touched.add(origin_cal)
    sync_copies(world, origin_cal, event_id, touched)


async def update_event(request: Request) -> Response:
    return await _modify(request, replace=True)


async def patch_event(request: Request) -> Response:
    return await _modify(request, replace=False)


# -- delete / move ------------------------------------------------------------------------------


async def delete_event(request: Request) -> Response:
    ctx = context(request, write=True)
    p = Params(request)
    send_updates = p.send_updates()
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        event_id = request.path_params["eventId"]
        target = find(world, cal.id, event_id)
        if target is None:
            raise errors.not_found()
        cur = target.data
        if cur.get("status") == "cancelled":
            raise errors.deleted()
        check_if_match(request, cur["etag"])
        data = copy.deepcopy(cur)
        data["status"] = "cancelled"
        touched = {cal.id}
        origin_cal = origin_calendar(world, cal.id, cur)
        save(world, cal.id, data, target.stored)
        if origin_cal is not None:
            me = cal.id.lower()
            entry = dict(own_entry(cur, me) or {})
            entry["responseStatus"] = "declined"
            _reply(world, origin_cal, event_id, me, entry, touched)
        else:
            sync_copies(world, cal.id, event_id, touched)
            for exc in exceptions_of(world, cal.id, event_id):
                sync_copies(world, cal.id, exc.data["id"], touched)
            record_emails(world, cal, cur, data, send_updates)
        tell_listeners(world, touched)
    return Response(status_code=204)


async def move_event(request: Request) -> Response:
    ctx = context(request, write=True)
    p = Params(request)
    send_updates = p.send_updates()
    with ctx.world.lock:
        world, cal = ctx.world, ctx.cal
        dest_id = p.get_str("destination")
        if dest_id is None:
            raise errors.required("Required parameter: destination", "destination")
        dest, _ = calendar_for(world, ctx.tok, dest_id, write=True)
        event_id = request.path_params["eventId"]
        ev = ctx.store.get(event_id)
        if ev is None or ev.data.get("_orphan"):
            if find(world, cal.id, event_id) is not None:
                raise errors.bad_request("Cannot change the organizer of an instance.")
            raise errors.not_found()
        if ev.data.get("status") == "cancelled":
            raise errors.deleted()
        if "recurringEventId" in ev.data:
            raise errors.bad_request("Cannot change the organizer of an instance.")
        if ev.data.get("eventType", "default") != "default":
            raise errors.bad_request("This event type cannot be moved.")
        if origin_calendar(world, cal.id, ev.data) is not None:
            raise errors.forbidden_for_non_organizer()
        if dest.id == cal.id:
            out = public(ev.data)
            return respond(request, out, etag=out["etag"])
        dest_used = world.used_event_ids.setdefault(dest.id, set())
        moving = [ev, *exceptions_of(world, cal.id, event_id)]
        if any(m.data["id"] in dest_used for m in moving):
            raise errors.duplicate()
        touched = {cal.id, dest.id}
        owner = world.accounts.get(dest.owner)
        organizer = {"email": dest.id, "displayName": dest.summary, "self": True}
        if owner is not None and dest.id == owner.primary_calendar_id:
            organizer["displayName"] = owner.name
        moved: StoredEvent | None = None
        for m in moving:
            new = copy.deepcopy(public(m.data))
            new["organizer"] = dict(organizer)
            new["htmlLink"] = html_link(new["id"], dest.id)
            _mark_organizer_attendee(new, dest.id)
            stored = commit(world, dest.id, new, None)
            if m is ev:
                moved = stored
        for m in reversed(moving):
            gone = copy.deepcopy(m.data)
            gone["status"] = "cancelled"
            commit(world, cal.id, gone, m)
        for m in moving:
            sync_copies(world, dest.id, m.data["id"], touched, previous_origin=cal.id)
        assert moved is not None
        record_emails(world, dest, ev.data, moved.data, send_updates)
        tell_listeners(world, touched)
        out = public(moved.data)
    return respond(request, out, etag=out["etag"])
