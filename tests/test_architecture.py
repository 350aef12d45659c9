"""The layering of docs/architecture.md, checked on every `make test`.

Read with the standard library's ast (no import is executed): every `import` anywhere in a
module counts, including the ones inside functions, because an import deferred to dodge a cycle
is still an edge in the wrong direction. Imports under `if TYPE_CHECKING:` count for the
direction too, but not for cycles (they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CALSYNC = SRC / "calsync"
EMULATOR = SRC / "gcal_emulator"
MAX_LINES = 600

# bottom → top: a module may import its own layer and any layer of a lower rank
LAYERS: dict[str, int] = {
    "base": 0,  # calsync/__init__, settings, obs, i18n, clock, runtime: imported by everything
    "domain": 1,
    "google": 2,
    "store": 2,
    "sync": 3,
    "jobs": 4,
    "doctor": 4,
    "web": 5,
    "cli": 6,
}
BASE = {
    "calsync",
    "calsync.settings",
    "calsync.obs",
    "calsync.i18n",
    "calsync.clock",
    "calsync.runtime",
}
# same rank, and still not allowed to know each other
APART = {frozenset({"google", "store"}), frozenset({"jobs", "doctor"})}
# SQL is built in store/ only; the rest may name a session, a driver error or a URL
SQL_OUTSIDE_STORE_ALLOWED = ("sqlalchemy.ext.asyncio", "sqlalchemy.exc", "sqlalchemy.engine")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "base"


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, runs at import time?) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_lines(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        runs = getattr(node, "lineno", 0) not in typing_only
        if isinstance(node, ast.Import):
            found += [(alias.name, runs) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, runs))
            # `from calsync.x import y` may name a module y
            found += [(f"{target}.{alias.name}", runs) for alias in node.names]
    return found


def _known(modules: set[str], name: str) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = _sources(CALSYNC)
    modules = {module_name(p) for p in files}
    every: dict[str, set[str]] = defaultdict(set)
    runtime: dict[str, set[str]] = defaultdict(set)
    for path in files:
        me = module_name(path)
        for name, runs in imports_of(path):
            target = _known(modules, name)
            if target is None or target == me:
                continue
            every[me].add(target)
            if runs:
                runtime[me].add(target)
    return every, runtime


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = sorted(
        m for m in (module_name(p) for p in _sources(CALSYNC)) if layer_of(m) not in LAYERS
    )
    assert unknown == [], f"modules outside every layer of docs/architecture.md: {unknown}"


def test_dependencies_point_down() -> None:
    every, _ = _graph()
    wrong = []
    for source, targets in sorted(every.items()):
        for target in sorted(targets):
            a, b = layer_of(source), layer_of(target)
            if a == b:
                continue
            if LAYERS[b] > LAYERS[a] or frozenset({a, b}) in APART:
                wrong.append(f"{source} ({a}) -> {target} ({b})")
    assert wrong == [], "imports against the layering:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    _, runtime = _graph()
    # Tarjan's strongly connected components; any component of two or more is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(runtime.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(runtime):
        if node not in index:
            visit(node)
    # a package's __init__ importing its own submodules is not a cycle worth naming
    cycles = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert cycles == [], f"import cycles: {cycles}"


def test_sql_is_built_in_store_only() -> None:
    wrong = []
    for path in _sources(CALSYNC):
        me = module_name(path)
        if layer_of(me) == "store":
            continue
        for name, _ in imports_of(path):
            if name == "sqlalchemy" or (
                name.startswith("sqlalchemy.") and not name.startswith(SQL_OUTSIDE_STORE_ALLOWED)
            ):
                wrong.append(f"{me}: {name}")
    assert wrong == [], "SQL outside store/:\n" + "\n".join(sorted(set(wrong)))


# keys only Google's JSON uses (calsync's own models name them in snake_case)
WIRE_KEYS = {"dateTime", "timeZone", "extendedProperties", "originalStartTime", "iCalUID"}


def test_googles_wire_format_is_spelled_in_google_only() -> None:
    wrong = []
    for path in _sources(CALSYNC):
        me = module_name(path)
        if layer_of(me) == "google":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in WIRE_KEYS:
                wrong.append(f"{me}:{node.lineno} {node.value!r}")
    assert wrong == [], "Google's JSON outside google/:\n" + "\n".join(wrong)


def test_the_emulator_knows_nothing_of_calsync() -> None:
    wrong = [
        f"{module_name(p)}: {name}"
        for p in _sources(EMULATOR)
        for name, _ in imports_of(p)
        if name == "calsync" or name.startswith("calsync.")
    ]
    assert wrong == []


@pytest.mark.parametrize("root", [CALSYNC, EMULATOR], ids=["calsync", "gcal_emulator"])
def test_no_source_module_over_600_lines(root: Path) -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _sources(root)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these by concern (limit {MAX_LINES} lines): {long}"
