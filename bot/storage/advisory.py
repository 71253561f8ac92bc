"""PostgreSQL advisory locks that keep one conversation answered by one instance at a time.

Each held lock is a session-level ``pg_advisory_lock`` on a connection of its own, taken
from a pool separate from the store's: a lock waiting for another instance can never take
the connections the store needs to finish the answer that would release it. A lock dies
with its connection, so a crashed instance leaves nothing locked behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.storage.db import create_engine

logger = logging.getLogger(__name__)

# Personalises the hash, so the bot's keys do not collide with other users of advisory locks
# on the same database by accident.
_LOCK_PERSON = b"tg-llm-bot:conv"

_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_LOCK = text("SELECT pg_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")


def conversation_lock_id(chat_id: int, thread_id: int | None, user_id: int | None = None) -> int:
    """The advisory lock key of a conversation: a stable signed 64-bit hash of chat and topic
    (and member, for a member's own conversation)."""
    name = f"{chat_id}:{thread_id}" if user_id is None else f"{chat_id}:{thread_id}:{user_id}"
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=_LOCK_PERSON).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLocks:
    """Session-level advisory locks, each on its own connection of a small dedicated pool."""

    def __init__(self, url: str, *, connections: int) -> None:
        # AUTOCOMMIT: a connection holding a lock for a whole answer must not sit idle in a
        # transaction. pre_ping: a pooled connection the server dropped is replaced first.
        self._engine = create_engine(
            url,
            pool_size=connections,
            max_overflow=0,
            pool_pre_ping=True,
            isolation_level="AUTOCOMMIT",
        )
        # Waiting here rather than in the pool: the pool's wait gives up after a timeout.
        self._slots = asyncio.Semaphore(connections)

    async def aclose(self) -> None:
        """Close the pool's connections (which frees any lock still held)."""
        await self._engine.dispose()

    @asynccontextmanager
    async def hold(
        self, key: int, *, on_wait: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        """Hold lock ``key``; ``on_wait`` is called once if someone else holds it first."""
        async with self._slots:
            connection = await self._engine.connect()
            try:
                if not await connection.scalar(_TRY_LOCK, {"key": key}):
                    if on_wait is not None:
                        on_wait()
                    await connection.execute(_LOCK, {"key": key})
            except BaseException:
                # Cancelled while waiting, the server may still grant the lock to this
                # session: only closing the connection makes sure it is not kept.
                await _discard(connection)
                raise
            try:
                yield
            finally:
                await _release(connection, key)

    @asynccontextmanager
    async def try_hold(self, key: int) -> AsyncIterator[bool]:
        """Hold lock ``key`` if nobody does, without waiting; yield whether it is held."""
        async with self._slots:
            connection = await self._engine.connect()
            try:
                held = bool(await connection.scalar(_TRY_LOCK, {"key": key}))
            except BaseException:
                await _discard(connection)
                raise
            if not held:
                await connection.close()
                yield False
                return
            try:
                yield True
            finally:
                await _release(connection, key)


async def _release(connection: AsyncConnection, key: int) -> None:
    """Unlock and return the connection to the pool; close it if that fails."""
    try:
        await connection.execute(_UNLOCK, {"key": key})
    except Exception:
        # The answer is done; closing the session frees the lock just as well.
        logger.warning("could not unlock conversation lock %d; closing its connection", key)
        await _discard(connection)
        return
    except BaseException:
        await _discard(connection)
        raise
    await connection.close()


async def _discard(connection: AsyncConnection) -> None:
    """Close the connection for good, ending its session and so every lock it holds."""
    try:
        await connection.invalidate()
    except Exception:  # a broken connection is what is being thrown away
        logger.debug("closing a lock connection failed", exc_info=True)
    with contextlib.suppress(Exception):
        await connection.close()
