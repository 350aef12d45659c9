"""Keys: rotation order, the sandbox key file, and production refusing to start without one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from calsync.settings import Settings
from calsync.store import crypto
from calsync.store.bootstrap import keyring_for
from calsync.web.app import create_app


def test_newest_key_encrypts_and_old_keys_decrypt() -> None:
    old, new = crypto.generate_key(), crypto.generate_key()
    token = crypto.Keyring([old]).encrypt(b"secret")
    both = crypto.Keyring.from_string(f"{new}, {old}")
    assert both.decrypt(token) == b"secret"
    fresh = both.encrypt(b"secret")
    Fernet(new).decrypt(fresh.encode())  # written with the newest key
    with pytest.raises(crypto.SecretKeyError):
        crypto.Keyring([new]).decrypt(token)
    assert crypto.Keyring([new]).decrypt(both.rotate(token)) == b"secret"


def test_malformed_key_says_what_to_do() -> None:
    with pytest.raises(crypto.SecretKeyError, match="calsync generate-key"):
        crypto.Keyring.from_string("not-a-key")


def test_sandbox_creates_a_private_key_file_once(tmp_path: Path) -> None:
    first = crypto.load_keyring(None, sandbox=True, data_dir=tmp_path / "data")
    path = tmp_path / "data" / crypto.SANDBOX_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = crypto.load_keyring(None, sandbox=True, data_dir=tmp_path / "data")
    assert second.decrypt(first.encrypt(b"x")) == b"x"


def test_production_without_key_refuses_and_names_the_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mode="production", secret_key=None)
    with pytest.raises(crypto.SecretKeyError, match="CALSYNC_SECRET_KEY") as info:
        create_app(settings)
    assert "calsync generate-key" in str(info.value)
    assert not (tmp_path / crypto.SANDBOX_KEY_FILE).exists()


def test_auto_mode_is_production_once_google_is_configured(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        google_client_id="id",
        google_client_secret="secret",  # type: ignore[arg-type]
    )
    assert not settings.sandbox
    with pytest.raises(crypto.SecretKeyError):
        keyring_for(settings)
    assert Settings(data_dir=tmp_path).sandbox


def test_configured_key_is_used(tmp_path: Path) -> None:
    key = crypto.generate_key()
    ring = keyring_for(Settings(data_dir=tmp_path, mode="production", secret_key=key))  # type: ignore[arg-type]
    assert Fernet(key).decrypt(ring.encrypt(b"x").encode()) == b"x"
