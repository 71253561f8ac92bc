"""/metrics counts what happens: answers, provider errors, 429s, streams and queued turns."""

from __future__ import annotations

import aiohttp
import pytest

from bot.handlers.context import SERVICES_KEY
from tests.e2e import bot_texts, metric_samples, until
from tests.fakes.provider import Chunk, Delay, Done, Finish, Role


@pytest.fixture
def config(config_for):
    return config_for(streaming={"drafts": False}, ops={"listen": "127.0.0.1", "port": 0})


async def scrape(bot) -> dict[str, float]:
    """The bot's /metrics as ``name{labels}`` -> value."""
    port = bot.bot_data[SERVICES_KEY].readiness.ops_port
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        exposition = await response.text()
    return metric_samples(exposition)


async def test_provider_errors_are_counted_by_provider_and_kind(telegram, provider, bot):
    provider.enqueue_error(401, {"error": {"message": "bad key", "code": "invalid_api_key"}})
    telegram.user_sends("hello")
    await until(lambda: any("API key" in t for t in bot_texts(telegram)))
    await until(lambda: len(bot.bot_data[SERVICES_KEY].stops) == 0)
    samples = await scrape(bot)
    assert samples['bot_provider_errors_total{kind="auth",provider="fake"}'] == 1.0
    assert samples['bot_answers_total{status="error"}'] == 1.0


async def test_telegram_429s_are_counted(telegram, provider, bot):
    telegram.inject_retry_after("sendMessage", 1)
    provider.enqueue_stream(["Hello there."])
    telegram.user_sends("hello")
    await until(lambda: "Hello there." in bot_texts(telegram))
    samples = await scrape(bot)
    assert samples["bot_telegram_retry_afters_total"] == 1.0
    assert samples['bot_telegram_calls_total{method="sendMessage",outcome="retry_after"}'] == 1.0
    assert samples['bot_telegram_calls_total{method="sendMessage",outcome="ok"}'] >= 1.0
    assert samples['bot_telegram_calls_total{method="getUpdates",outcome="ok"}'] >= 1.0


async def test_streams_and_queued_turns_are_gauged_while_they_last(telegram, provider, bot):
    provider.enqueue(Role(), Chunk("Slow "), Delay(1.5), Chunk("answer."), Finish(), Done())
    provider.enqueue_stream(["Second."])
    telegram.user_sends("first")
    await until(lambda: len(provider.requests) == 1)
    telegram.user_sends("second")
    await until(lambda: any("as soon as" in t for t in bot_texts(telegram)))
    during = await scrape(bot)
    assert during["bot_streams_active"] == 1.0
    assert during["bot_turns_queued"] == 1.0
    await until(lambda: "Second." in bot_texts(telegram))
    await until(lambda: len(bot.bot_data[SERVICES_KEY].stops) == 0)
    after = await scrape(bot)
    assert after["bot_streams_active"] == 0.0
    assert after["bot_turns_queued"] == 0.0
    assert after['bot_answers_total{status="complete"}'] == 2.0
    assert after["bot_provider_first_chunk_seconds_count"] == 2.0
