"""Validate emulator responses against the Calendar discovery document that ships inside
google-api-python-client: no property it does not declare, every type and format right.

    from tests.emulator.schema import assert_matches_schema
    assert_matches_schema(resp.json(), "Events")      # or "Event", "CalendarList", ...
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient

_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@cache
def discovery() -> dict[str, Any]:
    """The static Calendar v3 discovery document bundled with google-api-python-client."""
    path = (
        Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "calendar.v3.json"
    )
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def schema(name: str) -> dict[str, Any]:
    schemas: dict[str, Any] = discovery()["schemas"]
    if name not in schemas:
        raise KeyError(f"the discovery document has no schema {name!r}")
    found: dict[str, Any] = schemas[name]
    return found


def schema_errors(obj: Any, spec: dict[str, Any], path: str = "$") -> list[str]:
    """Every way `obj` departs from `spec` (a discovery schema), as readable strings."""
    if "$ref" in spec:
        return schema_errors(obj, schema(spec["$ref"]), path)
    kind = spec.get("type", "any")
    if kind == "any":
        return []
    if kind == "object":
        if not isinstance(obj, dict):
            return [f"{path}: expected object, got {type(obj).__name__}"]
        props: dict[str, Any] = spec.get("properties", {})
        extra = spec.get("additionalProperties")
        problems: list[str] = []
        for key, value in obj.items():
            if key in props:
                problems += schema_errors(value, props[key], f"{path}.{key}")
            elif extra is not None:
                problems += schema_errors(value, extra, f"{path}[{key!r}]")
            else:
                problems.append(f"{path}: property {key!r} is not declared")
        return problems
    if kind == "array":
        if not isinstance(obj, list):
            return [f"{path}: expected array, got {type(obj).__name__}"]
        items = spec.get("items", {})
        return [p for i, x in enumerate(obj) for p in schema_errors(x, items, f"{path}[{i}]")]
    if kind == "string":
        if not isinstance(obj, str):
            return [f"{path}: expected string, got {type(obj).__name__}"]
        fmt = spec.get("format")
        if fmt == "date-time" and not _DATE_TIME.match(obj):
            return [f"{path}: {obj!r} is not an RFC 3339 date-time"]
        if fmt == "date" and not _DATE.match(obj):
            return [f"{path}: {obj!r} is not a yyyy-mm-dd date"]
        if fmt in ("int64", "uint64") and not re.fullmatch(r"-?\d+", obj):
            return [f"{path}: {obj!r} is not an integer string"]
        enum = spec.get("enum")
        if enum and obj not in enum:
            return [f"{path}: {obj!r} is not one of {enum}"]
        return []
    if kind == "integer":
        if isinstance(obj, bool) or not isinstance(obj, int):
            return [f"{path}: expected integer, got {type(obj).__name__}"]
        return []
    if kind == "number":
        if isinstance(obj, bool) or not isinstance(obj, int | float):
            return [f"{path}: expected number, got {type(obj).__name__}"]
        return []
    if kind == "boolean":
        if not isinstance(obj, bool):
            return [f"{path}: expected boolean, got {type(obj).__name__}"]
        return []
    return [f"{path}: the schema has unknown type {kind!r}"]


def assert_matches_schema(obj: Any, name: str) -> None:
    """Fail with every problem listed if `obj` is not a valid `name` per the discovery document."""
    problems = schema_errors(obj, schema(name), name)
    assert not problems, "\n".join(problems)
