"""PostgreSQL advisory locks that keep one conversation answered by one instance at a time.

Session-level ``pg_advisory_lock`` keys, many on each of a few dedicated connections (not
the store's: a lock waiting for another instance must never take the connections the store
needs to finish the answer that would release it). A lock is taken with
``pg_try_advisory_lock`` and, when another instance holds it, taken again once that one
says it let go (``NOTIFY`` on release) or, should that word be lost, at the next poll. A
lock dies with its connection, so a crashed instance leaves nothing locked behind.

A connection that drops takes its locks with it. It is opened again at once and each lock
still in use is taken again on it; one that another instance took meanwhile is lost: its
holder's answer goes on (it is not cut), logged as no longer exclusive, and is not unlocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from bot.storage.kept_connection import KeptConnection

logger = logging.getLogger(__name__)

# Personalises the hash, so the bot's keys do not collide with other users of advisory locks
# on the same database by accident.
_LOCK_PERSON = b"tg-llm-bot:conv"

# Released keys are announced here, so that waiting instances try again at once.
CHANNEL = "tg_llm_bot_unlocked"
# Seconds between two tries of a lock held elsewhere when no release is heard of.
POLL_SECONDS = 0.3
# Pause before opening a lost connection again.
RECONNECT_SECONDS = 0.5
# How often a quiet connection is checked: a lost one would keep locks nobody holds.
CHECK_SECONDS = 5.0
# The longest ``start()`` waits for the connections; a database that slow is down, and the
# connections go on opening in the background.
OPEN_WAIT_SECONDS = 5.0

_TRY_LOCK = "SELECT pg_try_advisory_lock($1::bigint)"
_UNLOCK = "SELECT pg_advisory_unlock($1::bigint), pg_notify($2, $3)"


def conversation_lock_id(chat_id: int, thread_id: int | None, user_id: int | None = None) -> int:
    """The advisory lock key of a conversation: a stable signed 64-bit hash of chat and topic
    (and member, for a member's own conversation)."""
    name = f"{chat_id}:{thread_id}" if user_id is None else f"{chat_id}:{thread_id}:{user_id}"
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=_LOCK_PERSON).digest()
    return int.from_bytes(digest, "big", signed=True)


class _LockConnection:
    """One connection holding any number of locks, opened again whenever it is lost."""

    def __init__(self, url: str, name: str, on_release: Callable[[int], None] | None) -> None:
        self._kept = KeptConnection(
            url,
            name,
            self._connected,
            reconnect_seconds=RECONNECT_SECONDS,
            check_seconds=CHECK_SECONDS,
        )
        # Given every key another session (or this one) announces released, if listening.
        self._on_release = on_release
        self.held: set[int] = set()
        # Keys lost with a connection and taken by another instance before they were retaken.
        self.lost: set[int] = set()

    @property
    def losses(self) -> int:
        """How many times the connection was lost (or could not be opened again)."""
        return self._kept.losses

    def holds(self, key: int) -> bool:
        """Whether ``key`` is held on the open connection."""
        return self._kept.is_open and key in self.held

    def start(self) -> None:
        self._kept.start()

    async def wait_open(self) -> None:
        await self._kept.wait_open()

    async def aclose(self) -> None:
        await self._kept.aclose()

    async def try_lock(self, key: int) -> bool:
        """Take ``key`` if nobody holds it; whether it is held now."""
        if await self._fetch(_TRY_LOCK, key):
            self.held.add(key)
            return True
        return False

    async def unlock(self, key: int) -> None:
        """Let ``key`` go and tell the waiting instances; a lost key is just forgotten."""
        if key in self.lost:
            self.lost.discard(key)
            return
        self.held.discard(key)
        if not self._kept.is_open:
            # Lost with the connection; one being opened again does not retake it.
            return
        try:
            await self._fetch(_UNLOCK, key, CHANNEL, str(key))
        except Exception:
            # The connection is gone, and the lock with it.
            logger.warning("could not unlock conversation lock %d; its connection is lost", key)

    async def _fetch(self, query: str, *args: object) -> Any:
        """Run ``query`` once the connection is up; a failure means it is lost."""
        await self._kept.wait_open()
        return await self._kept.fetchval(query, *args)

    async def _connected(self, driver: Any) -> None:
        """Set up a connection just opened: listen if asked to, and retake the locks."""
        if self._on_release is not None:
            await driver.add_listener(CHANNEL, self._heard)
        await self._retake(driver)

    async def _retake(self, driver: Any) -> None:
        """Take again, on a new connection, every lock still in use; note those lost."""
        retaken: set[int] = set()
        for key in list(self.held):
            if await driver.fetchval(_TRY_LOCK, key):
                retaken.add(key)
                continue
            self.held.discard(key)
            self.lost.add(key)
            logger.warning(
                "conversation lock %d was lost with its connection and taken by another "
                "instance; the answer holding it is no longer alone",
                key,
            )
        # Let go at once of those whose holders finished meanwhile.
        while finished := retaken - self.held:
            for key in finished:
                await driver.fetchval(_UNLOCK, key, CHANNEL, str(key))
                retaken.discard(key)

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        assert self._on_release is not None
        with contextlib.suppress(ValueError):
            self._on_release(int(payload))


