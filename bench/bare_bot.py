"""The least bot the stack allows, for ``python -m bench.stream_bench --bare``.

    python -m bench.bare_bot run --config FILE

It runs on what the bot runs on (python-telegram-bot polling through the bot's own aiohttp
transport, on the same event loop, with the same concurrency) and does nothing else: each
text message goes to the configured provider as it is, the answer is read whole and sent
back once. No store, no streaming, no rendering, no pacing, no checks. Its overhead under
the stream bench is what python-telegram-bot and aiohttp cost before anything of the bot's
own runs: no bot on this stack can be measured below it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import aiohttp
import orjson
from telegram import Update
from telegram.error import RetryAfter
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from bot import fast_json
from bot.app import CONCURRENT_UPDATES, CONNECTION_POOL, POLL_GRACE
from bot.config import Config, load_config
from bot.event_loop import loop_from, run
from bot.metrics import Metrics
from bot.runner import PROVIDER_CONNECTIONS
from bot.streaming.outbox import retry_after_seconds
from bot.telegram_requests import CountingRequest


async def answer(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    model: str,
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
) -> None:
    """Ask the provider with the message's text alone; send its whole answer back."""
    message = update.effective_message
    if message is None or not message.text:
        return
    body = fast_json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": message.text}]}
    )
    pieces: list[str] = []
    async with session.post(url, data=body, headers=headers) as response:
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            choices = orjson.loads(line[6:]).get("choices") or ()
            pieces.extend((choice.get("delta") or {}).get("content") or "" for choice in choices)
    while True:
        try:
            await context.bot.send_message(message.chat_id, "".join(pieces))
        except RetryAfter as exc:
            # No outbox here: wait as told, as the simplest bot would.
            await asyncio.sleep(retry_after_seconds(exc))
        else:
            return


async def serve(config: Config) -> None:
    """Poll until SIGTERM or SIGINT, answering every text message."""
    telegram, provider = config.telegram, config.providers[0]
    metrics = Metrics()
    application = (
        Application.builder()
        .token(telegram.token)
        .base_url(telegram.base_url)
        .base_file_url(telegram.base_file_url)
        .concurrent_updates(CONCURRENT_UPDATES)
        .request(CountingRequest(metrics, connection_pool_size=CONNECTION_POOL))
        .get_updates_request(
            CountingRequest(
                metrics, connection_pool_size=1, read_timeout=telegram.poll_timeout + POLL_GRACE
            )
        )
        .build()
    )
    headers = {**fast_json.HEADERS, "Accept": "text/event-stream"}
    if provider.api_key:
        headers["Authorization"] = f"Bearer {provider.api_key}"
    url = provider.base_url.rstrip("/") + "/chat/completions"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connector = aiohttp.TCPConnector(limit=PROVIDER_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session, application:
        callback = partial(answer, session, url, headers, config.models.chat)
        application.add_handler(MessageHandler(filters.TEXT, callback))
        await application.start()
        updater = application.updater
        assert updater is not None
        await updater.start_polling(timeout=int(telegram.poll_timeout))
        # As the bot does: no full collection walks the start-up objects in a burst.
        gc.collect()
        gc.freeze()
        await stop.wait()
        await updater.stop()
        await application.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``run --config FILE``: the same command line as the bot's."""
    parser = argparse.ArgumentParser(prog="python -m bench.bare_bot", description=__doc__)
    parser.add_argument("command", choices=("run",))
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    run(serve(load_config(args.config)), loop_from(os.environ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
