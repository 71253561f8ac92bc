"""Messages a restart left unanswered are answered after it: once, in order, if recent."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.inflight import ConversationLocks
from bot.instances import lock_id
from bot.messages import text as message_text
from bot.storage.advisory import AdvisoryLocks
from bot.storage.db import create_engine, migrate
from bot.storage.models import Message, utcnow
from bot.storage.records import MessageKind, MessageStatus
from bot.storage.store import Store
from tests.e2e import USER, answer_held_open, bot_texts, stored_answers, stored_questions, until
from tests.factories import make_config
from tests.fakes.provider import Chunk, Delay, Role
from tests.processes import GRACE, bot_process, terminated


def replies_to(telegram, message_id: int) -> list[str]:
    """The texts of the bot's messages replying to ``message_id`` in the user's chat."""
    return [
        m.text
        for m in telegram.messages(USER, from_bot=True)
        if m.reply_to_message_id == message_id
    ]


@pytest.mark.both_databases
async def test_a_message_queued_at_sigterm_is_answered_after_the_restart_and_only_then(
    telegram, provider, config, start_bot, tmp_path
):
    async with bot_process(
        tmp_path, telegram, provider, config, streaming={"shutdown_grace": GRACE}
    ) as process:
        await answer_held_open(telegram, provider, "first question", "The first answer")
        second = telegram.user_sends("second question")
        await until(lambda: message_text("queued", "en") in bot_texts(telegram))
        assert await terminated(process, GRACE) == 0

    # Told it will be answered, not asked to send it again.
    assert replies_to(telegram, second) == [
        message_text("queued", "en"),
        message_text("resume.queued", "en"),
    ]
    assert message_text("restarting", "en") not in bot_texts(telegram)
    assert await stored_questions(config) == [
        ("first question", "complete"),
        ("second question", "pending"),
    ]

    provider.enqueue_stream(["The second answer."])
    async with start_bot(config):
        await until(lambda: "The second answer." in replies_to(telegram, second))
        await until(lambda: provider.requests[-1].json is not None)
    request = provider.requests[1].json["messages"]
    # In its place in the conversation: after the first exchange, as the newest turn.
    assert [m["content"] for m in request[1:]] == [
        "first question",
        "The first answer",
        "second question",
    ]
    assert await stored_questions(config) == [
        ("first question", "complete"),
        ("second question", "resumed"),
    ]

    # A second restart leaves it alone.
    shown = len(bot_texts(telegram))
    async with start_bot(config):
        telegram.user_sends("/help")
        await until(lambda: len(bot_texts(telegram)) == shown + 1)
    assert len(provider.requests) == 2
    assert replies_to(telegram, second)[-1] == "The second answer."


def _contents(request) -> list[str]:
    """The turns a chat request sent, after the system prompt."""
    return [m["content"] for m in request.json["messages"][1:]]


@pytest.mark.both_databases
async def test_answers_given_after_a_restart_follow_their_own_questions_in_later_turns(
    telegram, provider, config, start_bot, tmp_path
):
    async with bot_process(
        tmp_path, telegram, provider, config, streaming={"shutdown_grace": GRACE}
    ) as process:
        await answer_held_open(telegram, provider, "first question", "The first answer")
        second = telegram.user_sends("second question")
        third = telegram.user_sends("third question")
        await until(lambda: bot_texts(telegram).count(message_text("queued", "en")) == 2)
        assert await terminated(process, GRACE) == 0
    # Kept in the order they were sent, to be answered in that order.
    assert await stored_questions(config) == [
        ("first question", "complete"),
        ("second question", "pending"),
        ("third question", "pending"),
    ]

    provider.enqueue_stream(["The second answer."])
    provider.enqueue_stream(["The third answer."])
    async with start_bot(config):
        await until(lambda: "The third answer." in replies_to(telegram, third))
        assert replies_to(telegram, second)[-1] == "The second answer."
        # /retry asks again with what came before the last question: both earlier turns.
        provider.enqueue_stream(["The third answer, again."])
        telegram.user_sends("/retry")
        await until(lambda: len(provider.requests) == 4)
        await until(lambda: "The third answer, again." in bot_texts(telegram))
        provider.enqueue_stream(["The fourth answer."])
        telegram.user_sends("fourth question")
        await until(lambda: "The fourth answer." in bot_texts(telegram))

    first_two = ["first question", "The first answer", "second question", "The second answer."]
    assert _contents(provider.requests[2]) == [*first_two, "third question"]
    assert _contents(provider.requests[3]) == [*first_two, "third question"]
    assert _contents(provider.requests[4]) == [
        *first_two,
        "third question",
        "The third answer, again.",
        "fourth question",
    ]


@pytest.mark.both_databases
async def test_an_answer_cut_at_sigterm_before_any_text_is_answered_after_the_restart(
    telegram, provider, config, start_bot, tmp_path
):
    async with bot_process(
        tmp_path, telegram, provider, config, streaming={"shutdown_grace": GRACE}
    ) as process:
        provider.enqueue_stream(["The first answer."])
        telegram.user_sends("first question")
        await until(lambda: "The first answer." in bot_texts(telegram))
        provider.enqueue(Delay(60), Role(), Chunk("never shown"))
        asked = telegram.user_sends("Are you there?")
        await until(lambda: len(provider.requests) == 2)
        assert await terminated(process, GRACE) == 0

    # Told it will be answered, not asked to send it again (after a "queued" note if the
    # first answer had not quite let go of the conversation yet).
    assert replies_to(telegram, asked)[-1] == message_text("resume.queued", "en")
    assert message_text("restarting", "en") not in bot_texts(telegram)
    assert await stored_questions(config) == [
        ("first question", "complete"),
        ("Are you there?", "pending"),
    ]
    assert await stored_answers(config) == [("The first answer.", "complete"), ("", "interrupted")]

    provider.enqueue_stream(["Yes, I am."])
    async with start_bot(config):
        await until(lambda: "Yes, I am." in replies_to(telegram, asked))
    assert _contents(provider.requests[2]) == [
        "first question",
        "The first answer.",
        "Are you there?",
    ]
    assert await stored_questions(config) == [
        ("first question", "complete"),
        ("Are you there?", "resumed"),
    ]


@pytest.mark.both_databases
async def test_a_message_stored_before_a_crash_with_no_answer_begun_is_answered_after_restart(
    telegram, provider, config, start_bot, tmp_path
):
    async with bot_process(tmp_path, telegram, provider, config) as process:
        provider.enqueue(Delay(60), Role(), Chunk("never shown"))
        asked = telegram.user_sends("Are you there?")
        # The provider is asked only once the message and its empty answer are committed.
        await until(lambda: len(provider.requests) == 1)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    provider.enqueue_stream(["Yes, I am."])
    async with start_bot(config):
        await until(lambda: "Yes, I am." in replies_to(telegram, asked))
    assert bot_texts(telegram) == ["Yes, I am."]
    assert await stored_questions(config) == [("Are you there?", "resumed")]
    assert provider.requests[1].json["messages"][-1]["content"] == "Are you there?"

    async with start_bot(config):
        telegram.user_sends("/help")
        await until(lambda: len(bot_texts(telegram)) == 2)
    assert len(provider.requests) == 2


async def test_a_resumed_answer_cut_by_another_crash_is_not_answered_a_third_time(
    telegram, provider, config, start_bot, tmp_path
):
    async with bot_process(tmp_path, telegram, provider, config) as process:
        provider.enqueue(Delay(60), Role(), Chunk("never shown"))
        telegram.user_sends("Are you there?")
        await until(lambda: len(provider.requests) == 1)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async with bot_process(tmp_path, telegram, provider, config) as process:
        provider.enqueue(Delay(60), Role(), Chunk("never shown either"))
        # The killed process's poll may still count as waiting: allow for a slow start-up.
        await until(lambda: len(provider.requests) == 2, timeout=60)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async with start_bot(config):
        await until(lambda: any("interrupted" in t for t in bot_texts(telegram)))
    assert len(provider.requests) == 2
    assert await stored_questions(config) == [("Are you there?", "resumed")]


@asynccontextmanager
async def _private_conversation(config) -> AsyncIterator[tuple[AsyncEngine, Store, int]]:
    """The migrated database's engine, a store on it, and the user's private conversation."""
    await migrate(config.database.url)
    engine = create_engine(config.database.url)
    try:
        store = Store(engine)
        await store.ensure_chat(USER, "private", language="en")
        conversation = await store.active_conversation(USER, persona="default", thread_id=None)
        yield engine, store, conversation
    finally:
        await engine.dispose()


async def _store_pending(config, text: str, telegram_message_id: int, age: timedelta) -> int:
    """A pending message of the user's private chat, stored ``age`` ago."""
    async with _private_conversation(config) as (engine, store, conversation):
        message_id = await store.add_user_message(
            conversation,
            text=text,
            user_id=USER,
            telegram_chat_id=USER,
            telegram_message_id=telegram_message_id,
            status=MessageStatus.PENDING,
        )
        async with engine.begin() as connection:
            await connection.execute(
                update(Message).where(Message.id == message_id).values(created_at=utcnow() - age)
            )
        return message_id


