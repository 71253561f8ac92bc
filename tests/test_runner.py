"""What running the bot does to the process beyond the bot itself."""

from __future__ import annotations

import gc

from bot.config import Config
from bot.runner import running


async def test_start_up_objects_are_frozen_out_of_the_collector_while_the_bot_runs(
    config: Config,
) -> None:
    assert gc.get_freeze_count() == 0

    async with running(config):
        assert gc.get_freeze_count() > 0

    assert gc.get_freeze_count() == 0
