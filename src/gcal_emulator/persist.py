"""`--state FILE`: the world survives restarts.

Loaded at startup when the file exists, saved atomically every `SAVE_INTERVAL_SECONDS` while
running (only when something changed) and once more at shutdown. The file is JSON with tagged
sets, tuples and the emulator's own dataclasses, so it is readable, diffable and loading it
never runs code. Locks, listeners, rate windows and the request log are not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from .state import World

FORMAT = "gcal_emulator-state"
VERSION = 1
SAVE_INTERVAL_SECONDS = 30.0
# World attributes that are machinery or diagnostics, not state
NOT_SAVED = frozenset(
    {"config", "clock", "lock", "change_listeners", "user_windows", "project_windows", "requests"}
)

log = logging.getLogger(__name__)
routes: list[BaseRoute] = []


class StateFileError(RuntimeError):
    """The state file cannot be read back; the emulator refuses to start rather than lose it."""


class _Unencodable(TypeError):
    pass


def encode(value: Any) -> Any:
    """A JSON-ready copy of `value` (shares nothing mutable with it)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__items__": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, frozenset):
        return {"__frozenset__": [encode(v) for v in value]}
    if isinstance(value, set):
        return {"__set__": [encode(v) for v in value]}
    if isinstance(value, deque):
        return {"__deque__": [encode(v) for v in value]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not cls.__module__.startswith("gcal_emulator."):
            raise _Unencodable(f"{cls.__module__}.{cls.__qualname__}")
        return {
            "__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
            "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    raise _Unencodable(type(value).__name__)


def _dataclass(name: str, fields: dict[str, Any]) -> Any:
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith("gcal_emulator."):
        raise StateFileError(f"unexpected type in state file: {name}")
    cls: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise StateFileError(f"unexpected type in state file: {name}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    init = {k: decode(v) for k, v in fields.items() if k in known and known[k].init}
    obj = cls(**init)
    for k, v in fields.items():
        if k in known and not known[k].init:
            setattr(obj, k, decode(v))
    return obj


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "__items__":
            return {decode(k): decode(v) for k, v in inner}
        if tag == "__tuple__":
            return tuple(decode(v) for v in inner)
        if tag == "__frozenset__":
            return frozenset(decode(v) for v in inner)
        if tag == "__set__":
            return {decode(v) for v in inner}
        if tag == "__deque__":
            return deque(decode(v) for v in inner)
    if "__dataclass__" in value:
        return _dataclass(value["__dataclass__"], value.get("fields", {}))
    return {k: decode(v) for k, v in value.items()}


def snapshot(world: World) -> dict[str, Any]:
    """Everything worth keeping, as JSON-ready data (taken under the world lock)."""
    saved: dict[str, Any] = {}
    with world.lock:
        for name, value in vars(world).items():
            if name in NOT_SAVED or name.startswith("_"):
                continue
            try:
                saved[name] = encode(value)
            except _Unencodable as exc:
                log.warning("state: not saving World.%s (cannot encode %s)", name, exc)
        offset = world.clock.offset
    return {"format": FORMAT, "version": VERSION, "clock_offset": offset, "world": saved}


def restore(world: World, data: dict[str, Any]) -> None:
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise StateFileError("not a gcal_emulator state file of a version this emulator reads")
    try:
        values = {name: decode(value) for name, value in data["world"].items()}
    except (TypeError, ValueError, KeyError, AttributeError, ImportError) as exc:
        raise StateFileError(f"state file does not fit this emulator's state: {exc}") from exc
    with world.lock:
        world.reset()
        for name, value in values.items():
            if hasattr(world, name) and name not in NOT_SAVED:
                setattr(world, name, value)
        world.clock.offset = max(world.clock.offset, float(data.get("clock_offset", 0.0)))


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def dumps(world: World) -> str:
    return json.dumps(snapshot(world), separators=(",", ":"))


def save(world: World, path: str | os.PathLike[str]) -> None:
    write_atomically(path, dumps(world))


def load(world: World, path: str | os.PathLike[str]) -> bool:
    """Load `path` into `world`; False when there is no such file yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"{path} is not JSON: {exc}") from exc
    restore(world, data)
    return True


class Saver:
    """Saves the app's world to its state file now and then, and at shutdown."""

    def __init__(self, world: World, path: str, interval: float) -> None:
        self.world = world
        self.path = path
        self.interval = interval
        self.last: str | None = None
        self.task: asyncio.Task[None] | None = None

    async def save_if_changed(self) -> None:
        text = dumps(self.world)  # on the loop: handlers do not mutate mid-snapshot
        if text != self.last:
            await asyncio.to_thread(write_atomically, self.path, text)
            self.last = text

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.save_if_changed()
            except OSError as exc:
                log.error("state: could not save %s: %s", self.path, exc)


async def on_startup(app: Starlette) -> None:
    path: str | None = getattr(app.state, "state_file", None)
    if not path:
        return
    world: World = app.state.world
    loaded = load(world, path)
    if loaded:
        log.info("state: loaded %s", path)
    interval = float(getattr(app.state, "state_save_interval", SAVE_INTERVAL_SECONDS))
    saver = Saver(world, path, interval)
    saver.last = dumps(world) if loaded else None
    saver.task = asyncio.get_running_loop().create_task(saver.run())
    app.state.state_saver = saver


async def on_shutdown(app: Starlette) -> None:
    saver: Saver | None = getattr(app.state, "state_saver", None)
    if saver is None:
        return
    if saver.task is not None:
        saver.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await saver.task
    save(saver.world, saver.path)
    app.state.state_saver = None
