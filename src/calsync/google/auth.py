"""Where the Calendar client gets its bearer tokens: a user's OAuth grant or a service account.

The client only needs `TokenProvider`; `CachedTokenProvider` is the shared machinery: keep the
current token until shortly before it expires, and refresh under one asyncio.Lock per provider
so concurrent callers of one connection never refresh twice (share one provider per connection).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from calsync import clock as wall

from .errors import TokenExpired
from .models import OAuthToken


@runtime_checkable
class TokenProvider(Protocol):
    @property
    def account(self) -> str:
        """The Google account acted for (rate-limit key, logs)."""
        ...

    async def access_token(self) -> str:
        """A token believed valid now."""
        ...

    async def refresh(self, rejected: str | None = None) -> str:
        """A new token after Google rejected `rejected` with 401 (no-op if already replaced)."""
        ...


class CachedTokenProvider(ABC):
    """Caches a token until `leeway` seconds before expiry; refreshes are serialised."""

    leeway: float = 60.0

    def __init__(
        self,
        account: str,
        *,
        token: OAuthToken | None = None,
        on_token: Callable[[OAuthToken], Awaitable[None]] | None = None,
        clock: Callable[[], float] = wall.now,
    ) -> None:
        self._account = account
        self._token = token
        self._on_token = on_token
        self._clock = clock
        self._lock = asyncio.Lock()
        self.refresh_count = 0  # how many times a new token was fetched (tests, metrics)

    @property
    def account(self) -> str:
        return self._account

    @property
    def token(self) -> OAuthToken | None:
        return self._token

    def _fresh(self, token: OAuthToken | None) -> bool:
        if token is None:
            return False
        if token.expires_at is None:
            return True
        return token.expires_at - self.leeway > self._clock()

    async def access_token(self) -> str:
        token = self._token
        if token is not None and self._fresh(token):
            return token.access_token
        return await self.refresh(rejected=token.access_token if token else None)

    async def refresh(self, rejected: str | None = None) -> str:
        async with self._lock:
            current = self._token
            # another caller replaced the rejected/expired token while we waited for the lock
            if current is not None and current.access_token != rejected and self._fresh(current):
                return current.access_token
            new = await self._fetch()
            if new.expires_at is None and new.expires_in is not None:
                new.expires_at = self._clock() + new.expires_in
            self._token = new
            self.refresh_count += 1
            if self._on_token is not None:
                await self._on_token(new)
            return new.access_token

    @abstractmethod
    async def _fetch(self) -> OAuthToken:
        """Get a brand-new access token from Google."""


class StaticToken:
    """A fixed access token (scripts, tests); it cannot be refreshed."""

    def __init__(self, token: str, account: str = "static") -> None:
        self._token = token
        self._account = account

    @property
    def account(self) -> str:
        return self._account

    async def access_token(self) -> str:
        return self._token

    async def refresh(self, rejected: str | None = None) -> str:
        raise TokenExpired("The fixed access token was rejected and cannot be refreshed.")
