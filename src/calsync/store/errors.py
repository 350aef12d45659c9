"""What the store refuses, as exceptions the web layer maps onto HTTP answers."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of the store's refusals."""


class AlreadyExists(StoreError):
    """A unique name or e-mail is taken."""


class VersionMismatch(StoreError):
    """Optimistic concurrency: the caller edited an older version."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the current version is {current}")
        self.current = current


class Deleted(StoreError):
    """The row is a tombstone; it can be read but not changed."""