async def test_an_old_pending_message_gets_a_note_and_a_very_old_one_nothing(
    telegram, provider, config, start_bot
):
    days_old = telegram.user_sends("asked days ago", deliver=False)
    hours_old = telegram.user_sends("asked an hour ago", deliver=False)
    await _store_pending(config, "asked days ago", days_old, timedelta(days=3))
    await _store_pending(config, "asked an hour ago", hours_old, timedelta(hours=1))

    async with start_bot(config):
        await until(lambda: bool(bot_texts(telegram)))
        telegram.user_sends("/help")
        await until(lambda: len(bot_texts(telegram)) == 2)
    assert replies_to(telegram, hours_old) == [message_text("resume.too_old", "en")]
    assert replies_to(telegram, days_old) == []
    assert not provider.requests
    assert await stored_questions(config) == [
        ("asked days ago", "expired"),
        ("asked an hour ago", "expired"),
    ]


async def test_a_pending_message_in_a_conversation_a_live_instance_holds_is_left_to_it(
    telegram, provider, start_bot, postgres_url
):
    config = make_config(
        telegram_base_url=telegram.base_url,
        telegram_file_url=telegram.base_file_url,
        provider_base_url=provider.base_url,
        database=postgres_url,
        streaming={"drafts": False},
    )
    asked = telegram.user_sends("still waiting", deliver=False)
    await _store_pending(config, "still waiting", asked, timedelta(seconds=5))
    other_instance = AdvisoryLocks(postgres_url, connections=1)
    try:
        # Another instance answers in the conversation right now.
        async with (
            ConversationLocks(other_instance, lock_id).hold((USER, None)),
            start_bot(config),
        ):
            await telegram.wait_until_polling()
    finally:
        await other_instance.aclose()
    assert not provider.requests
    assert await stored_questions(config) == [("still waiting", "pending")]

    provider.enqueue_stream(["Answered at last."])
    async with start_bot(config):
        await until(lambda: "Answered at last." in replies_to(telegram, asked))
    assert await stored_questions(config) == [("still waiting", "resumed")]


async def test_an_image_left_unfinished_by_a_crash_is_not_made_again(
    telegram, provider, config, start_bot
):
    asked = telegram.user_sends("/image a red fox", deliver=False)
    async with _private_conversation(config) as (_, store, conversation):
        question = await store.add_user_message(
            conversation,
            text="a red fox",
            user_id=USER,
            telegram_chat_id=USER,
            telegram_message_id=asked,
            kind=MessageKind.IMAGE,
        )
        await store.start_answer(
            conversation,
            question_id=question,
            telegram_chat_id=USER,
            model="dall-e-3",
            kind=MessageKind.IMAGE,
        )

    async with start_bot(config):
        await until(lambda: any("interrupted" in t for t in bot_texts(telegram)))
    assert not provider.requests
    assert await stored_questions(config) == [("a red fox", "complete")]
