"""Answers in flight: one per conversation at a time, and the signals that stop them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from enum import Enum
from typing import Protocol, TypeVar

T = TypeVar("T")


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

    def waiting(self) -> int:
        """How many wait for a key someone else holds."""
        return sum(users - 1 for _, users in self._locks.values())


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
    the shared lock, so an instance tries the database for one turn per conversation.
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

    def waiting(self) -> int:
        """Turns in this process waiting for the answer before them in their conversation."""
        return self._local.waiting()


class StopOutcome(Enum):
    """What a stop request did."""

    STOPPING = "stopping"
    NOT_ALLOWED = "not_allowed"
    FINISHED = "finished"


class StopSignals:
    """The answers streaming now, by answer id, and who may stop each.

    It also carries the process's shutdown: once ``close`` is called no new turn starts
    (``turn`` yields False), and ``interrupt`` stops every answer still streaming.
    """

    def __init__(self) -> None:
        self._active: dict[int, tuple[int | None, asyncio.Event]] = {}
        self._waiting: set[asyncio.Timeout] = set()
        # Turns under way (their answer may not be tracked yet); idle when there are none.
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Set once the turn that came last has started, or kept what it must and given up.
        self._last_turn = asyncio.Event()
        self._last_turn.set()
        self.closing = False
        self.interrupted = False

    def __len__(self) -> int:
        """How many answers stream now."""
        return len(self._active)

    @contextmanager
    def track(self, answer_id: int, owner_id: int | None) -> Iterator[asyncio.Event]:
        """Register an answer while it streams; the event is set when a stop is requested."""
        event = asyncio.Event()
        if self.interrupted:
            event.set()
        self._active[answer_id] = (owner_id, event)
        try:
            yield event
        finally:
            del self._active[answer_id]

    @asynccontextmanager
    async def turn(self, hold: AbstractAsyncContextManager[None]) -> AsyncIterator[bool]:
        """Enter ``hold`` (a conversation's lock); yield whether the turn may start.

        False once the process is closing: a turn still queued then gives up its place in
        the queue at once rather than wait for the answers before it. Turns giving up have
        their blocks run one at a time, in the order they came, so that what they store
        (messages to answer after the restart) is stored in that order.
        """
        before, done = self._last_turn, asyncio.Event()
        self._last_turn = done
        async with AsyncExitStack() as stack:
            stack.callback(done.set)
            if not self.closing:
                try:
                    # Never expires by itself: ``close`` expires it to cancel the wait.
                    async with asyncio.timeout(None) as waiting:
                        self._waiting.add(waiting)
                        try:
                            await stack.enter_async_context(hold)
                        finally:
                            self._waiting.discard(waiting)
                except TimeoutError:
                    if not self.closing:
                        raise
            if self.closing:
                await before.wait()
                yield False
                return
            done.set()
            self._running += 1
            self._idle.clear()
            try:
                yield True
            finally:
                self._running -= 1
                if not self._running:
                    self._idle.set()

    def close(self) -> None:
        """Start no more turns, and release the turns waiting for their conversation."""
        self.closing = True
        now = asyncio.get_running_loop().time()
        for waiting in self._waiting:
            waiting.reschedule(now)

    async def drained(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for the turns under way; whether they all ended."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def interrupt(self) -> None:
        """Stop every answer streaming now (and any that starts later): the process stops."""
        self.closing = self.interrupted = True
        for _owner, event in self._active.values():
            event.set()

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


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """The result of ``work``, or None if ``stop`` is set first (``work`` is cancelled then)."""
    running = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((running, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not running.done():
            # Cancelled too if this is: a provider request is never left running alone.
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    if running.cancelled():
        return None
    return running.result()
