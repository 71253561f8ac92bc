"""The long-lived objects handlers use, carried in the application instead of globals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.config import Config
from bot.providers.service import ProviderService
from bot.storage.store import Store
from bot.streaming.outbox import Outbox


class KeyedLocks:
    """One FIFO lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold the lock for ``key``; callers queue in arrival order."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def busy(self, key: Hashable) -> bool:
        """Whether someone holds or waits for ``key``."""
        return key in self._locks


@dataclass
class Services:
    """Everything a handler needs beyond the update itself."""

    config: Config
    store: Store
    providers: ProviderService
    outbox: Outbox
    conversations: KeyedLocks = field(default_factory=KeyedLocks)
