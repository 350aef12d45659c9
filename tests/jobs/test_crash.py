"""Issue 13 item 2, end to end: the real `calsync serve` (and, with procrastinate, `calsync
worker`) killed with SIGKILL right after it acknowledged a change, then started again: the
change arrives within 10 s of the restart, with both runners (procrastinate only on PostgreSQL).

1. Google → CRM: an event is made in Google, its notification answered 200, and the process
   killed while the sync it started is in flight (Google answers slowly); after the restart the
   event is an activity.
2. CRM → Google: an activity is created through the API (201) and the process killed at once,
   inside the debounce window; after the restart the event is in Google.

The timings are those of production (20 s lock timeout, 5 s heartbeats, a healthy channel so
the safety poll is 6 h away): only the start-up recovery can make the 10 s. The figures
(restart → arrival) are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from calsync.jobs.procrastinate_runner import apply_schema
from calsync.store import apikeys, bindings
from calsync.store import channels as stored
from calsync.store.base import utcnow
from calsync.store.models import Activity
from calsync.sync.engine import sync_binding
from tests.jobs.conftest import Harness, at, worker_env
from tests.sandbox.test_serve import free_port

ARRIVAL_SECONDS = 10.0


class Calsync:
    """`calsync serve` (+ `calsync worker` for procrastinate) on one port, killable."""

    def __init__(self, env: dict[str, str], kind: str, logs: Path) -> None:
        self.env, self.kind, self.logs = env, kind, logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []  # every one started
        self.current: list[subprocess.Popen[bytes]] = []  # those of the last start

    def start(self) -> float:
        started = time.monotonic()
        cli = [sys.executable, "-c", "from calsync.cli import main; main()"]
        commands = [[*cli, "serve", "--port", str(self.port)]]
        if self.kind == "procrastinate":
            commands.append([*cli, "worker"])
        self.current = []
        for n, command in enumerate(commands):
            err = (self.logs / f"stderr-{len(self.procs)}-{n}.txt").open("wb")
            proc = subprocess.Popen(command, env=self.env, stdout=err, stderr=subprocess.STDOUT)
            self.procs.append(proc)
            self.current.append(proc)
        return started

    async def ready(self) -> None:
        deadline = time.monotonic() + 180
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                for proc in self.current:
                    assert proc.poll() is None, self.stderr()
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("calsync did not start: " + self.stderr())

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stderr(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.logs.glob("stderr-*.txt")))


async def wait_for(check: Any, within: float) -> float:
    """Seconds until `check()` holds (AssertionError after `within`)."""
    begun = time.monotonic()
    while not await check():
        if time.monotonic() - begun > within:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)
    return time.monotonic() - begun


async def restart_until(app: Calsync, arrived: Any) -> float:
    """Start calsync again; seconds from the moment it answers /readyz until `arrived()` (0
    when it arrived while the process started). Also prints the time from the spawn: on a
    loaded machine the interpreter's start alone can take longer than the recovery."""
    spawned = app.start()
    await app.ready()
    ready = time.monotonic()
    await wait_for(arrived, ARRIVAL_SECONDS + 20)
    done = time.monotonic()
    print(f"  spawn → ready {ready - spawned:.1f} s, ready → arrival {done - ready:.1f} s")
    return done - ready


async def test_acknowledged_changes_survive_kill_9(
    h: Harness, kind: str, db_url: str, secret: str, tmp_path: Path
) -> None:
    if kind == "procrastinate":
        await apply_schema(db_url)
    # synced once, with a healthy push channel: no poll is due for hours
    assert (await sync_binding(h.db, h.binding_id, h.google)).ok
    async with h.db.session() as s:
        await stored.replace(
            s,
            stored.EVENTS,
            h.binding_id,
            expected=None,
            channel_id=f"{h.binding_id.hex}-crash",
            resource_id="resource-crash",
            token="token-crash",
            expires_at=utcnow() + timedelta(days=6),
        )
        _, key = await apikeys.create(s, h.tenant_id, user_id=h.user_id, name="crm")
        await s.commit()
    env = worker_env(
        h,
        db_url,
        secret,
        kind,
        lock_timeout_seconds=20,
        lock_heartbeat_seconds=5,
        worker_heartbeat_seconds=5,
        worker_stalled_seconds=20,
        poll_tick_seconds=10,
        stuck_tick_seconds=30,
        recovery_tick_seconds=60,
        change_debounce_seconds=1,
        webhook_url="http://127.0.0.1:9/unused",
    )
    app = Calsync(env, kind, tmp_path)
    figures: dict[str, float] = {}
    try:
        app.start()
        await app.ready()

        # 1. Google → CRM: answered 200, killed mid-sync
        await h.person.insert_event(
            h.calendar_id,
            {
                "summary": "Made in Google before the crash",
                "start": {"dateTime": at(4, 9).isoformat(), "timeZone": "Europe/Oslo"},
                "end": {"dateTime": at(4, 10).isoformat(), "timeZone": "Europe/Oslo"},
            },
        )
        h.emu.control("POST", "/latency", {"ms": 3000})
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(
                f"{app.url}/webhooks/google",
                headers={
                    "X-Goog-Channel-ID": f"{h.binding_id.hex}-crash",
                    "X-Goog-Channel-Token": "token-crash",
                    "X-Goog-Resource-ID": "resource-crash",
                    "X-Goog-Resource-State": "exists",
                    "X-Goog-Message-Number": "2",
                },
            )
        assert resp.status_code == 200

        async def locked() -> bool:
            async with h.db.session() as s:
                found = await bindings.get(s, h.binding_id)
                return found is not None and found.locked_by is not None

        await wait_for(locked, 10)  # the sync is in flight
        app.kill()
        h.emu.control("POST", "/latency", {"ms": 0})

        async def imported() -> bool:
            async with h.db.session() as s:
                found = await s.scalar(
                    select(Activity.id).where(
                        Activity.tenant_id == h.tenant_id,
                        Activity.subject == "Made in Google before the crash",
                    )
                )
                return found is not None

        assert not await imported()
        figures["webhook"] = await restart_until(app, imported)

        # 2. CRM → Google: answered 201, killed inside the debounce window
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(
                f"{app.url}/api/v1/activities",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "subject": "Made in the CRM before the crash",
                    "start": at(5, 9).isoformat(),
                    "end": at(5, 10).isoformat(),
                    "time_zone": "Europe/Oslo",
                    "owner_id": str(h.user_id),
                },
            )
        assert resp.status_code == 201, resp.text
        app.kill()

        async def exported() -> bool:
            return "Made in the CRM before the crash" in [e.summary for e in await h.events()]

        assert not await exported()
        figures["crm_edit"] = await restart_until(app, exported)
    finally:
        app.stop()
    line = ", ".join(f"{k} {v:.1f} s" for k, v in figures.items())
    print(f"\ncrash test [{kind}, {os.path.basename(db_url)[:40]}]: restart → arrival: {line}")
    assert all(v < ARRIVAL_SECONDS for v in figures.values()), (figures, app.stderr())
