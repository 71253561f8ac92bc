"""Command line: ``python -m bot run | migrate | check-config [--config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from bot.config import Config, load_config
from bot.errors import ConfigError
from bot.event_loop import loop_from, loop_name, run
from bot.logs import setup_logging

logger = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument(
        "command",
        choices=("run", "migrate", "check-config"),
        help="run the bot, migrate the database, or validate the configuration",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML configuration; without it the bot is configured from the environment",
    )
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tg-llm-bot`` console script and ``python -m bot``."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
        loop = loop_from(os.environ)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's only output
        return 2
    setup_logging(config, logging.DEBUG if args.debug else logging.INFO)
    if args.command == "check-config":
        print("config OK")  # noqa: T201
        return 0
    if args.command == "migrate":
        from bot.storage.db import migrate

        asyncio.run(migrate(config.database.url))
        logger.info("database is at the newest revision")
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        run(_run(config), loop)
    return 0


async def _run(config: Config) -> None:
    """Run until SIGINT or SIGTERM."""
    from bot.runner import running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    logger.info("running on the %s event loop", loop_name(loop))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(config):
        await stop.wait()
        logger.info("stopping")


if __name__ == "__main__":
    sys.exit(main())
