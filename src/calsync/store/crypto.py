"""Secrets at rest: MultiFernet keys from CALSYNC_SECRET_KEY and encrypted column types.

CALSYNC_SECRET_KEY holds comma-separated Fernet keys, newest first. The newest key encrypts every
new write; all keys decrypt, so adding a key in front rotates without downtime, and
`calsync rotate-key` re-encrypts the stored values so the old key can then be removed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

SANDBOX_KEY_FILE = "secret.key"


class SecretKeyError(RuntimeError):
    """The secret key is missing or malformed; the message says exactly what to set."""


class Keyring:
    """The process's Fernet keys: the first one encrypts, every one decrypts."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        fernets = []
        for index, key in enumerate(keys):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError) as exc:
                raise SecretKeyError(
                    f"CALSYNC_SECRET_KEY entry {index + 1} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes). Generate one with "
                    "`calsync generate-key`."
                ) from exc
        self._multi = MultiFernet(fernets)
        self.count = len(fernets)

    @classmethod
    def from_string(cls, value: str) -> Keyring:
        return cls([part.strip() for part in value.split(",") if part.strip()])

    def encrypt(self, data: bytes) -> str:
        return self._multi.encrypt(data).decode("ascii")

    def decrypt(self, token: str) -> bytes:
        try:
            return self._multi.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with any key in CALSYNC_SECRET_KEY; "
                "keep the old key in the list (after the new one) until `calsync rotate-key` ran"
            ) from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt one stored token with the newest key."""
        return self._multi.rotate(token.encode("ascii")).decode("ascii")


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load_keyring(secret_key: str | None, *, sandbox: bool, data_dir: Path) -> Keyring:
    """The keyring from the configured key, a sandbox key file, or a clear refusal."""
    if secret_key and secret_key.strip():
        return Keyring.from_string(secret_key)
    if not sandbox:
        raise SecretKeyError(
            "CALSYNC_SECRET_KEY is not set. calsync encrypts Google tokens and service-account "
            "keys with it and will not start in production without one. Generate a key with "
            "`calsync generate-key` and set CALSYNC_SECRET_KEY=<that key> (comma-separate "
            "several keys, newest first, to rotate)."
        )
    return Keyring([_sandbox_key(data_dir)])


def _sandbox_key(data_dir: Path) -> str:
    path = data_dir / SANDBOX_KEY_FILE
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # as db.private_dir
    try:
        # O_EXCL: two processes starting at once never overwrite each other's key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = generate_key()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)  # the umask cannot widen it
    return key


_current: Keyring | None = None


def install(keyring: Keyring) -> None:
    """Make `keyring` the one the encrypted columns use (one per process)."""
    global _current
    _current = keyring


def current() -> Keyring:
    if _current is None:
        raise SecretKeyError("no secret key installed; call calsync.store.crypto.install() first")
    return _current


@dataclass(frozen=True, slots=True)
class Sealed:
    """A stored secret as read, still encrypted: decrypted when its value is needed (a sync
    reads its connection's tokens at its start, and sends one of them at most)."""

    token: str

    def text(self) -> str:
        return current().decrypt(self.token).decode("utf-8")

    def data(self) -> bytes:
        return current().decrypt(self.token)


def sealed(token: str | None) -> Sealed | None:
    """A stored value read without its column's decryption (None and "" stay nothing)."""
    return Sealed(token) if token else None


class EncryptedBytes(TypeDecorator[bytes]):
    """Bytes stored as a Fernet token (text); the plain value never reaches the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return current().encrypt(bytes(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return current().decrypt(str(value))


class EncryptedText(TypeDecorator[str]):
    """A string stored as a Fernet token (text)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return current().encrypt(value.encode("utf-8"))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return current().decrypt(str(value)).decode("utf-8")
