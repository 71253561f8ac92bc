"""Answers in flight: one per conversation at a time, and the signals that stop them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from enum import Enum


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


class StopOutcome(Enum):
    """What a stop request did."""

    STOPPING = "stopping"
    NOT_ALLOWED = "not_allowed"
    FINISHED = "finished"


class StopSignals:
    """The answers streaming now, by answer id, and who may stop each."""

    def __init__(self) -> None:
        self._active: dict[int, tuple[int | None, asyncio.Event]] = {}

    @contextmanager
    def track(self, answer_id: int, owner_id: int | None) -> Iterator[asyncio.Event]:
        """Register an answer while it streams; the event is set when a stop is requested."""
        event = asyncio.Event()
        self._active[answer_id] = (owner_id, event)
        try:
            yield event
        finally:
            del self._active[answer_id]

    def request(self, answer_id: int, user_id: int | None, *, privileged: bool) -> StopOutcome:
        """Stop ``answer_id`` if ``user_id`` asked for it or is ``privileged``."""
        entry = self._active.get(answer_id)
        if entry is None:
            return StopOutcome.FINISHED
        owner_id, event = entry
        if not privileged and user_id != owner_id:
            return StopOutcome.NOT_ALLOWED
        event.set()
        return StopOutcome.STOPPING
