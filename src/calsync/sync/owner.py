"""Who holds a binding's lock: `host:pid:start` of the process (plus a per-run suffix), so a
process can tell that a lock's holder on its own machine is dead and take the lock at once.

`start` is the process's start time in clock ticks since boot (Linux /proc), so a recycled pid
(a restarted container's pid 1) does not pass for the dead process; elsewhere it is a random
token, and only a vanished pid counts as dead. Holders on other machines are never judged
here: their locks run out when their heartbeat stops (CALSYNC_LOCK_TIMEOUT_SECONDS).
The host part must tell machines apart (hostnames are, in containers and on servers).
"""

from __future__ import annotations

import os
import socket
import uuid
from functools import lru_cache


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            raw = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = raw.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of stat(5)


@lru_cache(maxsize=1)
def _me() -> tuple[str, int, str]:
    pid = os.getpid()
    return socket.gethostname(), pid, _start_ticks(pid) or "r" + uuid.uuid4().hex[:10]


def process_identity() -> str:
    """This process: `host:pid:start`."""
    if _me()[1] != os.getpid():  # forked: a new process
        _me.cache_clear()
    host, pid, start = _me()
    return f"{host}:{pid}:{start}"


def holder_dead(owner: str | None) -> bool:
    """True only when `owner` provably names a process of this machine that no longer runs."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) < 3 or not parts[1].isdigit():
        return False
    host, pid, start = parts[0], int(parts[1]), parts[2]
    my_host, _, my_start = process_identity().split(":")
    if host != my_host:
        return False
    if pid == os.getpid():
        return start != my_start  # our pid, another start: the process before us
    if start.startswith("r"):  # no /proc where it ran: only a vanished pid is known dead
        return not _exists(pid)
    current = _start_ticks(pid)
    if current is None:
        return not _exists(pid)
    return current != start


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
