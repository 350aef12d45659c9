"""The `calsync` command against a SQLite file: migrate, tenant/user/key admin, rotation."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from calsync import runtime
from calsync.cli import app
from calsync.settings import Settings, get_settings
from calsync.store import crypto
from calsync.store.migrate import head_revision
from calsync.web.app import create_app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CALSYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CALSYNC_MODE", "sandbox")
    monkeypatch.delenv("CALSYNC_DATABASE_URL", raising=False)
    monkeypatch.delenv("CALSYNC_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_admin_flow(env: Path) -> None:
    assert run("migrate") == f"database at revision {head_revision()}"
    tenant_id = run("tenant", "create", "Acme")
    assert runner.invoke(app, ["tenant", "create", "Acme"]).exit_code == 1
    user_id = run("user", "create", "--tenant", "Acme", "Ann@Acme.test", "--name", "Ann")
    run("user", "create", "--tenant", tenant_id, "boss@acme.test", "--admin")
    user_key = run("apikey", "create", "--tenant", "Acme", "--user", "ann@acme.test")
    admin_key = run("apikey", "create", "--tenant", "Acme", "--name", "crm")
    assert user_key.startswith("csk_") and admin_key.startswith("csk_") and user_key != admin_key
    failed = runner.invoke(app, ["apikey", "create", "--tenant", "Nope"])
    assert failed.exit_code == 1 and "no tenant" in failed.output
    failed = runner.invoke(
        app, ["apikey", "create", "--tenant", "Acme", "--user", "nobody@acme.test"]
    )
    assert failed.exit_code == 1

    async def use_keys() -> None:
        application = create_app(Settings(data_dir=env, mode="sandbox"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as c:
            me = await c.get("/api/v1/users", headers={"Authorization": f"Bearer {user_key}"})
            assert [u["id"] for u in me.json()["users"]] == [user_id]
            settings = await c.get(
                "/api/v1/tenant/settings", headers={"Authorization": f"Bearer {admin_key}"}
            )
            assert settings.json()["name"] == "Acme"

    asyncio.run(use_keys())
    assert (env / crypto.SANDBOX_KEY_FILE).exists()
    assert run("migrate", "--down", "base") == "database at revision base (empty)"


def test_unknown_tenant_or_user_is_named(env: Path) -> None:
    run("migrate")
    run("tenant", "create", "Acme")
    run("user", "create", "--tenant", "Acme", "ann@acme.test")
    for args, message in [
        (["user", "create", "--tenant", "Nope", "x@acme.test"], "no tenant 'Nope'"),
        (
            ["user", "set-password", "--tenant", "Nope", "--password", "p" * 12, "ann@acme.test"],
            "no tenant 'Nope'",
        ),
        (
            ["user", "set-password", "--tenant", "Acme", "--password", "p" * 12, "x@acme.test"],
            "no user 'x@acme.test' in tenant 'Acme'",
        ),
        (
            ["apikey", "create", "--tenant", "Acme", "--user", "x@acme.test"],
            "no user 'x@acme.test' in tenant 'Acme'",
        ),
    ]:
        failed = runner.invoke(app, args)
        assert failed.exit_code == 1 and message in failed.output, (args, failed.output)
    assert (
        run("user", "set-password", "--tenant", "Acme", "--password", "p" * 12, "ann@acme.test")
        == "password set for ann@acme.test"
    )


def test_rotate_key(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = crypto.generate_key(), crypto.generate_key()
    monkeypatch.setenv("CALSYNC_SECRET_KEY", old)
    get_settings.cache_clear()
    run("migrate")
    run("tenant", "create", "Acme")
    assert "re-encrypted 0" in run("rotate-key")
    monkeypatch.setenv("CALSYNC_SECRET_KEY", f"{new},{old}")
    get_settings.cache_clear()
    assert run("rotate-key").startswith("re-encrypted")


def test_production_without_key_refuses(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALSYNC_MODE", "production")
    get_settings.cache_clear()
    result = runner.invoke(app, ["rotate-key"])
    assert result.exit_code == 1 and "CALSYNC_SECRET_KEY" in result.output


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["migrate"],
        ["tenant", "create"],
        ["user", "create"],
        ["apikey", "create"],
        ["rotate-key"],
        ["generate-key"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert len(result.output.splitlines()) > 3


def test_generate_key_is_a_fernet_key() -> None:
    crypto.Keyring([run("generate-key")])


@pytest.fixture
def keep_keyring() -> Iterator[None]:
    before = crypto._current
    yield
    crypto._current = before


@pytest.mark.usefixtures("keep_keyring")
def test_commands_work_on_a_tenant_with_a_stored_service_account_key(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading such a tenant decrypts its key: the CLI installs the keyring first (issue 13)."""
    key = crypto.generate_key()
    monkeypatch.setenv("CALSYNC_MODE", "production")
    monkeypatch.setenv("CALSYNC_SECRET_KEY", key)
    get_settings.cache_clear()
    run("migrate")
    run("tenant", "create", "Acme")

    async def store_key() -> None:
        from calsync.store import tenants
        from calsync.store.db import Database

        crypto.install(crypto.Keyring([key]))
        db = Database(get_settings().effective_database_url, pooled=False)
        async with db.session() as s:
            tenant = await tenants.find(s, "Acme")
            assert tenant is not None
            tenant.service_account_key = b'{"type": "service_account"}'
            await s.commit()
        await db.dispose()

    asyncio.run(store_key())
    crypto._current = None  # a fresh `calsync` process has no keyring until it loads one
    run("user", "create", "--tenant", "Acme", "ann@acme.test")
    assert run("apikey", "create", "--tenant", "Acme", "--user", "ann@acme.test").startswith("csk_")
    assert run(
        "user", "set-password", "--tenant", "Acme", "--password", "p" * 12, "ann@acme.test"
    ).startswith("password set for ann@acme.test")


