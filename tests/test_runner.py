"""What running the bot does to the process beyond the bot itself."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bot.config import Config
from bot.runner import running
from bot.storage.db import create_engine, migrate
from tests.fakes.telegram import FakeTelegram


async def test_start_up_objects_are_frozen_out_of_the_collector_while_the_bot_runs(
    config: Config,
) -> None:
    assert gc.get_freeze_count() == 0

    async with running(config):
        assert gc.get_freeze_count() > 0

    assert gc.get_freeze_count() == 0


async def test_a_database_refusing_writes_stops_start_up_before_any_update_is_taken(
    config: Config, telegram: FakeTelegram
) -> None:
    # Migrated, then made to refuse every new message: the store's warm-up rehearses a
    # turn, so the bot fails at start-up instead of at its first message, unanswerable.
    await migrate(config.database.url)
    engine = create_engine(config.database.url)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON messages"
                " BEGIN SELECT RAISE(ABORT, 'writes refused'); END"
            )
        )
    await engine.dispose()

    with pytest.raises(SQLAlchemyError, match="writes refused"):
        async with running(config):
            pytest.fail("the bot started")

    assert telegram.calls_to("getUpdates") == []
