"""Quota counters in the database: reserve, settle, release, expire, and the /usage figures.

Reservations asked at the same moment (a burst of messages) are decided together, in one
transaction: the counters' rows are created if missing (INSERT … ON CONFLICT DO NOTHING),
read under lock (FOR UPDATE on PostgreSQL; on SQLite the Store's write turn and the
database's write lock), decided in order by ``bot.quotas.grant_in_turn``, and what the
granted ones take added in one statement. A request holds all its counters or none.
Settlements and releases made at once share a transaction the same way. Rows are always
locked in ``lock_order``, so concurrent reservations, settlements and expiries never
deadlock on PostgreSQL.

What can still go over a token limit: an answer may use more than its reservation (the
prompt estimate runs short of the provider's count, or a provider without ``max_tokens``
answers at length), and every answer in flight may do so. Request limits are exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Insert, Select, bindparam, delete, func, insert, select, tuple_, update
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
from bot.storage.batches import Batches
from bot.storage.models import CHATS, QUOTA_HOLDS, QUOTA_USAGE, utcnow
from bot.storage.store import Store

logger = logging.getLogger(__name__)


# Expired holds are looked for at most this often by one process.
EXPIRY_SWEEP_SECONDS = 60.0
# Reservations (or settlements) in one transaction at most: their counters' keys are
# bound parameters of one statement, well within SQLite's and PostgreSQL's limits.
BATCH = 200


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
    """A reservation waiting for its batch: one request and ``tokens`` on these counters,
    in ``lock_order``."""

    counters: tuple[Counter, ...]
    tokens: int


@dataclass(frozen=True, slots=True)
class _Ending:
    """A hold waiting for its batch to end it: ``used`` tokens counted, ``refund`` requests
    given back."""

    hold: Hold
    used: int
    refund: int


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
        self._reservations: Batches[_Asked, Hold | Refusal] = Batches(
            self._reserve_batch, most=BATCH, name="quota-reserve", orphaned=self._give_back
        )
        self._endings: Batches[_Ending, None] = Batches(
            self._end_batch, most=BATCH, name="quota-end"
        )

    async def warm_up(self, requests: Sequence[Sequence[Counter]]) -> None:
        """Release the holds a stopped process left, then rehearse ``requests`` (counters
        as real requests would touch) in a transaction that is rolled back: each alone,
        then all together, reserved and ended (a settlement and a release run the same
        statements).

        SQLAlchemy compiles each statement the first time it runs, alone and for many
        rows apart; paid here, it is not added to the first requests' wait. ``requests``
        should never be refused (an admin's counters), or their holds go unrehearsed.
        """
        now = self._clock()
        self._last_sweep = now
        await self.expire_holds()
        asked = [_Asked(_in_lock_order(counters), 1) for counters in requests if counters]
        if not asked:
            return
        async with self._store.rehearsal() as connection:
            for batch in [*([one] for one in asked), asked]:
                outcomes = await _reserve_all(connection, batch, now, now + self._hold_for)
                holds = [outcome for outcome in outcomes if isinstance(outcome, Hold)]
                await _end_all(connection, [_Ending(h, used=1, refund=0) for h in holds], now)

    async def reserve(self, counters: Sequence[Counter], tokens: int) -> Hold | Refusal:
        """Take one request and ``tokens`` on every counter, or nothing and say why.

        Reservations asked meanwhile share one transaction; each is decided as if alone,
        in the order they were asked.
        """
        await self._sweep_if_due(self._clock())
        ordered = _in_lock_order(counters)
        if not ordered:
            return Hold(None, (), tokens)
        return await self._reservations(_Asked(ordered, tokens))

    async def _reserve_batch(self, batch: Sequence[_Asked]) -> list[Hold | Refusal]:
        now = self._clock()
        async with self._store.transaction() as connection:
            return await _reserve_all(connection, batch, now, now + self._hold_for)

    async def _give_back(self, outcome: Hold | Refusal) -> None:
        """A reservation granted after its caller stopped waiting: nothing will settle it."""
        if isinstance(outcome, Hold):
            await self.release(outcome)

    async def settle(self, hold: Hold, tokens: int) -> None:
        """The answer is done: count the ``tokens`` it used and drop its reservation."""
        await self._endings(_Ending(hold, used=tokens, refund=0))

    async def release(self, hold: Hold) -> None:
        """The request came to nothing: give back the request and its reservation."""
        await self._endings(_Ending(hold, used=0, refund=1))

    async def _end_batch(self, batch: Sequence[_Ending]) -> list[None]:
        async with self._store.transaction() as connection:
            await _end_all(connection, batch, self._clock())
        return [None] * len(batch)

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
            await _add(
                connection,
                {key: Figures(reserved=-tokens) for key, tokens in released.items()},
                now,
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


def _in_lock_order(counters: Sequence[Counter]) -> tuple[Counter, ...]:
    return tuple(sorted(counters, key=lambda counter: lock_order(counter.key)))


async def _reserve_all(
    connection: AsyncConnection, batch: Sequence[_Asked], now: datetime, expires_at: datetime
) -> list[Hold | Refusal]:
    """The statements of a batch of reservations, in the caller's transaction."""
    keys = sorted({counter.key for asked in batch for counter in asked.counters}, key=lock_order)
    await connection.execute(
        _insert_missing(connection.dialect.name), [_new_row(key, now) for key in keys]
    )
    before = await _figures(connection, keys, lock=True)
    refusals, after = grant_in_turn(
        [(asked.counters, asked.tokens) for asked in batch], before, now
    )
    await _add(
        connection,
        {
            key: Figures(
                after[key].requests - before[key].requests,
                0,
                after[key].reserved - before[key].reserved,
            )
            for key in keys
            if after[key] != before[key]
        },
        now,
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
        result = await connection.execute(_INSERT_HOLDS_RETURNING, rows)
        return [int(row.id) for row in result]
    # SQLite cannot say which returned id is whose (SQLAlchemy would insert row by row), so
    # the ids are chosen here: the transaction holds the database's write lock since its
    # first INSERT, so nobody else takes an id meanwhile.
    first = int((await connection.execute(_BIGGEST_HOLD)).scalar_one()) + 1
    ids = list(range(first, first + len(rows)))
    await connection.execute(
        _INSERT_HOLDS, [{"id": id_, **row} for id_, row in zip(ids, rows, strict=True)]
    )
    return ids


def _hold_row(asked: _Asked, expires_at: datetime) -> dict[str, object]:
    """The stored hold of a granted reservation: its tokens, on which counters, until when."""
    return {
        "tokens": asked.tokens,
        "counters": [[c.key.scope.value, c.key.subject, c.key.period] for c in asked.counters],
        "expires_at": expires_at,
    }


async def _end_all(connection: AsyncConnection, batch: Sequence[_Ending], now: datetime) -> None:
    """The statements of a batch of settlements and releases, in the caller's transaction."""
    ids = [ending.hold.id for ending in batch if ending.hold.id is not None]
    kept: set[int] = set()
    if ids:
        deleted = await connection.execute(_END_HOLDS, {"ids": ids})
        kept = {int(row.id) for row in deleted}
    added: dict[CounterKey, Figures] = {}
    for ending in batch:
        # A hold gone from the table expired, and its tokens were released then.
        held = ending.hold.tokens if ending.hold.id in kept else 0
        for key in ending.hold.keys:
            sum_ = added.get(key, Figures())
            added[key] = Figures(
                sum_.requests - ending.refund, sum_.tokens + ending.used, sum_.reserved - held
            )
    await _add(connection, {key: sum_ for key, sum_ in added.items() if sum_ != Figures()}, now)


async def _add(
    connection: AsyncConnection, added: Mapping[CounterKey, Figures], now: datetime
) -> None:
    """Add these figures to their counters (negative ones take away), in ``lock_order``."""
    if not added:
        return
    await connection.execute(
        _ADD,
        [
            {
                "b_scope": key.scope.value,
                "b_subject": key.subject,
                "b_period": key.period,
                "b_requests": added[key].requests,
                "b_tokens": added[key].tokens,
                "b_reserved": added[key].reserved,
                "b_now": now,
            }
            for key in sorted(added, key=lock_order)
        ],
    )


# The statements below are built once: building one anew costs more than running it.
_ADD = (
    update(QUOTA_USAGE)
    .where(
        QUOTA_USAGE.c.scope == bindparam("b_scope"),
        QUOTA_USAGE.c.subject == bindparam("b_subject"),
        QUOTA_USAGE.c.period == bindparam("b_period"),
    )
    .values(
        requests=QUOTA_USAGE.c.requests + bindparam("b_requests"),
        tokens=QUOTA_USAGE.c.tokens + bindparam("b_tokens"),
        reserved=QUOTA_USAGE.c.reserved + bindparam("b_reserved"),
        updated_at=bindparam("b_now", type_=QUOTA_USAGE.c.updated_at.type),
    )
)
"""Adds figures to the counter of one key (``b_scope``, ``b_subject``, ``b_period``)."""

_END_HOLDS = (
    delete(QUOTA_HOLDS)
    .where(QUOTA_HOLDS.c.id.in_(bindparam("ids", expanding=True)))
    .returning(QUOTA_HOLDS.c.id)
)
"""Deletes the holds ``ids``, returning those there were."""

_INSERT_HOLDS_RETURNING = insert(QUOTA_HOLDS).returning(
    QUOTA_HOLDS.c.id, sort_by_parameter_order=True
)
_INSERT_HOLDS = insert(QUOTA_HOLDS)
_BIGGEST_HOLD = select(func.coalesce(func.max(QUOTA_HOLDS.c.id), 0))


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


async def _figures(
    connection: AsyncConnection, keys: Sequence[CounterKey], *, lock: bool = False
) -> dict[CounterKey, Figures]:
    """The figures of these counters (a counter never used has none); with ``lock``, locked
    until the transaction ends.

    PostgreSQL locks the rows in the order they are sorted, which is ``lock_order``; on
    SQLite the transaction's write lock covers them.
    """
    if not keys:
        return {}
    rows = await connection.execute(
        _figures_statement(locked=lock and connection.dialect.name == "postgresql"),
        {"keys": [(key.scope.value, key.subject, key.period) for key in keys]},
    )
    return {
        CounterKey(Scope(row.scope), row.subject, row.period): Figures(
            row.requests, row.tokens, row.reserved
        )
        for row in rows
    }


@cache
def _figures_statement(*, locked: bool) -> Select[Any]:
    """The figures of the counters ``keys`` (scope, subject, period); with ``locked``, the
    rows locked in ``lock_order``."""
    u = QUOTA_USAGE.c
    query = select(u.scope, u.subject, u.period, u.requests, u.tokens, u.reserved).where(
        tuple_(u.scope, u.subject, u.period).in_(bindparam("keys", expanding=True))
    )
    if locked:
        query = query.order_by(u.scope == Scope.CHAT.value, u.subject, u.period).with_for_update()
    return query


@cache
def _insert_missing(dialect_name: str) -> Insert:
    """Insert counter rows, leaving those that exist as they are."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(QUOTA_USAGE).on_conflict_do_nothing(
        index_elements=[QUOTA_USAGE.c.scope, QUOTA_USAGE.c.subject, QUOTA_USAGE.c.period]
    )
    return cast("Insert", statement)


def _keys(stored: list[list[Any]]) -> list[CounterKey]:
    """Counter keys from a hold's JSON."""
    return [
        CounterKey(Scope(scope), int(subject), str(period)) for scope, subject, period in stored
    ]
