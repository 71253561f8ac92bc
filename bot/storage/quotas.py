"""Quota counters in the database: reserve, settle, release, expire, and the /usage figures.

A reservation is one transaction: the counters' rows are created if missing (INSERT … ON
CONFLICT DO NOTHING), then each is updated only if it still has room (a conditional UPDATE
whose WHERE is ``bot.quotas.exhausted`` in SQL). If any has none, the whole transaction
rolls back: a request holds all its counters or none. Rows are always touched in
``lock_order``, so concurrent reservations, settlements and expiries never deadlock on
PostgreSQL; on SQLite the Store's write turn serialises them.

What can still go over a token limit: an answer may use more than its reservation (the
prompt estimate runs short of the provider's count, or a provider without ``max_tokens``
answers at length), and every answer in flight may do so. Request limits are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.quotas import (
    Counter,
    CounterKey,
    Figures,
    Ranked,
    Refusal,
    Scope,
    lock_order,
    refusal,
)
from bot.storage.models import CHATS, QUOTA_HOLDS, QUOTA_USAGE, utcnow
from bot.storage.store import Store

logger = logging.getLogger(__name__)


# Expired holds are looked for at most this often by one process.
EXPIRY_SWEEP_SECONDS = 60.0
# A refusal is worked out after the failed UPDATE; should the rows have changed in between
# (another answer settled), the reservation is tried again, at most this many times.
RESERVE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Hold:
    """What a granted request holds: one request and ``tokens`` on each counter of ``keys``.

    ``id`` is the stored hold, which a crashed process leaves to expire; None when the
    request holds no tokens (nothing would need releasing).
    """

    id: int | None
    keys: tuple[CounterKey, ...]
    tokens: int


class _NoRoom(Exception):
    """A counter has no room for the request: rolls its reservation back."""


class QuotaStore:
    """The quota tables, written in turn with the ``Store`` on the same engine."""

    def __init__(
        self,
        store: Store,
        *,
        hold_for: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._hold_for = hold_for
        self._clock = clock
        self._last_sweep: datetime | None = None

    async def reserve(self, counters: Sequence[Counter], tokens: int) -> Hold | Refusal:
        """Take one request and ``tokens`` on every counter, or nothing and say why."""
        now = self._clock()
        await self._sweep_if_due(now)
        ordered = sorted(counters, key=lambda counter: lock_order(counter.key))
        for _ in range(RESERVE_ATTEMPTS):
            try:
                async with self._store.transaction() as connection:
                    return await _reserve(connection, ordered, tokens, now, now + self._hold_for)
            except _NoRoom:
                # Read after the rollback: inside, the counters updated before the full one
                # would count this request already.
                figures = await self.figures([counter.key for counter in ordered])
                refused = refusal(ordered, figures, tokens, now)
                if refused is not None:
                    return refused
        raise RuntimeError("quota counters kept changing during a reservation")

    async def settle(self, hold: Hold, tokens: int) -> None:
        """The answer is done: count the ``tokens`` it used and drop its reservation."""
        await self._finish(hold, used=tokens, refund=0)

    async def release(self, hold: Hold) -> None:
        """The request came to nothing: give back the request and its reservation."""
        await self._finish(hold, used=0, refund=1)

    async def _finish(self, hold: Hold, *, used: int, refund: int) -> None:
        async with self._store.transaction() as connection:
            held = 0
            if hold.id is not None:
                deleted = await connection.execute(
                    delete(QUOTA_HOLDS).where(QUOTA_HOLDS.c.id == hold.id)
                )
                # Gone: it expired, and its tokens were released then.
                held = hold.tokens if cast("CursorResult[Any]", deleted).rowcount else 0
            if not (held or used or refund):
                return
            u = QUOTA_USAGE.c
            for key in sorted(hold.keys, key=lock_order):
                await connection.execute(
                    update(QUOTA_USAGE)
                    .where(*_key_is(key))
                    .values(
                        requests=u.requests - refund,
                        tokens=u.tokens + used,
                        reserved=u.reserved - held,
                        updated_at=self._clock(),
                    )
                )

    async def expire_holds(self) -> int:
        """Release the holds whose answers never settled (their process died); how many."""
        now = self._clock()
        async with self._store.transaction() as connection:
            rows = await connection.execute(
                delete(QUOTA_HOLDS)
                .where(QUOTA_HOLDS.c.expires_at <= now)
                .returning(QUOTA_HOLDS.c.tokens, QUOTA_HOLDS.c.counters)
            )
            released: dict[CounterKey, int] = {}
            expired = 0
            for row in rows:
                expired += 1
                for key in _keys(row.counters):
                    released[key] = released.get(key, 0) + row.tokens
            for key in sorted(released, key=lock_order):
                await connection.execute(
                    update(QUOTA_USAGE)
                    .where(*_key_is(key))
                    .values(reserved=QUOTA_USAGE.c.reserved - released[key], updated_at=now)
                )
        if expired:
            logger.warning("released %d quota holds left by answers that never finished", expired)
        return expired

    async def _sweep_if_due(self, now: datetime) -> None:
        last = self._last_sweep
        if last is not None and (now - last).total_seconds() < EXPIRY_SWEEP_SECONDS:
            return
        self._last_sweep = now
        await self.expire_holds()

    async def figures(self, keys: Sequence[CounterKey]) -> dict[CounterKey, Figures]:
        """The figures of these counters; a counter never used has none."""
        async with self._store.reader() as connection:
            return await _figures(connection, keys)

    async def chat_title(self, chat_id: int) -> str | None:
        """The title of a chat the bot has seen; None for a private or unknown one."""
        async with self._store.reader() as connection:
            title: str | None = await connection.scalar(
                select(CHATS.c.title).where(CHATS.c.id == chat_id)
            )
            return title

    async def totals(self, scope: Scope, period: str) -> tuple[int, Figures]:
        """How many users (or chats) used the bot in ``period``, and their sum."""
        u = QUOTA_USAGE.c
        query = select(
            func.count(), func.sum(u.requests), func.sum(u.tokens), func.sum(u.reserved)
        ).where(u.scope == scope, u.period == period, u.requests > 0)
        async with self._store.reader() as connection:
            row = (await connection.execute(query)).one()
        return int(row[0]), Figures(int(row[1] or 0), int(row[2] or 0), int(row[3] or 0))

    async def top(self, scope: Scope, period: str, limit: int) -> list[Ranked]:
        """The users (or chats) that used the most tokens in ``period``, then requests."""
        u = QUOTA_USAGE.c
        query = (
            select(u.subject, CHATS.c.title, u.requests, u.tokens, u.reserved)
            .select_from(QUOTA_USAGE.outerjoin(CHATS, CHATS.c.id == u.subject))
            .where(u.scope == scope, u.period == period, u.requests > 0)
            .order_by(u.tokens.desc(), u.requests.desc(), u.subject)
            .limit(limit)
        )
        async with self._store.reader() as connection:
            rows = await connection.execute(query)
            return [
                Ranked(
                    row.subject,
                    row.title if scope is Scope.CHAT else None,
                    Figures(row.requests, row.tokens, row.reserved),
                )
                for row in rows
            ]


async def _reserve(
    connection: AsyncConnection,
    counters: Sequence[Counter],
    tokens: int,
    now: datetime,
    expires_at: datetime,
) -> Hold:
    """The statements of one reservation; raises ``_NoRoom`` to roll it back."""
    if not counters:
        return Hold(None, (), tokens)
    rows = [
        {
            "scope": counter.key.scope,
            "subject": counter.key.subject,
            "period": counter.key.period,
            "requests": 0,
            "tokens": 0,
            "reserved": 0,
            "updated_at": now,
        }
        for counter in counters
    ]
    await connection.execute(_insert_missing(connection), rows)
    u = QUOTA_USAGE.c
    for counter in counters:
        # The SQL of ``bot.quotas.exhausted``: room for a request, tokens left if it needs any.
        room = list(_key_is(counter.key))
        if counter.requests:
            room.append(u.requests + 1 <= counter.requests)
        if counter.tokens and tokens > 0:
            room.append(u.tokens + u.reserved < counter.tokens)
        result = await connection.execute(
            update(QUOTA_USAGE)
            .where(*room)
            .values(requests=u.requests + 1, reserved=u.reserved + tokens, updated_at=now)
        )
        if cast("CursorResult[Any]", result).rowcount == 0:
            raise _NoRoom(counter.key)
    keys = tuple(counter.key for counter in counters)
    if tokens <= 0:
        return Hold(None, keys, tokens)
    hold_id = await connection.scalar(
        insert(QUOTA_HOLDS)
        .values(
            tokens=tokens,
            counters=[[key.scope.value, key.subject, key.period] for key in keys],
            expires_at=expires_at,
        )
        .returning(QUOTA_HOLDS.c.id)
    )
    return Hold(hold_id, keys, tokens)


def _insert_missing(connection: AsyncConnection) -> Insert:
    """Insert counter rows, leaving those that exist as they are."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(QUOTA_USAGE).on_conflict_do_nothing(
        index_elements=[QUOTA_USAGE.c.scope, QUOTA_USAGE.c.subject, QUOTA_USAGE.c.period]
    )
    return cast("Insert", statement)


async def _figures(
    connection: AsyncConnection, keys: Sequence[CounterKey]
) -> dict[CounterKey, Figures]:
    figures: dict[CounterKey, Figures] = {}
    u = QUOTA_USAGE.c
    for key in keys:
        row = (
            await connection.execute(select(u.requests, u.tokens, u.reserved).where(*_key_is(key)))
        ).first()
        if row is not None:
            figures[key] = Figures(row.requests, row.tokens, row.reserved)
    return figures


def _key_is(key: CounterKey) -> tuple[Any, ...]:
    u = QUOTA_USAGE.c
    return (u.scope == key.scope.value, u.subject == key.subject, u.period == key.period)


def _keys(stored: list[list[Any]]) -> list[CounterKey]:
    """Counter keys from a hold's JSON."""
    return [
        CounterKey(Scope(scope), int(subject), str(period)) for scope, subject, period in stored
    ]
