"""`calsync sync --tenant T --user EMAIL [--full]` against a connected user and the emulator."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from calsync.cli import app as cli
from calsync.settings import Settings, get_settings
from calsync.store import crypto
from calsync.store.db import Database
from calsync.store.migrate import upgrade
from tests.calsync.conftest import make_world
from tests.conftest import Emulator

from .conftest import CLIENT_ID, CLIENT_SECRET, PUBLIC_URL, Api, build_app, register_client

ALICE = "alice@example.com"
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> Iterator[str]:
    secret = crypto.generate_key()
    for name, value in {
        "CALSYNC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'calsync.db'}",
        "CALSYNC_SECRET_KEY": secret,
        "CALSYNC_MODE": "production",
        "CALSYNC_PUBLIC_URL": PUBLIC_URL,
        "CALSYNC_GOOGLE_EMULATOR_URL": emulator.url,
        "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID,
        "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "CALSYNC_GOOGLE_REQUESTS_PER_MINUTE": "0",
        "CALSYNC_GOOGLE_MAX_ATTEMPTS": "2",
        "COLUMNS": "160",  # Rich: wide enough for the table on one line per row
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield secret
    get_settings.cache_clear()


def connected_user(emulator: Emulator, secret: str) -> uuid.UUID:
    """A tenant with Alice connected through the real OAuth flow; returns the tenant id."""
    register_client(emulator)
    emulator.account(ALICE, "Alice")
    settings = Settings()
    ring = crypto.Keyring([secret])

    async def setup() -> uuid.UUID:
        db = Database(settings.effective_database_url, pooled=False)
        await upgrade(db)
        application = build_app(settings, db, ring)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://calsync.test") as c:
            world = await make_world(db, c, "Acme")
            api = Api(world, application, emulator)
            user_id, key = await api.user(ALICE)
            await api.connect(user_id, ALICE, key)
            await api.activity(user_id, "Quarterly review")
        await db.dispose()
        return world.tenant_id

    return asyncio.run(setup())


def test_cli_sync_shows_a_summary_table(env: str, emulator: Emulator) -> None:
    tenant_id = connected_user(emulator, env)
    api = Api.__new__(Api)
    api.emu = emulator
    for n in range(3):
        api.insert_event(ALICE, f"Google {n}", days=n + 1)

    result = runner.invoke(cli, ["sync", "--tenant", "Acme", "--user", ALICE])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "calsync sync" in out and "Outcome" in out and "Pulled" in out and "Pushed" in out
    row = next(line for line in out.splitlines() if ALICE in line and "ok" in line)
    numbers = [int(cell) for cell in row.replace("│", " ").split() if cell.isdigit()]
    assert numbers[:3] == [3, 1, 3]  # pulled, pushed, created
    assert "events read" in out  # the progress line
    assert len(api.events(ALICE)) == 4

    again = runner.invoke(cli, ["sync", "--tenant", str(tenant_id), "--user", ALICE, "--full"])
    assert again.exit_code == 0, again.output
    row = next(line for line in again.output.splitlines() if ALICE in line and "ok" in line)
    numbers = [int(cell) for cell in row.replace("│", " ").split() if cell.isdigit()]
    assert numbers[1:3] == [0, 0]  # nothing pushed or created twice

    missing = runner.invoke(cli, ["sync", "--tenant", "Acme", "--user", "nobody@example.com"])
    assert missing.exit_code == 1 and "no user" in missing.output


def test_cli_resume_a_paused_calendar(env: str, emulator: Emulator) -> None:
    """`calsync resume`: --restored with the entries still missing pauses again;
    --confirm-deletions applies them; nothing paused is said plainly (issue 12.2)."""
    connected_user(emulator, env)
    api = Api.__new__(Api)
    api.emu = emulator
    ids = [api.insert_event(ALICE, f"Visit {n}", days=1 + n % 5) for n in range(24)]
    assert runner.invoke(cli, ["sync", "--tenant", "Acme", "--user", ALICE]).exit_code == 0
    with api.google(ALICE) as g:
        for event_id in ids:
            assert g.delete(f"/calendars/{ALICE}/events/{event_id}").status_code == 204
    paused = runner.invoke(cli, ["sync", "--tenant", "Acme", "--user", ALICE])
    assert paused.exit_code == 1 and "paused" in paused.output
    assert "calsync resume" in paused.output  # the remedy names the command

    unsure = runner.invoke(cli, ["resume", "--tenant", "Acme", "--user", ALICE])
    assert unsure.exit_code == 2 and "--confirm-deletions or --restored" in unsure.output
    restored = runner.invoke(cli, ["resume", "--tenant", "Acme", "--user", ALICE, "--restored"])
    assert "nothing will be deleted" in restored.output
    assert restored.exit_code == 1 and "paused" in restored.output  # still missing: again

    confirmed = runner.invoke(
        cli, ["resume", "--tenant", "Acme", "--user", ALICE, "--confirm-deletions"]
    )
    assert confirmed.exit_code == 0, confirmed.output
    assert "the deletions will be applied" in confirmed.output
    row = next(line for line in confirmed.output.splitlines() if ALICE in line and "ok" in line)
    numbers = [int(cell) for cell in row.replace("│", " ").split() if cell.isdigit()]
    assert numbers[4] == 24  # deleted
    assert [e["summary"] for e in api.events(ALICE)] == ["Quarterly review"]

    nothing = runner.invoke(
        cli, ["resume", "--tenant", "Acme", "--user", ALICE, "--confirm-deletions"]
    )
    assert nothing.exit_code == 1 and "Nothing to resume" in nothing.output
