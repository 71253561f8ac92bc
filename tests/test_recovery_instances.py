"""Start-up recovery with several instances: an answer another instance streams is left alone."""

from __future__ import annotations

from bot.inflight import ConversationLocks
from bot.instances import lock_id
from bot.storage.advisory import AdvisoryLocks
from bot.storage.db import create_engine, migrate
from bot.storage.records import MessageStatus
from bot.storage.store import Store
from tests.e2e import bot_texts, until
from tests.factories import MODEL, make_config


async def test_an_answer_a_live_instance_streams_is_recovered_only_once_it_is_let_go(
    telegram, provider, start_bot, postgres_url
):
    config = make_config(
        telegram_base_url=telegram.base_url,
        telegram_file_url=telegram.base_file_url,
        provider_base_url=provider.base_url,
        database=postgres_url,
        streaming={"drafts": False},
    )
    await migrate(postgres_url)
    engine = create_engine(postgres_url)
    store = Store(engine)
    other_instance = AdvisoryLocks(postgres_url, connections=2)
    try:
        await store.ensure_chat(42, "private")
        conversation = await store.active_conversation(42, persona="default", thread_id=None)
        asked = await store.add_user_message(
            conversation, text="Go on", user_id=42, telegram_chat_id=42, telegram_message_id=1
        )
        answer_id = await store.start_answer(
            conversation, question_id=asked, telegram_chat_id=42, model=MODEL
        )
        await store.checkpoint_answer(answer_id, "Half of an answer", ())

        # Another instance is streaming it right now: it holds the conversation.
        async with ConversationLocks(other_instance, lock_id).hold((42, None)):
            async with start_bot(config):
                await telegram.wait_until_polling()
            answer = await store.get_message(answer_id)
            assert answer is not None
            assert answer.status is MessageStatus.STREAMING
            assert not bot_texts(telegram), "a live instance's answer must not be touched"

        # That instance died (its lock went with it): the next start-up finishes the answer.
        async with start_bot(config):
            await until(lambda: any("interrupted" in t for t in bot_texts(telegram)))
        answer = await store.get_message(answer_id)
        assert answer is not None
        assert answer.status is MessageStatus.INTERRUPTED
        assert bot_texts(telegram)[0].startswith("Half of an answer")
    finally:
        await other_instance.aclose()
        await engine.dispose()
