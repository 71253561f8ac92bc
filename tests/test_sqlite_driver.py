"""The SQLite driver: one trip to aiosqlite's thread per statement, with results unchanged.

Trips are counted by wrapping aiosqlite's ``Connection._execute`` (every call to the
connection's thread goes through it); the real call still runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite.core
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from bot.storage.db import create_engine, migrate
from bot.storage.records import DuplicateMessage, MessageStatus, TurnPlan, TurnStart
from bot.storage.sqlite_driver import OneTripConnection
from bot.storage.store import Store
from tests.fakes.databases import sqlite_url

ITEMS = Table(
    "items",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
)


class Trips:
    """How many calls went to aiosqlite's connection threads since the last ``reset``."""

    def __init__(self) -> None:
        self.count = 0

    def reset(self) -> None:
        self.count = 0


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Trips:
    counter = Trips()
    real = aiosqlite.core.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counter.count += 1
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
    return counter


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite file with an extra ``items`` table."""
    url = sqlite_url(tmp_path)
    await migrate(url)
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(ITEMS.metadata.create_all)
    yield engine
    await engine.dispose()


async def items_stored(engine: AsyncEngine) -> int:
    """How many rows ``items`` holds, read on a connection of its own."""
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM items"))
    return int(count or 0)


def plan(_chat: object) -> TurnPlan:
    return TurnPlan("default", "Be helpful.", "gpt-test")


def turn(chat_id: int, message_id: int = 1) -> TurnStart:
    return TurnStart(
        chat_id=chat_id,
        chat_type="private",
        text="hi",
        history_limit=20,
        user_id=chat_id,
        telegram_message_id=message_id,
    )


async def count_trips(trips: Trips, operation: Callable[[], Any]) -> int:
    trips.reset()
    await operation()
    return trips.count


@pytest.fixture
async def warm_store(sqlite_engine: AsyncEngine) -> Store:
    """A warmed-up Store whose connections are open (one turn begun)."""
    store = Store(sqlite_engine)
    await store.warm_up()
    await store.begin_turn(turn(100), plan)
    return store


async def test_beginning_a_turn_takes_one_trip_per_statement_and_one_to_commit(warm_store, trips):
    # Five statements (chat, conversation, history, two messages) and the commit.
    assert await count_trips(trips, lambda: warm_store.begin_turn(turn(200), plan)) == 6


async def test_a_checkpoint_takes_one_trip_and_one_to_commit(warm_store, trips):
    begun = await warm_store.begin_turn(turn(200), plan)
    checkpoint = lambda: warm_store.checkpoint_answer(begun.answer_id, "so far", (5,))  # noqa: E731
    assert await count_trips(trips, checkpoint) == 2


async def test_finishing_an_answer_takes_one_trip_and_one_to_commit(warm_store, trips):
    begun = await warm_store.begin_turn(turn(200), plan)
    finish = lambda: warm_store.finish_answer(  # noqa: E731
        begun.answer_id, text="done", status=MessageStatus.COMPLETE, telegram_message_ids=(5,)
    )
    assert await count_trips(trips, finish) == 2


async def test_a_read_takes_one_trip(sqlite_engine, trips):
    async def read() -> None:
        async with sqlite_engine.connect() as connection:
            await connection.execute(select(ITEMS))

    await read()  # the connection opened
    assert await count_trips(trips, read) == 1


async def test_a_read_through_a_session_takes_one_trip(warm_store, trips):
    begun = await warm_store.begin_turn(turn(200), plan)
    assert await count_trips(trips, lambda: warm_store.get_message(begun.answer_id)) == 1


async def test_rows_description_rowcount_and_lastrowid_are_those_of_the_statement(
    sqlite_engine,
):
    async with sqlite_engine.begin() as connection:
        first = await connection.exec_driver_sql("INSERT INTO items (name) VALUES ('a')")
        second = await connection.exec_driver_sql("INSERT INTO items (name) VALUES ('b')")
        assert (first.lastrowid, second.lastrowid) == (1, 2)
        assert first.rowcount == 1
        await connection.exec_driver_sql("INSERT INTO items (name) VALUES ('c')")
        changed = await connection.execute(text("UPDATE items SET name = name || '!' WHERE id > 1"))
        assert changed.rowcount == 2
        none = await connection.execute(text("UPDATE items SET name = 'x' WHERE id > 10"))
        assert none.rowcount == 0
        result = await connection.execute(text("SELECT id, name AS label FROM items ORDER BY id"))
        assert list(result.keys()) == ["id", "label"]
        assert [tuple(row) for row in result] == [(1, "a"), (2, "b!"), (3, "c!")]
        empty = await connection.execute(text("SELECT id FROM items WHERE id > 10"))
        assert list(empty.keys()) == ["id"]
        assert empty.all() == []


async def test_a_result_can_be_read_a_few_rows_at_a_time(sqlite_engine):
    async with sqlite_engine.begin() as connection:
        await connection.execute(insert(ITEMS), [{"name": f"n{i}"} for i in range(5)])
        result = await connection.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))
        assert result.fetchone() == ("n0",)
        assert result.fetchmany(2) == [("n1",), ("n2",)]
        assert result.fetchall() == [("n3",), ("n4",)]


async def test_returning_gives_the_new_ids_for_one_row_and_for_many(sqlite_engine):
    async with sqlite_engine.begin() as connection:
        one = await connection.scalar(insert(ITEMS).values(name="a").returning(ITEMS.c.id))
        many = await connection.execute(
            insert(ITEMS).returning(ITEMS.c.id, ITEMS.c.name, sort_by_parameter_order=True),
            [{"name": "b"}, {"name": "c"}],
        )
        assert one == 1
        assert [tuple(row) for row in many] == [(2, "b"), (3, "c")]


async def test_executemany_inserts_every_row_in_one_trip(sqlite_engine, trips):
    async with sqlite_engine.begin() as connection:
        trips.reset()
        result = await connection.execute(insert(ITEMS), [{"name": f"n{i}"} for i in range(4)])
        assert trips.count == 1
        assert result.rowcount == 4
        assert await connection.scalar(text("SELECT count(*) FROM items")) == 4


async def test_a_duplicate_insert_raises_integrity_error_and_keeps_nothing(sqlite_engine):
    async def insert_twice() -> None:
        async with sqlite_engine.begin() as connection:
            await connection.execute(insert(ITEMS).values(name="first"))
            await connection.execute(insert(ITEMS).values(name="first"))

    with pytest.raises(IntegrityError):
        await insert_twice()
    assert await items_stored(sqlite_engine) == 0


async def test_a_stored_telegram_message_is_still_a_duplicate(sqlite_engine):
    store = Store(sqlite_engine)
    await store.begin_turn(turn(100, 7), plan)
    with pytest.raises(DuplicateMessage):
        await store.begin_turn(turn(100, 7), plan)


async def test_an_error_in_a_transaction_rolls_back_its_writes(sqlite_engine):
    async def abandon() -> None:
        async with sqlite_engine.begin() as connection:
            await connection.execute(insert(ITEMS).values(name="kept?"))
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        await abandon()
    assert await items_stored(sqlite_engine) == 0


async def test_the_store_sees_rowcounts_of_one_and_of_none(sqlite_engine):
    store = Store(sqlite_engine)
    begun = await store.begin_turn(turn(100), plan)
    # Both updates change one row; then the answer is no longer streaming: no row, no change.
    assert await store.requeue_unstarted(begun.answer_id, begun.user_message_id)
    assert not await store.requeue_unstarted(begun.answer_id, begun.user_message_id)
    assert await store.expire_turn(begun.user_message_id)
    assert not await store.expire_turn(begun.user_message_id)


async def test_a_locked_database_raises_database_is_locked(sqlite_engine):
    async with sqlite_engine.connect() as holder, sqlite_engine.connect() as writer:
        await holder.exec_driver_sql("BEGIN IMMEDIATE")
        await writer.exec_driver_sql("PRAGMA busy_timeout=0")
        with pytest.raises(OperationalError, match="database is locked"):
            await writer.execute(insert(ITEMS).values(name="blocked"))
        await writer.rollback()
        await holder.rollback()


async def test_a_closed_driver_connection_is_a_disconnect_and_the_pool_recovers(sqlite_engine):
    async with sqlite_engine.connect() as connection:
        raw = await connection.get_raw_connection()
        await raw.driver_connection.close()
        with pytest.raises(OperationalError) as caught:
            await connection.execute(select(ITEMS))
        assert caught.value.connection_invalidated
    assert await items_stored(sqlite_engine) == 0


async def test_a_rollback_waits_for_a_cancelled_statement_still_queued(sqlite_engine):
    # A statement whose wait was cancelled still runs on the thread later; a rollback that
    # read "no transaction" before it ran would leave its transaction open.
    async with sqlite_engine.connect() as connection:
        raw = await connection.get_raw_connection()
        adapter, driver = raw.dbapi_connection, raw.driver_connection
        assert isinstance(adapter, OneTripConnection)
        running, gate = threading.Event(), threading.Event()

        def block() -> None:
            running.set()
            gate.wait()

        blocker = asyncio.ensure_future(driver._execute(block))
        await asyncio.to_thread(running.wait)
        statement = asyncio.ensure_future(
            greenlet_spawn(adapter.cursor().execute, "INSERT INTO items (name) VALUES ('late')")
        )
        while driver._tx.qsize() < 1:  # the INSERT waits behind the blocked thread
            await asyncio.sleep(0)
        statement.cancel()
        rollback = asyncio.ensure_future(greenlet_spawn(adapter.rollback))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(blocker, rollback)
        await driver._execute(lambda: None)
        assert not driver.in_transaction
    assert await items_stored(sqlite_engine) == 0
