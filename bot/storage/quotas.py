"""Quota counters in the database: reserve, settle, release, expire, and the /usage figures.

Reservations asked at the same moment (a burst of messages) are decided together, in one
transaction: the counters' rows are created if missing (INSERT … ON CONFLICT DO NOTHING),
read under lock (FOR UPDATE on PostgreSQL; on SQLite the Store's write turn and the
database's write lock), decided in order by ``bot.quotas.grant_in_turn``, and the granted
ones added in one UPDATE per counter. A request holds all its counters or none. Rows are
always locked in ``lock_order``, so concurrent reservations, settlements and expiries never
deadlock on PostgreSQL.

What can still go over a token limit: an answer may use more than its reservation (the
prompt estimate runs short of the provider's count, or a provider without ``max_tokens``
answers at length), and every answer in flight may do so. Request limits are exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.quotas import (
    Counter,
    CounterKey,
    Figures,
    Ranked,
    Refusal,
    Scope,
    grant_in_turn,
    lock_order,
)
from bot.storage.models import CHATS, QUOTA_HOLDS, QUOTA_USAGE, utcnow
from bot.storage.store import Store

logger = logging.getLogger(__name__)


# Expired holds are looked for at most this often by one process.
EXPIRY_SWEEP_SECONDS = 60.0
# Reservations decided in one transaction at most: their counters' keys are bound
# parameters of one statement, well within SQLite's and PostgreSQL's limits.
RESERVE_BATCH = 200


@dataclass(frozen=True, slots=True)
class Hold:
    """What a granted request holds: one request and ``tokens`` on each counter of ``keys``.

    ``id`` is the stored hold, which a crashed process leaves to expire; None when the
    request holds no tokens (nothing would need releasing).
    """

    id: int | None
    keys: tuple[CounterKey, ...]
    tokens: int


@dataclass(frozen=True, slots=True)
class _Asked:
    """A reservation waiting for the next batch: counters in ``lock_order``, and its caller."""

    counters: tuple[Counter, ...]
    tokens: int
    done: asyncio.Future[Hold | Refusal]


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
        # Reservations waiting for the next batch, and the task deciding them.
        self._asked: list[_Asked] = []
        self._reserver: asyncio.Task[None] | None = None

    async def reserve(self, counters: Sequence[Counter], tokens: int) -> Hold | Refusal:
        """Take one request and ``tokens`` on every counter, or nothing and say why.

        Reservations asked meanwhile share one transaction; each is decided as if alone,
        in the order they were asked.
        """
        await self._sweep_if_due(self._clock())
        ordered = tuple(sorted(counters, key=lambda counter: lock_order(counter.key)))
        if not ordered:
            return Hold(None, (), tokens)
        asked = _Asked(ordered, tokens, asyncio.get_running_loop().create_future())
        self._asked.append(asked)
        if self._reserver is None:
            self._reserver = asyncio.create_task(self._reserve_asked(), name="quota-reserve")
        return await asked.done

    async def _reserve_asked(self) -> None:
        """Decide the waiting reservations, a batch per transaction, until none wait."""
        batch: list[_Asked] = []
        try:
            while self._asked:
                batch, self._asked = self._asked[:RESERVE_BATCH], self._asked[RESERVE_BATCH:]
                # A caller that stopped waiting (cancelled) is not reserved for.
                await self._reserve_batch([asked for asked in batch if not asked.done.done()])
        except BaseException:
            # Cancelled (the loop is closing): nobody may wait forever for a reservation.
            for asked in (*batch, *self._asked):
                asked.done.cancel()
            self._asked = []
            raise
        finally:
            self._reserver = None

    async def _reserve_batch(self, batch: Sequence[_Asked]) -> None:
        """Decide ``batch`` in one transaction; if that fails, each alone, so that an error
        reaches only the reservation it belongs to."""
        if not batch:
            return
        now = self._clock()
        outcomes: Sequence[Hold | Refusal | Exception]
        try:
            async with self._store.transaction() as connection:
                outcomes = await _reserve_all(connection, batch, now, now + self._hold_for)
        except Exception as exc:
            if len(batch) > 1:
                for asked in batch:
                    await self._reserve_batch([asked])
                return
            outcomes = [exc]
        for asked, outcome in zip(batch, outcomes, strict=True):
            if not asked.done.done():
                if isinstance(outcome, Exception):
                    asked.done.set_exception(outcome)
                else:
                    asked.done.set_result(outcome)
            elif isinstance(outcome, Hold):
                # Its caller stopped waiting while it was decided: nothing will settle it.
                await self.release(outcome)

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


async def _reserve_all(
    connection: AsyncConnection, batch: Sequence[_Asked], now: datetime, expires_at: datetime
) -> list[Hold | Refusal]:
    """The statements of a batch of reservations, in the caller's transaction."""
    keys = sorted({counter.key for asked in batch for counter in asked.counters}, key=lock_order)
    await connection.execute(_insert_missing(connection), [_new_row(key, now) for key in keys])
    before = await _locked_figures(connection, keys)
    refusals, after = grant_in_turn(
        [(asked.counters, asked.tokens) for asked in batch], before, now
    )
    added = [
        {
            "b_scope": key.scope.value,
            "b_subject": key.subject,
            "b_period": key.period,
            "b_requests": after[key].requests - before[key].requests,
            "b_reserved": after[key].reserved - before[key].reserved,
        }
        for key in keys
        if after[key] != before[key]
    ]
    if added:
        u = QUOTA_USAGE.c
        await connection.execute(
            update(QUOTA_USAGE)
            .where(
                u.scope == bindparam("b_scope"),
                u.subject == bindparam("b_subject"),
                u.period == bindparam("b_period"),
            )
            .values(
                requests=u.requests + bindparam("b_requests"),
                reserved=u.reserved + bindparam("b_reserved"),
                updated_at=now,
            ),
            added,
        )
    # Only a request that holds tokens needs a hold to give them back should it never end.
    holding = [n for n, refused in enumerate(refusals) if refused is None and batch[n].tokens > 0]
    hold_ids: dict[int, int] = {}
    if holding:
        rows = [_hold_row(batch[n], expires_at) for n in holding]
        hold_ids = dict(zip(holding, await _insert_holds(connection, rows), strict=True))
    return [
        Hold(hold_ids.get(n), tuple(c.key for c in batch[n].counters), batch[n].tokens)
        if refused is None
        else refused
        for n, refused in enumerate(refusals)
    ]


