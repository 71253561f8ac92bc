"""A conversation's provider session in storage: its owner, its staleness, its migration."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from sqlalchemy import text

from bot.storage.db import alembic_config, create_engine, migrate
from bot.storage.records import MessageStatus
from bot.storage.store import Store

CHAT = 100
WRAPPER = "wrapper"
OTHER = "openai"


async def _conversation(store: Store) -> int:
    await store.ensure_chat(CHAT, "private")
    return await store.active_conversation(CHAT, persona="default")


async def _answered(
    store: Store,
    conversation_id: int,
    provider: str,
    *,
    text: str = "an answer",
    status: MessageStatus = MessageStatus.COMPLETE,
) -> None:
    asked = await store.add_user_message(
        conversation_id, text="q", user_id=1, telegram_chat_id=CHAT, telegram_message_id=None
    )
    answer = await store.start_answer(
        conversation_id, question_id=asked, telegram_chat_id=CHAT, model="m"
    )
    await store.finish_answer(answer, text=text, status=status, provider=provider)


async def test_a_new_conversation_has_no_session(store: Store) -> None:
    conversation = await _conversation(store)
    assert await store.provider_session(conversation, WRAPPER) is None
    assert await store.provider_sessions(conversation) == {}


async def test_a_stored_session_is_given_back_to_its_provider_only(store: Store) -> None:
    conversation = await _conversation(store)
    await store.set_provider_session(conversation, WRAPPER, "MjAyMy0wNS0zMCAxMDo1MDozNw==")
    assert await store.provider_session(conversation, WRAPPER) == "MjAyMy0wNS0zMCAxMDo1MDozNw=="
    assert await store.provider_session(conversation, OTHER) is None
    assert await store.provider_sessions(conversation) == {WRAPPER: "MjAyMy0wNS0zMCAxMDo1MDozNw=="}


async def test_a_new_session_replaces_the_old_one_and_its_owner(store: Store) -> None:
    conversation = await _conversation(store)
    await store.set_provider_session(conversation, WRAPPER, "one")
    await store.set_provider_session(conversation, "steamship", "file-1")
    assert await store.provider_session(conversation, WRAPPER) is None
    assert await store.provider_sessions(conversation) == {"steamship": "file-1"}


async def test_sessions_belong_to_one_conversation(store: Store) -> None:
    first = await _conversation(store)
    await store.set_provider_session(first, WRAPPER, "one")
    second = await store.new_conversation(CHAT, persona="default")
    assert await store.provider_sessions(second) == {}
    assert await store.provider_session(first, WRAPPER) == "one"


async def test_long_sessions_are_stored_whole(store: Store) -> None:
    conversation = await _conversation(store)
    value = "x" * 5000
    await store.set_provider_session(conversation, WRAPPER, value)
    assert await store.provider_session(conversation, WRAPPER) == value


async def test_setting_a_session_of_an_unknown_conversation_fails(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.set_provider_session(12345, WRAPPER, "one")
    assert await store.provider_sessions(12345) == {}


async def test_clearing_forgets_the_session(store: Store) -> None:
    conversation = await _conversation(store)
    await store.set_provider_session(conversation, WRAPPER, "one")
    await store.clear_provider_session(conversation)
    assert await store.provider_sessions(conversation) == {}


async def test_an_answer_from_the_owner_keeps_the_session(store: Store) -> None:
    conversation = await _conversation(store)
    await store.set_provider_session(conversation, WRAPPER, "one")
    await _answered(store, conversation, WRAPPER)
    assert await store.provider_sessions(conversation) == {WRAPPER: "one"}


@pytest.mark.parametrize(
    "status", [MessageStatus.COMPLETE, MessageStatus.CUT, MessageStatus.STOPPED]
)
async def test_an_answer_from_another_provider_makes_the_session_stale(
    store: Store, status: MessageStatus
) -> None:
    conversation = await _conversation(store)
    await store.set_provider_session(conversation, WRAPPER, "one")
    await _answered(store, conversation, OTHER, status=status)
    assert await store.provider_sessions(conversation) == {}


@pytest.mark.parametrize(
    ("text", "status"),
    [("", MessageStatus.COMPLETE), ("", MessageStatus.ERROR), ("partial", MessageStatus.ERROR)],
)
async def test_answers_that_add_no_context_keep_the_session(
    store: Store, text: str, status: MessageStatus
) -> None:
    conversation = await _conversation(store)
    await store.set_provider_session(conversation, WRAPPER, "one")
    await _answered(store, conversation, OTHER, text=text, status=status)
    assert await store.provider_sessions(conversation) == {WRAPPER: "one"}


async def test_an_answer_elsewhere_leaves_other_conversations_alone(store: Store) -> None:
    first = await _conversation(store)
    await store.set_provider_session(first, WRAPPER, "one")
    await store.ensure_chat(CHAT + 1, "private")
    second = await store.active_conversation(CHAT + 1, persona="default")
    await _answered(store, second, OTHER)
    assert await store.provider_sessions(first) == {WRAPPER: "one"}


async def test_upgrading_from_0001_keeps_conversations_and_messages(database_url: str) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.upgrade, config, "0001")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO chats (id, type, created_at, updated_at)"
                    " VALUES (1, 'private', '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO conversations (id, chat_id, persona, started_at)"
                    " VALUES (1, 1, 'default', '2024-01-01 00:00:00')"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content, status,"
                    " telegram_chat_id, usage_estimated, created_at, updated_at)"
                    " VALUES (1, 'user', 'hi', 'complete', 1, false,"
                    " '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
                )
            )

        await migrate(database_url)
        store = Store(engine)
        assert await store.provider_sessions(1) == {}
        await store.set_provider_session(1, WRAPPER, "one")

        # And back: the columns go, the conversation and its message stay.
        await asyncio.to_thread(command.downgrade, config, "0001")
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM conversations")) == 1
            assert await connection.scalar(text("SELECT count(*) FROM messages")) == 1
    finally:
        await engine.dispose()
