"""A PostgreSQL connection kept open in the background: set up on each opening, reopened
when lost, one warning per outage."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from bot.storage.db import create_engine
from bot.storage.kept_connection import ConnectionLost, KeptConnection
from tests.e2e import until

NAME = "test connection"
LOGGER = "bot.storage.kept_connection"


class Openings:
    """The ``connected`` callback: records each session it sets up, failing when told to."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.failures_left = 0
        self.failed = 0

    async def __call__(self, driver: Any) -> None:
        if self.failures_left:
            self.failures_left -= 1
            self.failed += 1
            raise RuntimeError("set-up failed")
        self.pids.append(await driver.fetchval("SELECT pg_backend_pid()"))


async def sessions(postgres_url: str, pids: list[int]) -> set[int]:
    """Which of ``pids`` are live sessions of the database."""
    engine = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": pids}
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def terminate(postgres_url: str, pid: int) -> None:
    """End session ``pid``, as a database restart would."""
    engine = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            ended = await connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
            )
            assert ended.scalar() is True
    finally:
        await engine.dispose()


@pytest.fixture
async def kept(postgres_url):
    openings = Openings()
    connection = KeptConnection(
        postgres_url, NAME, openings, reconnect_seconds=0.05, check_seconds=0.5
    )
    connection.start()
    try:
        yield connection, openings
    finally:
        await connection.aclose()


async def test_it_opens_in_the_background_set_up_before_anyone_uses_it(kept):
    connection, openings = kept
    assert not connection.is_open
    await connection.wait_open()
    # Set up once, on the very session the statements then run on.
    assert openings.pids == [await connection.fetchval("SELECT pg_backend_pid()")]
    assert connection.losses == 0


async def test_a_terminated_session_is_reopened_and_set_up_again_warning_once(
    kept, postgres_url, caplog
):
    connection, openings = kept
    caplog.set_level(logging.INFO, logger=LOGGER)
    await connection.wait_open()
    # The first two set-ups after the loss fail: still one outage, so one warning.
    openings.failures_left = 2
    await terminate(postgres_url, openings.pids[0])
    await until(lambda: len(openings.pids) == 2 and connection.is_open)
    assert openings.failed == 2
    assert openings.pids[1] != openings.pids[0]
    assert await connection.fetchval("SELECT pg_backend_pid()") == openings.pids[1]
    # Lost once, then two openings that did not get set up.
    assert connection.losses == 3
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert records == [
        ("WARNING", f"{NAME} lost its database connection"),
        ("INFO", f"{NAME} is back"),
    ]


async def test_a_statement_that_fails_counts_as_a_lost_connection(kept):
    connection, openings = kept
    await connection.wait_open()
    with pytest.raises(Exception, match="division by zero"):
        await connection.fetchval("SELECT 1 / 0")
    await until(lambda: len(openings.pids) == 2 and connection.is_open)
    assert connection.losses == 1


async def test_while_it_is_reopened_statements_fail_at_once(postgres_url):
    openings = Openings()
    # Never set up: every opening fails, so it is never open.
    openings.failures_left = 1_000_000
    connection = KeptConnection(
        postgres_url, NAME, openings, reconnect_seconds=0.05, check_seconds=0.5
    )
    connection.start()
    try:
        await until(lambda: openings.failed >= 2)
        assert not connection.is_open
        with pytest.raises(ConnectionLost):
            await connection.fetchval("SELECT 1")
    finally:
        await connection.aclose()


async def test_closing_stops_reopening_and_ends_the_session(postgres_url):
    openings = Openings()
    connection = KeptConnection(
        postgres_url, NAME, openings, reconnect_seconds=0.05, check_seconds=0.5
    )
    connection.start()
    await connection.wait_open()
    pid = openings.pids[0]
    await connection.aclose()
    assert not connection.is_open
    # The server ends the session shortly after the client hangs up.
    async with asyncio.timeout(5):
        while await sessions(postgres_url, [pid]):
            await asyncio.sleep(0.05)
    # Nothing reopens it behind the closed door.
    assert openings.pids == [pid]
