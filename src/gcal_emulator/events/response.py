"""What a response shows: the `fields` partial-response selection and the reader's view of an
event (private details hidden, times in the requested zone).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import errors
from .wire import fmt_time, parse_dt

# A small parser for the `fields` parameter: `a,b/c,items(id,start(dateTime))`. It builds a tree
# of selected keys (None = the whole value) and keeps only those keys, descending into lists.

Tree = dict[str, "Tree | None"]


def _parse_fields(spec: str) -> Tree:
    pos = 0

    def parse_list(until: str | None) -> Tree:
        nonlocal pos
        tree: Tree = {}
        while pos < len(spec):
            if until and spec[pos] == until:
                pos += 1
                return tree
            start = pos
            while pos < len(spec) and spec[pos] not in ",()":
                pos += 1
            path = [p.strip() for p in spec[start:pos].split("/") if p.strip()]
            sub: Tree | None = None
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = parse_list(")")
            if path:
                node = tree
                for part in path[:-1]:
                    nxt = node.get(part)
                    if nxt is None:
                        nxt = {}
                        node[part] = nxt
                    node = nxt
                _merge_tree(node, path[-1], sub)
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
        if until:
            raise errors.invalid("Invalid field selection", "fields")
        return tree

    return parse_list(None)


def _merge_tree(node: Tree, key: str, sub: Tree | None) -> None:
    if key in node and node[key] is not None and sub is not None:
        existing = node[key]
        assert existing is not None
        for k, v in sub.items():
            _merge_tree(existing, k, v)
    elif key in node and (node[key] is None or sub is None):
        node[key] = None
    else:
        node[key] = sub


def _select(obj: Any, tree: Tree | None) -> Any:
    if tree is None:
        return obj
    if isinstance(obj, list):
        return [_select(x, tree) for x in obj]
    if isinstance(obj, dict):
        return {k: _select(obj[k], sub) for k, sub in tree.items() if k in obj}
    return obj


def respond(
    request: Request, body: dict[str, Any], status: int = 200, etag: str | None = None
) -> Response:
    spec = request.query_params.get("fields")
    if spec:
        body = _select(body, _parse_fields(spec))
    headers = {"ETag": etag} if etag else None
    return JSONResponse(body, status_code=status, headers=headers)


# what a reader sees of a private or confidential event: when, not what
_READER_FIELDS = (
    "kind",
    "etag",
    "id",
    "status",
    "htmlLink",
    "created",
    "updated",
    "start",
    "end",
    "endTimeUnspecified",
    "recurrence",
    "recurringEventId",
    "originalStartTime",
    "transparency",
    "visibility",
    "iCalUID",
    "sequence",
    "eventType",
)


def view(data: dict[str, Any], role: str, zone: ZoneInfo | None) -> dict[str, Any]:
    """An event as this reader sees it: private details hidden from readers, times written in
    the zone the `timeZone` parameter asked for."""
    out = data
    if role == "reader" and data.get("visibility") in ("private", "confidential"):
        out = {k: data[k] for k in _READER_FIELDS if k in data}
    if zone is not None:
        out = dict(out)
        for key in ("start", "end", "originalStartTime"):
            t = out.get(key)
            if isinstance(t, dict) and "dateTime" in t:
                dt = parse_dt(t["dateTime"])
                if dt is not None and dt.tzinfo is not None:
                    out[key] = {**t, "dateTime": fmt_time(dt.astimezone(zone))}
    return out
