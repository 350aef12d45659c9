"""`calsync ARGS...` under cProfile, its stats written to OUT when it stops (throughput.py's
`--profile`).

    python bench/profiled.py OUT ARGS...

The profile measures CPU time (`time.process_time`: every thread's, so aiosqlite's work shows
under the coroutine that waited for it) and runs only between SIGUSR1 and SIGUSR2, which
throughput.py sends around its phases (not the set-up). `python -m cProfile` would write
nothing for `calsync serve`: after its graceful shutdown uvicorn raises SIGTERM again with the
handler it found at its start, whose default ends the process; here that handler writes the
stats first.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    profile = cProfile.Profile(time.process_time)

    def dump() -> None:
        profile.disable()
        profile.dump_stats(out)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        dump()
        sys.exit(0)

    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    signal.signal(signal.SIGUSR2, lambda *_: profile.disable())
    signal.signal(signal.SIGTERM, stop)
    sys.argv = ["calsync", *args]
    from calsync.cli import main as calsync

    try:
        calsync()
    finally:
        dump()


if __name__ == "__main__":
    main()
