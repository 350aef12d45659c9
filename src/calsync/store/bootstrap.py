"""The database and the keyring a process opens from its settings.

Below web and cli on purpose: `calsync serve` (through web/app.py), every `calsync` command and
the doctor open the same database and decrypt with the same keys, so the rules for where they
come from (a private data dir for the default SQLite file, a sandbox key file) live once, here.
"""

from __future__ import annotations

from calsync.settings import Settings

from . import crypto
from .db import Database, private_dir


def keyring_for(settings: Settings) -> crypto.Keyring:
    """The configured keys; a sandbox key file; or SecretKeyError saying what to set."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    return crypto.load_keyring(secret, sandbox=settings.sandbox, data_dir=settings.data_dir)


def database_for(settings: Settings, *, pooled: bool = True) -> Database:
    """The configured database; the default SQLite file's data dir is made private first."""
    if not settings.database_url:
        private_dir(settings.data_dir)
    return Database(
        settings.effective_database_url,
        pooled=pooled,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
