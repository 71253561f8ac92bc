"""Answers in flight: one per conversation at a time, and the signals that stop them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from enum import Enum
from typing import Protocol


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


ConversationKey = tuple[int, int | None] | tuple[int, int | None, int]
"""Chat id and forum topic (None outside topics), and the member when each has their own."""


class SharedLocks(Protocol):
    """Locks every instance of the bot sees (PostgreSQL advisory locks), by integer key."""

    def hold(
        self, key: int, *, on_wait: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``key``; call ``on_wait`` if another holder goes first."""
        ...

    def try_hold(self, key: int) -> AbstractAsyncContextManager[bool]:
        """Hold ``key`` if free, without waiting; yield whether it is held."""
        ...


class ConversationLocks:
    """One answer at a time per conversation: in this process, and across instances if shared.

    The in-process lock is taken first and keeps arrival order; only its holder goes on to
    the shared lock, so an instance waits on the database with one connection per
    conversation at most.
    """

    def __init__(
        self,
        shared: SharedLocks | None = None,
        lock_id: Callable[[ConversationKey], int] | None = None,
    ) -> None:
        if (shared is None) != (lock_id is None):
            raise ValueError("shared locks need a lock_id, and a lock_id needs shared locks")
        self._local = KeyedLocks()
        self._shared = shared
        self._lock_id = lock_id

    @asynccontextmanager
    async def hold(
        self, key: ConversationKey, *, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold the conversation; ``on_wait`` is called once if an earlier answer goes first."""
        notify = on_wait
        if notify is not None and self._local.busy(key):
            notify()
            notify = None
        # Before any await: the queue position is taken in arrival order.
        async with self._local.hold(key):
            if self._shared is None or self._lock_id is None:
                yield
                return
            async with self._shared.hold(self._lock_id(key), on_wait=notify):
                yield

    @asynccontextmanager
    async def try_hold(self, key: ConversationKey) -> AsyncIterator[bool]:
        """Hold the conversation only if nobody, here or elsewhere, holds it now."""
        if self._local.busy(key):
            yield False
            return
        async with self._local.hold(key):
            if self._shared is None or self._lock_id is None:
                yield True
                return
            async with self._shared.try_hold(self._lock_id(key)) as held:
                yield held

    def busy(self, key: ConversationKey) -> bool:
        """Whether an answer in this process holds or waits for the conversation."""
        return self._local.busy(key)


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