class AdvisoryLocks:
    """Session-level advisory locks, many on each of a few dedicated connections."""

    def __init__(self, url: str, *, connections: int = 2) -> None:
        # The first connection also listens for released keys.
        self._connections = [
            _LockConnection(url, f"lock connection {n}", self._released if n == 0 else None)
            for n in range(connections)
        ]
        # Keys held (or being taken) through this object: another holder here waits.
        self._taken: set[int] = set()
        self._wakers: dict[int, asyncio.Event] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._started = False

    async def aclose(self) -> None:
        """Close the connections (which frees any lock still held)."""
        for task in list(self._cleanups):
            with contextlib.suppress(Exception):
                await task
        for connection in self._connections:
            await connection.aclose()

    @property
    def losses(self) -> int:
        """How many times a lock connection was lost."""
        return sum(connection.losses for connection in self._connections)

    def holds(self, key: int) -> bool:
        """Whether this instance holds ``key`` on the database now (on a live connection)."""
        return any(connection.holds(key) for connection in self._connections)

    @asynccontextmanager
    async def hold(
        self, key: int, *, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold lock ``key``; ``on_wait`` is called once if someone else holds it first."""
        connection = self._connection_of(key)
        told = False
        while True:
            # Before trying: a release announced while the try is under way is not missed.
            waker = self._wakers.setdefault(key, asyncio.Event())
            if await self._attempt(connection, key):
                break
            if not told and on_wait is not None:
                on_wait()
            told = True
            # The release is announced; the poll covers an announcement that got lost.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await waker.wait()
        try:
            yield
        finally:
            await self._let_go(connection, key)

    @asynccontextmanager
    async def try_hold(self, key: int) -> AsyncIterator[bool]:
        """Hold lock ``key`` if nobody does, without waiting; yield whether it is held."""
        connection = self._connection_of(key)
        if not await self._attempt(connection, key):
            yield False
            return
        try:
            yield True
        finally:
            await self._let_go(connection, key)

    async def start(self) -> None:
        """Open the connections in the background; return once they are open (or after
        ``OPEN_WAIT_SECONDS``: a lock taken before then waits for its connection).

        Opening one costs a PostgreSQL session start, some 20 ms; done at first use, the
        first message after start-up waited that long before its turn began.
        """
        self._start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OPEN_WAIT_SECONDS):
                for connection in self._connections:
                    await connection.wait_open()

    def _start(self) -> None:
        if not self._started:
            for connection in self._connections:
                connection.start()
            self._started = True

    def _connection_of(self, key: int) -> _LockConnection:
        # Started here too: a lock may be taken without ``start()``.
        self._start()
        return self._connections[key % len(self._connections)]

    async def _attempt(self, connection: _LockConnection, key: int) -> bool:
        """Try to take ``key`` once. Cancelled meanwhile, a lock it got is let go again."""
        if key in self._taken:
            return False
        self._taken.add(key)
        trying = asyncio.ensure_future(connection.try_lock(key))
        try:
            taken = await asyncio.shield(trying)
        except asyncio.CancelledError:
            # The server may grant it still: give it back then, whenever the answer comes.
            trying.add_done_callback(lambda done: self._undo(connection, key, done))
            raise
        except BaseException:
            self._taken.discard(key)
            raise
        if not taken:
            self._taken.discard(key)
        return taken

    def _undo(self, connection: _LockConnection, key: int, trying: asyncio.Future[bool]) -> None:
        if trying.cancelled() or trying.exception() is not None or not trying.result():
            self._taken.discard(key)
            return
        task = asyncio.get_running_loop().create_task(self._let_go(connection, key))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _let_go(self, connection: _LockConnection, key: int) -> None:
        unlocking = asyncio.ensure_future(connection.unlock(key))
        # Free here only once unlocked, even if the holder is cancelled meanwhile.
        unlocking.add_done_callback(lambda _done: self._free(key))
        await asyncio.shield(unlocking)

    def _free(self, key: int) -> None:
        self._taken.discard(key)
        self._released(key)

    def _released(self, key: int) -> None:
        """Wake whoever here waits for ``key``."""
        waker = self._wakers.pop(key, None)
        if waker is not None:
            waker.set()
