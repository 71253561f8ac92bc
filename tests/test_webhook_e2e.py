"""Webhook mode and the ops endpoints: the real bot behind PTB's webhook server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.handlers.context import SERVICES_KEY
from bot.metrics import Metrics
from bot.ops import OpsServer, Readiness
from tests.e2e import bot_texts, free_port, metric_samples, until
from tests.factories import WEBHOOK_SECRET
from tests.fakes.telegram_webhook import SECRET_HEADER


@pytest.fixture
def webhook_port():
    return free_port()


@pytest.fixture
def config(config_for, webhook_port):
    return config_for(
        telegram={
            "mode": "webhook",
            "webhook": {
                "url": f"http://127.0.0.1:{webhook_port}/hook/telegram",
                "listen": "127.0.0.1",
                "port": webhook_port,
                "secret_token": WEBHOOK_SECRET,
                "max_connections": 10,
            },
        },
        streaming={"drafts": False},
        ops={"listen": "127.0.0.1", "port": 0},
    )


async def test_webhook_mode_sets_the_webhook_and_answers_what_telegram_posts(
    telegram, provider, bot, webhook_port
):
    set_calls = telegram.calls_to("setWebhook")
    assert len(set_calls) == 1
    assert set_calls[0].params["url"] == f"http://127.0.0.1:{webhook_port}/hook/telegram"
    assert set_calls[0].params["secret_token"] == WEBHOOK_SECRET
    assert not telegram.calls_to("getUpdates"), "a webhook bot must not poll"

    provider.enqueue_stream(["Hello ", "from the webhook."])
    update_id = telegram.user_sends("Hi")
    await until(lambda: "Hello from the webhook." in bot_texts(telegram))
    assert telegram.delivered_at(update_id) is not None
    assert telegram.webhook is not None
    assert [a.status for a in telegram.webhook.attempts if a.update_id == update_id] == [200]


async def test_webhook_refuses_posts_without_the_secret_token(
    telegram, provider, bot, webhook_port
):
    update = {
        "update_id": 9001,
        "message": {
            "message_id": 5,
            "date": 0,
            "chat": {"id": 42, "type": "private"},
            "from": {"id": 42, "is_bot": False, "first_name": "Mallory"},
            "text": "forged",
        },
    }
    url = f"http://127.0.0.1:{webhook_port}/hook/telegram"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {SECRET_HEADER: "wrong"}):
            async with session.post(url, json=update, headers=headers) as response:
                assert response.status == 403
    await asyncio.sleep(0.3)
    assert not provider.requests
    assert not bot_texts(telegram)


async def test_health_says_ready_with_the_mode_and_metrics_count_answers(telegram, provider, bot):
    services = bot.bot_data[SERVICES_KEY]
    port = services.readiness.ops_port
    assert port
    provider.enqueue_stream(["Counted."])
    telegram.user_sends("count me")
    await until(lambda: "Counted." in bot_texts(telegram))
    # The text reaches Telegram before the answer is stored and counted.
    await until(lambda: len(services.stops) == 0)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
            body = await response.json()
        assert body == {"status": "ready", "mode": "webhook", "bot": "test_llm_bot"}
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            samples = metric_samples(await response.text())
    assert samples['bot_answers_total{status="complete"}'] == 1.0
    assert samples['bot_telegram_calls_total{method="setWebhook",outcome="ok"}'] == 1.0
    assert samples['bot_telegram_calls_total{method="sendMessage",outcome="ok"}'] >= 1.0
    assert samples["bot_provider_first_chunk_seconds_count"] == 1.0
    assert samples["bot_streams_active"] == 0.0
    assert samples["bot_turns_queued"] == 0.0
    assert samples["bot_outbox_waiting"] == 0.0


async def test_health_answers_503_until_the_bot_is_ready():
    readiness = Readiness()
    server = OpsServer(readiness, Metrics())
    port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "not ready"
            readiness.ready = True
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
    finally:
        await server.stop()


async def test_polling_after_webhook_mode_deletes_the_webhook_first(
    telegram, provider, config_for, start_bot, webhook_port
):
    webhook_config = config_for(
        telegram={
            "mode": "webhook",
            "webhook": {
                "url": f"http://127.0.0.1:{webhook_port}/hook",
                "listen": "127.0.0.1",
                "port": webhook_port,
                "secret_token": WEBHOOK_SECRET,
            },
        },
        streaming={"drafts": False},
    )
    async with start_bot(webhook_config):
        assert telegram.calls_to("setWebhook")
    assert telegram.webhook is not None, "stopping keeps the webhook, as Telegram would"

    async with start_bot(config_for(streaming={"drafts": False})):
        await telegram.wait_until_polling()
        assert telegram.webhook is None
        provider.enqueue_stream(["Polling again."])
        telegram.user_sends("still there?")
        await until(lambda: "Polling again." in bot_texts(telegram))