async def _insert_holds(
    connection: AsyncConnection, rows: Sequence[dict[str, object]]
) -> list[int]:
    """Insert holds in one statement; their ids, in the order of ``rows``."""
    if connection.dialect.name != "sqlite":
        result = await connection.execute(
            insert(QUOTA_HOLDS).returning(QUOTA_HOLDS.c.id, sort_by_parameter_order=True), rows
        )
        return [int(row.id) for row in result]
    # SQLite cannot say which returned id is whose (SQLAlchemy would insert row by row), so
    # the ids are chosen here: the transaction holds the database's write lock since its
    # first INSERT, so nobody else takes an id meanwhile.
    last = await connection.scalar(select(func.coalesce(func.max(QUOTA_HOLDS.c.id), 0)))
    ids = list(range(int(last or 0) + 1, int(last or 0) + 1 + len(rows)))
    await connection.execute(
        insert(QUOTA_HOLDS), [{"id": id_, **row} for id_, row in zip(ids, rows, strict=True)]
    )
    return ids


def _hold_row(asked: _Asked, expires_at: datetime) -> dict[str, object]:
    """The stored hold of a granted reservation: its tokens, on which counters, until when."""
    return {
        "tokens": asked.tokens,
        "counters": [[c.key.scope.value, c.key.subject, c.key.period] for c in asked.counters],
        "expires_at": expires_at,
    }


def _new_row(key: CounterKey, now: datetime) -> dict[str, object]:
    """A counter's row as it starts: nothing used."""
    return {
        "scope": key.scope,
        "subject": key.subject,
        "period": key.period,
        "requests": 0,
        "tokens": 0,
        "reserved": 0,
        "updated_at": now,
    }


async def _locked_figures(
    connection: AsyncConnection, keys: Sequence[CounterKey]
) -> dict[CounterKey, Figures]:
    """The figures of these counters (their rows exist), locked until the transaction ends.

    PostgreSQL locks the rows in the order they are sorted, which is ``lock_order``.
    """
    u = QUOTA_USAGE.c
    query = select(u.scope, u.subject, u.period, u.requests, u.tokens, u.reserved).where(
        tuple_(u.scope, u.subject, u.period).in_(
            [(key.scope.value, key.subject, key.period) for key in keys]
        )
    )
    if connection.dialect.name == "postgresql":
        query = query.order_by(u.scope == Scope.CHAT.value, u.subject, u.period).with_for_update()
    rows = await connection.execute(query)
    return {
        CounterKey(Scope(row.scope), row.subject, row.period): Figures(
            row.requests, row.tokens, row.reserved
        )
        for row in rows
    }


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
