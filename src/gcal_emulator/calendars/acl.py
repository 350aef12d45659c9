"""The acl resource: rules of scope type `user` only; a rule change adds or removes the
calendar on that person's calendar list, as Google does.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..auth import authenticate, json_body, world_of
from ..errors import GoogleError
from ..state import Calendar, World
from .common import (
    ACL_READ,
    ACL_WRITE,
    ROLE_RANK,
    bad,
    json_response,
    resolve,
    touch,
    visible_calendar,
)


def cannot_change_own_acl() -> GoogleError:
    return GoogleError(403, "cannotChangeOwnAcl", "Cannot change your own access level.")


def _rule_json(world: World, cal: Calendar, email: str, role: str) -> dict[str, Any]:
    return {
        "kind": "calendar#aclRule",
        "etag": world.etag(cal.etag_seq),
        "id": f"user:{email}",
        "scope": {"type": "user", "value": email},
        "role": role,
    }


def _acl_calendar(world: World, email: str, request: Request, write: bool) -> Calendar:
    cal_id = resolve(world, email, request.path_params["calendarId"])
    cal, role = visible_calendar(world, email, cal_id)
    needed = ROLE_RANK["owner"] if write else ROLE_RANK["writer"]  # writers may read the ACL
    if ROLE_RANK.get(role, 0) < needed:
        raise errors.forbidden()
    return cal


def _set_rule(world: World, cal: Calendar, caller: str, email: str, role: str) -> None:
    if email == caller:
        raise cannot_change_own_acl()
    if role == "none":
        cal.acl.pop(email, None)
        entry = world.calendar_list.get(email, {}).get(cal.id)
        if entry is not None and not entry.deleted:
            entry.deleted = True
            touch(world, email, entry)
        return
    previous = cal.acl.get(email)
    cal.acl[email] = role
    if email in world.accounts:
        before = world.calendar_list.get(email, {}).get(cal.id)
        world.list_calendar_for(email, cal.id)
        if before is None or before.deleted:
            world.changed("calendarList", email)
        elif previous != role:  # the entry's accessRole changed: a list change, as in Google
            touch(world, email, before)


def _role(value: Any) -> str:
    if value not in (*ROLE_RANK, "none"):
        raise bad(f"Invalid role: {value}")
    return str(value)


async def acl_collection(request: Request) -> Response:
    write = request.method == "POST"
    caller = authenticate(request, ACL_WRITE if write else ACL_READ).email
    data = await json_body(request) if write else {}
    world = world_of(request)
    with world.lock:
        cal = _acl_calendar(world, caller, request, write)
        if not write:
            items = [_rule_json(world, cal, e, r) for e, r in sorted(cal.acl.items())]
            return json_response(
                {"kind": "calendar#acl", "etag": world.etag(cal.etag_seq), "items": items}
            )
        scope = data.get("scope")
        if not isinstance(scope, dict) or not scope.get("type"):
            raise errors.required("Missing scope type.")
        if scope["type"] != "user":
            raise bad("The emulator supports ACL rules of scope type 'user' only.")
        email = str(scope.get("value") or "").lower()
        if "@" not in email:
            raise errors.required("Missing scope value.")
        if data.get("role") is None:
            raise errors.required("Missing role.")
        role = _role(data["role"])
        _set_rule(world, cal, caller, email, role)
        cal.etag_seq = world.next_seq()
        return json_response(_rule_json(world, cal, email, role))


async def acl_rule(request: Request) -> Response:
    method = request.method
    write = method != "GET"
    caller = authenticate(request, ACL_WRITE if write else ACL_READ).email
    data = await json_body(request) if method in ("PUT", "PATCH") else {}
    world = world_of(request)
    with world.lock:
        cal = _acl_calendar(world, caller, request, write)
        rule_id = request.path_params["ruleId"]
        kind, _, value = rule_id.partition(":")
        email = value.lower()
        if kind != "user" or email not in cal.acl:
            raise errors.not_found()
        if method == "GET":
            return json_response(_rule_json(world, cal, email, cal.acl[email]))
        if method == "DELETE":
            _set_rule(world, cal, caller, email, "none")
            cal.etag_seq = world.next_seq()
            return Response(status_code=204)
        if data.get("role") is None:
            if method == "PUT":
                raise errors.required("Missing role.")
            return json_response(_rule_json(world, cal, email, cal.acl[email]))
        role = _role(data["role"])
        _set_rule(world, cal, caller, email, role)
        cal.etag_seq = world.next_seq()
        return json_response(_rule_json(world, cal, email, role))
