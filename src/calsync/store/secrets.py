"""Re-encryption of every stored secret with the newest key (`calsync rotate-key`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table, Text, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from .base import Base
from .crypto import EncryptedBytes, EncryptedText, Keyring


def encrypted_columns() -> list[tuple[Table, Column[Any]]]:
    """Every column whose type encrypts, found from the models so none is forgotten."""
    found = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedBytes | EncryptedText):
                found.append((table, column))
    return found


async def rotate(session: AsyncSession, keyring: Keyring) -> int:
    """Re-encrypt every stored token with the keyring's newest key; returns how many."""
    count = 0
    for table, column in encrypted_columns():
        pk = list(table.primary_key.columns)
        # type_coerce to Text reads and writes the raw token, bypassing the column's own crypto
        rows = await session.execute(
            select(*pk, type_coerce(column, Text())).where(column.is_not(None))
        )
        for row in rows.all():
            *keys, stored = row
            where = [c == v for c, v in zip(pk, keys, strict=True)]
            rotated = type_coerce(keyring.rotate(stored), Text())
            await session.execute(update(table).where(*where).values({column.name: rotated}))
            count += 1
    return count
