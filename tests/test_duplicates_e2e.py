"""An update delivered twice is answered once: in one run, and after a restart."""

from __future__ import annotations

import asyncio

import pytest

from bot.storage.db import create_engine, migrate
from bot.storage.records import DuplicateMessage, TurnPlan, TurnStart
from bot.storage.store import Store
from tests.e2e import answers_once_stored, bot_texts, free_port, until
from tests.factories import WEBHOOK_SECRET

USER = 42


@pytest.fixture
def config(config_for):
    return config_for(streaming={"drafts": False})


def delivered_updates(telegram):
    """Every update the bot received through getUpdates, in order."""
    return [u for call in telegram.calls_to("getUpdates", ok=True) for u in call.result]


async def test_the_same_update_twice_in_one_run_is_answered_once(telegram, provider, config, bot):
    provider.enqueue_stream(["Once."])
    telegram.user_sends("hello")
    telegram.push_update(telegram.pending_updates[-1])  # same update_id: a retried delivery
    await until(lambda: "Once." in bot_texts(telegram))
    await answers_once_stored(config, 1)
    provider.enqueue_stream(["Next."])
    telegram.user_sends("next")
    await until(lambda: "Next." in bot_texts(telegram))
    ids = [u["update_id"] for u in delivered_updates(telegram)]
    assert ids.count(ids[0]) == 2, "the fake delivered the update twice"
    assert bot_texts(telegram) == ["Once.", "Next."]
    assert len(provider.requests) == 2


async def deliver_again_after_a_restart(telegram, provider, config, start_bot, text, answer):
    """Send ``text`` (answered with the ``answer`` pieces), restart, deliver it again, then
    send "next" (answered "Next."); return the update delivered twice."""
    provider.enqueue_stream(answer)
    async with start_bot(config):
        telegram.user_sends(text)
        await until(lambda: any("".join(answer).strip() in t for t in bot_texts(telegram)))
        await answers_once_stored(config, 1)
    (update,) = delivered_updates(telegram)

    # The new process remembers nothing of the update but what the database holds.
    telegram.push_update(update)
    async with start_bot(config):
        await until(lambda: not telegram.pending_updates)
        provider.enqueue_stream(["Next."])
        telegram.user_sends("next")
        await until(lambda: "Next." in bot_texts(telegram))
    return update


async def test_a_message_delivered_again_after_a_restart_is_not_answered_again(
    telegram, provider, config, start_bot
):
    update = await deliver_again_after_a_restart(
        telegram, provider, config, start_bot, "hello", ["Once."]
    )
    assert [u["update_id"] for u in delivered_updates(telegram)].count(update["update_id"]) >= 2
    # "next" may arrive while the repeated message still holds the conversation (and wait).
    answers = [t for t in bot_texts(telegram) if not t.startswith("⏳")]
    assert answers == ["Once.", "Next."]
    assert [r.json["messages"][-1]["content"] for r in provider.requests] == ["hello", "next"]


async def test_the_store_refuses_a_stored_telegram_message_even_in_one_batch(database_url):
    await migrate(database_url)
    engine = create_engine(database_url)
    store = Store(engine)

    def plan(_chat: object) -> TurnPlan:
        return TurnPlan("default", "Be helpful.", "gpt-test")

    def turn(chat_id: int, message_id: int) -> TurnStart:
        return TurnStart(
            chat_id=chat_id,
            chat_type="private",
            text="hi",
            history_limit=5,
            user_id=7,
            telegram_message_id=message_id,
        )

    try:
        first, again, other_chat = await asyncio.gather(
            store.begin_turn(turn(100, 1), plan),
            store.begin_turn(turn(100, 1), plan),
            store.begin_turn(turn(200, 1), plan),
            return_exceptions=True,
        )
        assert not isinstance(first, BaseException)
        assert isinstance(again, DuplicateMessage)
        assert not isinstance(other_chat, BaseException), "message ids are per chat"
        with pytest.raises(DuplicateMessage):
            await store.begin_turn(turn(100, 1), plan)
        await store.begin_turn(turn(100, 2), plan)
    finally:
        await engine.dispose()


async def test_a_webhook_delivery_repeated_by_telegram_is_answered_once(
    telegram, provider, config_for, start_bot
):
    port = free_port()
    config = config_for(
        telegram={
            "mode": "webhook",
            "webhook": {
                "url": f"http://127.0.0.1:{port}/hook",
                "listen": "127.0.0.1",
                "port": port,
                "secret_token": WEBHOOK_SECRET,
            },
        },
        streaming={"drafts": False},
    )
    async with start_bot(config):
        provider.enqueue_stream(["Once."])
        telegram.user_sends("hello")
        update = telegram.pending_updates[-1]
        await until(lambda: "Once." in bot_texts(telegram))
        telegram.push_update(update)  # Telegram did not hear the answer and posts it again
        assert telegram.webhook is not None
        webhook = telegram.webhook
        await until(lambda: len([a for a in webhook.attempts if a.status == 200]) == 2)
        await answers_once_stored(config, 1)
        provider.enqueue_stream(["Next."])
        telegram.user_sends("next")
        await until(lambda: "Next." in bot_texts(telegram))
    assert bot_texts(telegram) == ["Once.", "Next."]
    assert len(provider.requests) == 2


async def test_a_completion_delivered_again_after_a_restart_is_not_run_again(
    telegram, provider, config, start_bot
):
    update = await deliver_again_after_a_restart(
        telegram, provider, config, start_bot, "/complete This is", [" a test."]
    )
    assert [u["update_id"] for u in delivered_updates(telegram)].count(update["update_id"]) >= 2
    assert len(provider.requests) == 2
    assert provider.requests[0].path == "/v1/completions"
    assert not any("went wrong" in t for t in bot_texts(telegram))
