"""calsync's SQLite file is its owner's alone (issue 13, item 7): created 0600 (with its -wal
and -shm files), in a data directory created 0700, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from calsync.settings import Settings
from calsync.store.bootstrap import database_for
from calsync.store.db import Database, private_sqlite_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files 0644, directories 0755
    yield
    os.umask(old)


@pytest.mark.usefixtures("open_umask")
async def test_the_database_file_and_data_dir_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "state" / "data"
    db = database_for(Settings(data_dir=data_dir, mode="sandbox"), pooled=False)
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (1)"))
    file = data_dir / "calsync.db"
    assert mode(data_dir) == 0o700
    assert mode(file) == 0o600
    for extra in (Path(f"{file}-wal"), Path(f"{file}-shm")):
        if extra.exists():
            assert mode(extra) == 0o600, extra
    await db.dispose()


@pytest.mark.usefixtures("open_umask")
def test_an_existing_file_and_directory_keep_their_modes(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    file = tmp_path / "kept.db"
    file.write_bytes(b"")
    file.chmod(0o640)
    assert private_sqlite_file(f"sqlite+aiosqlite:///{file}") == file
    assert mode(file) == 0o640 and mode(tmp_path) == 0o750


def test_memory_and_server_databases_create_no_file(tmp_path: Path) -> None:
    assert private_sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert private_sqlite_file("postgresql+asyncpg://u@h/db") is None
    Database("sqlite+aiosqlite://", pooled=False)
    assert list(tmp_path.iterdir()) == []
