"""Read handlers: events.list, events.instances and events.get."""

from __future__ import annotations

from datetime import UTC, timedelta

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from .listing import (
    Item,
    collect,
    collect_plain,
    cut_page,
    decode_page,
    envelope,
    sort_key,
    sync_seq,
)
from .query import Query, matches, parse_props
from .request import Params, context
from .response import respond, view
from .series import instances
from .storage import find
from .validation import EVENT_TYPES
from .wire import encode_token, instant, parse_dt, public

DEFAULT_PAGE = 250
MAX_PAGE = 2500
UPDATED_MIN_WINDOW = timedelta(days=28)
# what a syncToken request may not combine with
SYNC_FORBIDDEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)


async def list_events(request: Request) -> Response:
    ctx = context(request, write=False)
    p = Params(request)
    with ctx.world.lock:
        sync_token = p.get_str("syncToken")
        page_token = p.get_str("pageToken")
        if sync_token is not None:
            for name in SYNC_FORBIDDEN:
                if p.get_list(name):
                    raise errors.invalid(
                        f"The parameter {name} cannot be used together with syncToken.", name
                    )
        single = p.get_bool("singleEvents")
        order_by = p.get_str("orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise errors.invalid(f"Invalid value for: orderBy ({order_by})", "orderBy")
        if order_by == "startTime" and not single:
            raise errors.bad_request(
                "The requested ordering is not available for the particular query."
            )
        time_min, time_max = p.get_time("timeMin"), p.get_time("timeMax")
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise errors.time_range_empty()
        updated_min = p.get_time("updatedMin")
        if updated_min is not None:
            if ctx.world.clock.now_dt() - updated_min > UPDATED_MIN_WINDOW:
                raise errors.updated_min_too_long_ago()
        types = p.get_list("eventTypes")
        for t in types:
            if t not in EVENT_TYPES:
                raise errors.invalid(f"Invalid value for: eventTypes ({t})", "eventTypes")
        max_results = p.get_int("maxResults", DEFAULT_PAGE, 1, MAX_PAGE)
        mode = f"{int(single)}{order_by or ''}"

        world = ctx.world
        after = None
        if page_token is not None:
            state = decode_page(world, ctx.cal, page_token, mode)
            snapshot, since, after = state["s"], state.get("t"), tuple(state["k"])
        else:
            snapshot = world.seq
            since = sync_seq(world, ctx.cal, sync_token) if sync_token is not None else None
        q = Query(
            single=single,
            show_deleted=p.get_bool("showDeleted"),
            order_by=order_by,
            time_min=time_min,
            time_max=time_max,
            updated_min=updated_min,
            ical_uid=p.get_str("iCalUID"),
            private_props=parse_props(
                p.get_list("privateExtendedProperty"), "privateExtendedProperty"
            ),
            shared_props=parse_props(
                p.get_list("sharedExtendedProperty"), "sharedExtendedProperty"
            ),
            terms=[t for t in (p.get_str("q") or "").lower().split() if t],
            event_types=set(types) if types else None,
            since=since,
        )
        if single:
            items = collect(world, ctx.cal, q)
        else:  # already after the cursor, in order, one more than a page (is there another?)
            items = collect_plain(world, ctx.cal, q, after, max_results + 1)  # type: ignore[arg-type]
            after = None
        token_state = {"v": 1, "c": ctx.cal.id, "s": snapshot, "t": since, "m": mode}
        page, next_page = cut_page(
            ctx,
            items,
            max_results=max_results,
            after=after,  # type: ignore[arg-type]
            token_state=token_state,
        )
        body = envelope(ctx, snapshot)
        if next_page is not None:
            body["nextPageToken"] = next_page
        else:
            # only the last page carries the sync token: the snapshot taken at the first page
            body["nextSyncToken"] = encode_token({"v": 1, "c": ctx.cal.id, "s": snapshot})
        zone = p.get_zone()
        body["items"] = [view(i, ctx.role, zone) for i in page]
    return respond(request, body)


async def list_instances(request: Request) -> Response:
    ctx = context(request, write=False)
    p = Params(request)
    with ctx.world.lock:
        world = ctx.world
        event_id = request.path_params["eventId"]
        master = ctx.store.get(event_id)
        if master is None or master.data.get("_orphan"):
            raise errors.not_found()
        if master.data.get("status") == "cancelled":
            raise errors.deleted()
        time_min, time_max = p.get_time("timeMin"), p.get_time("timeMax")
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise errors.time_range_empty()
        show_deleted = p.get_bool("showDeleted")
        max_results = p.get_int("maxResults", DEFAULT_PAGE, 1, MAX_PAGE)
        original = p.get_str("originalStart")
        orig_at = parse_dt(original) if original else None
        if original is not None and orig_at is None:
            raise errors.invalid("Invalid value for: originalStart", "originalStart")
        q = Query(
            single=True,
            show_deleted=show_deleted,
            order_by=None,
            time_min=time_min,
            time_max=time_max,
            updated_min=None,
            ical_uid=None,
            private_props=[],
            shared_props=[],
            terms=[],
            event_types=None,
            since=None,
        )
        items: list[Item] = []
        if master.data.get("recurrence"):
            for inst in instances(world, ctx.cal.id, master, time_min, time_max):
                cancelled = inst.data.get("status") == "cancelled"
                if cancelled and not show_deleted:
                    continue
                if orig_at is not None:
                    o_at = instant(inst.orig, ctx.tz)
                    want = orig_at if orig_at.tzinfo else orig_at.replace(tzinfo=ctx.tz)
                    if o_at != want.astimezone(UTC):
                        continue
                if not matches(q, inst.data, ctx.tz):
                    continue
                body = public(inst.data)
                items.append(Item(sort_key(q, inst.data, ctx.tz, 0, inst.updated_ts), body))
        after = None
        page_token = p.get_str("pageToken")
        mode = f"instances:{event_id}"
        snapshot = world.seq
        if page_token is not None:
            state = decode_page(world, ctx.cal, page_token, mode)
            snapshot, after = state["s"], tuple(state["k"])
        page, next_page = cut_page(
            ctx,
            items,
            max_results=max_results,
            after=after,  # type: ignore[arg-type]
            token_state={"v": 1, "c": ctx.cal.id, "s": snapshot, "t": None, "m": mode},
        )
        body = envelope(ctx, snapshot)
        if next_page is not None:
            body["nextPageToken"] = next_page
        zone = p.get_zone()
        body["items"] = [view(i, ctx.role, zone) for i in page]
    return respond(request, body)


# -- get --------------------------------------------------------------------------------------


async def get_event(request: Request) -> Response:
    ctx = context(request, write=False)
    p = Params(request)
    zone = p.get_zone()
    with ctx.world.lock:
        target = find(ctx.world, ctx.cal.id, request.path_params["eventId"])
        if target is None:
            raise errors.not_found()
        data = view(target.data, ctx.role, zone)
        etag = data["etag"]
        wanted = request.headers.get("if-none-match")
        if wanted is not None and etag in [w.strip() for w in wanted.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
    return respond(request, data, etag=etag)