def test_set_password_ends_the_users_page_sessions(env: Path) -> None:
    run("migrate")
    run("tenant", "create", "Acme")
    run("user", "create", "--tenant", "Acme", "ann@acme.test")
    run("user", "set-password", "--tenant", "Acme", "--password", "first password", "ann@acme.test")

    async def log_in() -> dict[str, str]:
        application = create_app(Settings(data_dir=env, mode="sandbox"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as c:
            page = await c.get("/login")
            token = page.text.split('name="csrf" value="')[1].split('"')[0]
            resp = await c.post(
                "/login",
                data={"csrf": token, "email": "ann@acme.test", "password": "first password"},
            )
            assert resp.status_code == 303
            assert (await c.get("/calendar")).status_code == 200
            return dict(c.cookies)

    async def still_in(cookies: dict[str, str]) -> bool:
        application = create_app(Settings(data_dir=env, mode="sandbox"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t", cookies=cookies
        ) as c:
            return (await c.get("/calendar")).status_code == 200

    cookies = asyncio.run(log_in())
    assert asyncio.run(still_in(cookies))
    out = run(
        "user", "set-password", "--tenant", "Acme", "--password", "second password", "ann@acme.test"
    )
    assert out == "password set for ann@acme.test; ended 1 page sessions"
    assert not asyncio.run(still_in(cookies))


@pytest.fixture
def gc_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's default
    yield before
    gc.set_threshold(*before)


def test_the_commands_that_sync_make_collections_rarer(
    env: Path, monkeypatch: pytest.MonkeyPatch, gc_threshold: tuple[int, int, int]
) -> None:
    """`serve`, `worker` and `sync` set the process's GC policy (calsync.runtime): a large
    import's pages made CPython walk the whole heap once per page at its default."""
    import uvicorn

    from calsync.cli import sync as sync_command
    from calsync.cli import worker as worker_command

    async def no_jobs(*args: object) -> None:
        return None

    async def no_sync(*args: object) -> int:
        return 0

    monkeypatch.setenv("CALSYNC_GOOGLE_EMULATOR_URL", "http://127.0.0.1:9")  # no sandbox started
    get_settings.cache_clear()
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setattr(worker_command, "serve_jobs", no_jobs)
    monkeypatch.setattr(sync_command, "_sync", no_sync)
    for command in (
        ["serve", "--no-migrate"],
        ["worker"],
        ["sync", "--tenant", "t", "--user", "u"],
    ):
        gc.set_threshold(700, 10, 10)
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
        assert gc.get_threshold() == (
            runtime.YOUNG_COLLECTION_AFTER,
            10,
            runtime.FULL_COLLECTION_EVERY,
        ), command


@pytest.mark.parametrize(
    ("env", "expected"),
    [(None, 75), ("600", 600)],
)
def test_serve_keeps_idle_connections_open_longer_than_a_load_balancer(
    monkeypatch: pytest.MonkeyPatch, env: str | None, expected: int
) -> None:
    """uvicorn's own 5 s closed a client's idle keep-alive connection while the client sent
    its next request on it (httpx ReadError in bench/api_load.py; behind a load balancer that
    keeps idle connections 60 s, a 502). CALSYNC_KEEP_ALIVE_SECONDS, default 75."""
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setenv("CALSYNC_GOOGLE_EMULATOR_URL", "http://127.0.0.1:9")  # no sandbox started
    if env is None:
        monkeypatch.delenv("CALSYNC_KEEP_ALIVE_SECONDS", raising=False)
    else:
        monkeypatch.setenv("CALSYNC_KEEP_ALIVE_SECONDS", env)
    get_settings.cache_clear()
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    result = runner.invoke(app, ["serve", "--no-migrate"])
    assert result.exit_code == 0, result.output
    assert seen["timeout_keep_alive"] == expected


def test_a_keep_alive_below_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_alive_seconds"):
        Settings(keep_alive_seconds=0)
