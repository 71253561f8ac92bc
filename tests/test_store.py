"""The Store's behaviour on real databases: a SQLite file, and PostgreSQL when it is up."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC
from typing import Any, cast

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import PersonaConfig
from bot.providers.base import Usage
from bot.storage.models import Chat, Conversation, Message, Persona
from bot.storage.records import (
    BegunTurn,
    ChatChoices,
    MessageKind,
    MessageStatus,
    TurnPlan,
    TurnStart,
)
from bot.storage.store import Store
from tests.fakes.databases import record_cache_use

CHAT = 100
TG_CHAT = 100
# Tasks started together in the concurrency tests; no more than the pool's default size.
RACERS = 5
# Scheduling decides whether tasks really overlap; a concurrency test retries with a fresh
# chat until they did, so that it never passes without exercising the race.
MAX_ROUNDS = 10


async def _warm_pool(engine: AsyncEngine) -> None:
    """Open RACERS pooled connections at once, so that racing tasks do not queue on connect."""

    async def hold() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            await asyncio.sleep(0.05)

    await asyncio.gather(*(hold() for _ in range(RACERS)))


def _record_statements(engine: AsyncEngine) -> list[str]:
    """The first word of every statement the engine runs from now on, in order."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2].split()[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return statements


async def _conversation(store: Store, chat_id: int = CHAT) -> int:
    await store.ensure_chat(chat_id, "private")
    return await store.active_conversation(chat_id, persona="default")


async def _answer(store: Store, conversation_id: int, text: str, status: MessageStatus) -> int:
    """An answer to the conversation's last question (a question of its own if it has none)."""
    exchange = await store.last_exchange(conversation_id)
    if exchange is None:
        question_id = await store.add_user_message(
            conversation_id, text="q", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=None
        )
    else:
        question_id = exchange[0].id
    message_id = await store.start_answer(
        conversation_id, question_id=question_id, telegram_chat_id=TG_CHAT, model="gpt-test"
    )
    if status is not MessageStatus.STREAMING:
        await store.finish_answer(message_id, text=text, status=status)
    elif text:
        await store.checkpoint_answer(message_id, text)
    return message_id


async def test_user_message_is_stored_complete_with_its_telegram_message(store: Store) -> None:
    conversation_id = await _conversation(store)

    message_id = await store.add_user_message(
        conversation_id, text="hello", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=55
    )

    message = await store.get_message(message_id)
    assert message is not None
    assert (message.conversation_id, message.role, message.content) == (
        conversation_id,
        "user",
        "hello",
    )
    assert message.status is MessageStatus.COMPLETE
    assert (message.telegram_chat_id, message.telegram_message_ids) == (TG_CHAT, (55,))
    assert message.created_at.tzinfo is not None
    assert message.created_at.utcoffset() == UTC.utcoffset(None)


async def test_answer_is_checkpointed_while_streaming_then_finished_with_usage(
    store: Store, engine: AsyncEngine
) -> None:
    conversation_id = await _conversation(store)
    question_id = await store.add_user_message(
        conversation_id, text="q", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=None
    )
    message_id = await store.start_answer(
        conversation_id,
        question_id=question_id,
        telegram_chat_id=TG_CHAT,
        model="gpt-a",
        provider="one",
    )

    started = await store.get_message(message_id)
    assert started is not None
    assert (started.role, started.content, started.status) == (
        "assistant",
        "",
        MessageStatus.STREAMING,
    )

    await store.checkpoint_answer(message_id, "Hel", [900])
    await store.checkpoint_answer(message_id, "Hello, wor")  # no ids: the stored ones stay
    checkpointed = await store.get_message(message_id)
    assert checkpointed is not None
    assert (checkpointed.content, checkpointed.status) == ("Hello, wor", MessageStatus.STREAMING)
    assert checkpointed.telegram_message_ids == (900,)

    await store.finish_answer(
        message_id,
        text="Hello, world",
        status=MessageStatus.COMPLETE,
        telegram_message_ids=[900, 901],
        usage=Usage(prompt_tokens=12, completion_tokens=3, estimated=True),
        model="gpt-b",
        provider="two",
    )

    finished = await store.get_message(message_id)
    assert finished is not None
    assert (finished.content, finished.status) == ("Hello, world", MessageStatus.COMPLETE)
    assert finished.telegram_message_ids == (900, 901)
    async with engine.connect() as connection:
        row = (await connection.execute(select(Message).where(Message.id == message_id))).one()
    assert (row.prompt_tokens, row.completion_tokens, row.usage_estimated) == (12, 3, True)
    assert (row.model, row.provider, row.telegram_message_id) == ("gpt-b", "two", 900)
    assert row.error_kind is None


async def test_failed_answer_keeps_its_error_kind_and_model(
    store: Store, engine: AsyncEngine
) -> None:
    conversation_id = await _conversation(store)
    question_id = await store.add_user_message(
        conversation_id, text="q", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=None
    )
    message_id = await store.start_answer(
        conversation_id,
        question_id=question_id,
        telegram_chat_id=TG_CHAT,
        model="gpt-a",
        provider="one",
    )

    await store.finish_answer(
        message_id, text="", status=MessageStatus.ERROR, error_kind="rate_limited"
    )

    async with engine.connect() as connection:
        row = (await connection.execute(select(Message).where(Message.id == message_id))).one()
    assert (row.status, row.error_kind, row.model, row.provider) == (
        "error",
        "rate_limited",
        "gpt-a",
        "one",
    )
    assert (row.prompt_tokens, row.usage_estimated) == (None, False)


async def test_late_checkpoint_does_not_overwrite_a_finished_answer(store: Store) -> None:
    conversation_id = await _conversation(store)
    message_id = await _answer(store, conversation_id, "final", MessageStatus.COMPLETE)

    await store.checkpoint_answer(message_id, "fin", [1])

    message = await store.get_message(message_id)
    assert message is not None
    assert (message.content, message.status, message.telegram_message_ids) == (
        "final",
        MessageStatus.COMPLETE,
        (),
    )


async def test_finishing_an_answer_as_streaming_is_refused(store: Store) -> None:
    conversation_id = await _conversation(store)
    message_id = await _answer(store, conversation_id, "", MessageStatus.STREAMING)

    with pytest.raises(ValueError, match="streaming"):
        await store.finish_answer(message_id, text="x", status=MessageStatus.STREAMING)


async def test_history_returns_the_newest_messages_oldest_first(store: Store) -> None:
    conversation_id = await _conversation(store)
    for n in range(3):
        await store.add_user_message(
            conversation_id,
            text=f"q{n}",
            user_id=7,
            telegram_chat_id=TG_CHAT,
            telegram_message_id=n,
        )
        await _answer(store, conversation_id, f"a{n}", MessageStatus.COMPLETE)

    history = await store.history(conversation_id, limit=4)

    assert [m.content for m in history] == ["q1", "a1", "q2", "a2"]
    assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]


async def test_history_leaves_out_error_answers_and_empty_or_streaming_rows(
    store: Store,
) -> None:
    conversation_id = await _conversation(store)
    await store.add_user_message(
        conversation_id, text="q", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=1
    )
    await _answer(store, conversation_id, "complete", MessageStatus.COMPLETE)
    await _answer(store, conversation_id, "cut", MessageStatus.CUT)
    await _answer(store, conversation_id, "stopped", MessageStatus.STOPPED)
    await _answer(store, conversation_id, "partial error", MessageStatus.ERROR)
    await _answer(store, conversation_id, "", MessageStatus.STOPPED)
    await _answer(store, conversation_id, "", MessageStatus.STREAMING)
    await _answer(store, conversation_id, "still going", MessageStatus.STREAMING)
    interrupted = await _answer(store, conversation_id, "interrupted", MessageStatus.STREAMING)
    await store.mark_interrupted(interrupted)

    history = await store.history(conversation_id, limit=40)

    assert [m.content for m in history] == ["q", "complete", "cut", "stopped", "interrupted"]


async def test_history_leaves_out_turns_of_other_kinds(store: Store, engine: AsyncEngine) -> None:
    conversation_id = await _conversation(store)
    await store.add_user_message(
        conversation_id, text="q", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=1
    )
    await _answer(store, conversation_id, "a", MessageStatus.COMPLETE)
    asked = await store.add_user_message(
        conversation_id,
        text="a red fox",
        user_id=7,
        telegram_chat_id=TG_CHAT,
        telegram_message_id=2,
        kind=MessageKind.IMAGE,
    )
    drawn = await store.start_answer(
        conversation_id,
        question_id=asked,
        telegram_chat_id=TG_CHAT,
        model="dall-e-3",
        kind=MessageKind.IMAGE,
    )
    await store.finish_answer(drawn, text="[1 image]", status=MessageStatus.COMPLETE)

    assert [m.content for m in await store.history(conversation_id, limit=40)] == ["q", "a"]
    async with engine.connect() as connection:
        kinds = (await connection.scalars(select(Message.kind).order_by(Message.id))).all()
    assert kinds == ["chat", "chat", "image", "image"]


async def test_history_limit_counts_only_usable_messages(store: Store) -> None:
    conversation_id = await _conversation(store)
    await store.add_user_message(
        conversation_id, text="q1", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=1
    )
    await store.add_user_message(
        conversation_id, text="q2", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=2
    )
    await _answer(store, conversation_id, "oops", MessageStatus.ERROR)
    await _answer(store, conversation_id, "", MessageStatus.STREAMING)

    assert [m.content for m in await store.history(conversation_id, limit=2)] == ["q1", "q2"]
    assert await store.history(conversation_id, limit=0) == []


async def test_history_belongs_to_one_conversation(store: Store) -> None:
    first = await _conversation(store)
    await store.add_user_message(
        first, text="old", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=1
    )
    second = await store.new_conversation(CHAT, persona="default")
    await store.add_user_message(
        second, text="new", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=2
    )

    assert [m.content for m in await store.history(second, limit=10)] == ["new"]
    assert [m.content for m in await store.history(first, limit=10)] == ["old"]


async def test_active_conversation_is_reused_until_a_new_one_ends_it(
    store: Store, engine: AsyncEngine
) -> None:
    first = await _conversation(store)
    assert await store.active_conversation(CHAT, persona="default") == first

    second = await store.new_conversation(CHAT, persona="pirate")

    assert second != first
    assert await store.active_conversation(CHAT, persona="pirate") == second
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Conversation).order_by(Conversation.id))).all()
    assert [(r.id, r.persona, r.ended_at is None) for r in rows] == [
        (first, "default", False),
        (second, "pirate", True),
    ]


async def test_active_conversation_under_another_persona_is_ended_and_replaced(
    store: Store, engine: AsyncEngine
) -> None:
    first = await _conversation(store)

    replaced = await store.active_conversation(CHAT, persona="pirate")

    assert replaced != first
    assert await store.active_conversation(CHAT, persona="pirate") == replaced
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Conversation).order_by(Conversation.id))).all()
    assert [(r.persona, r.ended_at is None) for r in rows] == [
        ("default", False),
        ("pirate", True),
    ]


async def test_a_saved_persona_prompt_is_read_back_and_updated(store: Store) -> None:
    assert await store.persona_prompt("chat:1") is None
    await store.save_persona("chat:1", "Rhyme.", description="custom")
    await store.save_persona("chat:1", "Rhyme always.", description="custom")
    assert await store.persona_prompt("chat:1") == "Rhyme always."


async def test_new_conversation_without_an_open_one_just_starts_one(store: Store) -> None:
    await store.ensure_chat(CHAT, "private")

    started = await store.new_conversation(CHAT, persona="default")

    assert await store.active_conversation(CHAT, persona="default") == started


async def test_threads_and_users_each_have_their_own_conversation(store: Store) -> None:
    await store.ensure_chat(-200, "supergroup", title="Forum")
    keys: list[dict[str, int | None]] = [
        {"thread_id": None, "user_id": None},
        {"thread_id": 5, "user_id": None},
        {"thread_id": 6, "user_id": None},
        {"thread_id": None, "user_id": 7},
        {"thread_id": 5, "user_id": 7},
        {"thread_id": 5, "user_id": 8},
    ]

    ids = [await store.active_conversation(-200, persona="p", **key) for key in keys]

    assert len(set(ids)) == len(keys)
    assert [await store.active_conversation(-200, persona="p", **key) for key in keys] == ids
    # Starting over in one thread leaves the others open.
    renewed = await store.new_conversation(-200, persona="p", thread_id=5)
    assert [await store.active_conversation(-200, persona="p", **key) for key in keys] == [
        ids[0],
        renewed,
        *ids[2:],
    ]


async def test_concurrent_first_messages_share_one_conversation(
    store: Store, engine: AsyncEngine
) -> None:
    await _warm_pool(engine)
    statements = _record_statements(engine)
    raced = False
    for chat_id in range(1, MAX_ROUNDS + 1):
        await store.ensure_chat(chat_id, "private")
        statements.clear()

        ids = await asyncio.gather(
            *(store.active_conversation(chat_id, persona="default") for _ in range(RACERS))
        )

        assert len(set(ids)) == 1
        # Every caller looked before any of them had created it: the case under test.
        if statements[:RACERS] == ["SELECT"] * RACERS:
            raced = True
            break
    assert raced


async def test_conversation_of_an_unknown_chat_is_refused(store: Store) -> None:
    with pytest.raises(LookupError, match="ensure_chat"):
        await store.active_conversation(999, persona="default")


async def test_concurrent_ensure_chat_for_a_new_chat_records_it_once(
    store: Store, engine: AsyncEngine
) -> None:
    await _warm_pool(engine)
    statements = _record_statements(engine)
    raced = False
    for chat_id in range(1, MAX_ROUNDS + 1):
        statements.clear()

        await asyncio.gather(
            *(store.ensure_chat(chat_id, "group", title=f"t{n}") for n in range(RACERS))
        )

        # Several inserts, so the losers fell back to updating: the case under test.
        if statements.count("INSERT") > 1:
            raced = True
            break
    assert raced
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Chat).order_by(Chat.id))).all()
    assert [(r.id, r.type) for r in rows] == [(n, "group") for n in range(1, chat_id + 1)]
    assert {r.title for r in rows} <= {f"t{n}" for n in range(RACERS)}


async def test_ensure_chat_updates_the_chat_and_keeps_what_is_not_given(
    store: Store, engine: AsyncEngine
) -> None:
    await store.ensure_chat(CHAT, "group", title="Old", language="en")

    await store.ensure_chat(CHAT, "supergroup", title="New")

    async with engine.connect() as connection:
        row = (await connection.execute(select(Chat))).one()
    assert (row.type, row.title, row.language) == ("supergroup", "New", "en")
    assert await store.chat_language(CHAT) == "en"
    assert await store.chat_language(12345) is None
    assert row.created_at.tzinfo is not None
    assert row.updated_at >= row.created_at


async def test_chat_persona_is_none_until_chosen_and_can_be_reset(store: Store) -> None:
    await store.ensure_chat(CHAT, "private")
    assert await store.chat_persona(CHAT) is None
    assert await store.chat_persona(12345) is None

    await store.set_chat_persona(CHAT, "pirate")
    assert await store.chat_persona(CHAT) == "pirate"

    await store.set_chat_persona(CHAT, None)
    assert await store.chat_persona(CHAT) is None


async def test_choosing_a_persona_for_an_unknown_chat_is_refused(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.set_chat_persona(12345, "pirate")


async def test_sync_personas_inserts_new_and_updates_existing_by_name(
    store: Store, engine: AsyncEngine
) -> None:
    await store.sync_personas(
        [
            PersonaConfig(name="default", prompt="Be helpful."),
            PersonaConfig(name="pirate", prompt="Arr.", description="Talks like a pirate"),
        ]
    )

    await store.sync_personas(
        [
            PersonaConfig(name="pirate", prompt="Arr!", description="A pirate"),
            PersonaConfig(name="poet", prompt="Rhyme."),
        ]
    )

    async with engine.connect() as connection:
        rows = (await connection.execute(select(Persona).order_by(Persona.name))).all()
    assert [(r.name, r.prompt, r.description) for r in rows] == [
        ("default", "Be helpful.", ""),
        ("pirate", "Arr!", "A pirate"),
        ("poet", "Rhyme.", ""),
    ]


async def test_unfinished_answers_are_found_and_marked_interrupted_with_their_text(
    store: Store,
) -> None:
    conversation_id = await _conversation(store)
    await store.add_user_message(
        conversation_id, text="q", user_id=7, telegram_chat_id=TG_CHAT, telegram_message_id=1
    )
    await _answer(store, conversation_id, "done", MessageStatus.COMPLETE)
    empty = await _answer(store, conversation_id, "", MessageStatus.STREAMING)
    partial = await _answer(store, conversation_id, "half an ans", MessageStatus.STREAMING)

    unfinished = await store.unfinished_answers()
    assert [(m.id, m.content) for m in unfinished] == [(empty, ""), (partial, "half an ans")]

    for message in unfinished:
        await store.mark_interrupted(message.id)

    assert await store.unfinished_answers() == []
    interrupted = await store.get_message(partial)
    assert interrupted is not None
    assert (interrupted.status, interrupted.content) == (
        MessageStatus.INTERRUPTED,
        "half an ans",
    )


async def test_mark_interrupted_leaves_a_finished_answer_alone(store: Store) -> None:
    conversation_id = await _conversation(store)
    message_id = await _answer(store, conversation_id, "done", MessageStatus.STOPPED)

    await store.mark_interrupted(message_id)

    message = await store.get_message(message_id)
    assert message is not None
    assert message.status is MessageStatus.STOPPED


async def test_unknown_message_is_none(store: Store) -> None:
    assert await store.get_message(424242) is None


async def test_an_unchanged_chat_costs_no_query_and_a_changed_one_is_updated(
    store: Store, engine: AsyncEngine
) -> None:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    await store.ensure_chat(CHAT, "group", "Old title", "en")
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await store.ensure_chat(CHAT, "group", "Old title", "en")
        assert statements == []
        await store.ensure_chat(CHAT, "supergroup", "New title", "en")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    async with engine.connect() as connection:
        row = (await connection.execute(select(Chat.type, Chat.title))).one()
    assert tuple(row) == ("supergroup", "New title")


def _default_plan(chat: ChatChoices) -> TurnPlan:
    """The chat's persona (its stored prompt, if any) and model, with defaults."""
    return TurnPlan(
        persona=chat.persona or "default",
        prompt=chat.persona_prompt or "Be helpful.",
        model=chat.model or "gpt-test",
    )


# Telegram numbers each chat's messages once: every turn gets a message id of its own.
_telegram_ids = itertools.count(55)


def _turn(chat_id: int = CHAT, text: str = "hello", **details: Any) -> TurnStart:
    return TurnStart(
        chat_id=chat_id,
        chat_type=details.pop("chat_type", "private"),
        text=text,
        history_limit=details.pop("history_limit", 10),
        user_id=details.pop("user_id", 7),
        telegram_message_id=details.pop("telegram_message_id", None) or next(_telegram_ids),
        **details,
    )


def _count_commits(engine: AsyncEngine) -> list[int]:
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _connection: commits.append(1))
    return commits


async def test_begin_turn_records_the_chat_the_user_message_and_a_streaming_answer(
    store: Store, engine: AsyncEngine
) -> None:
    turn = await store.begin_turn(
        _turn(text="hi there", title="Me", language="zh", thread_id=None, telegram_message_id=55),
        _default_plan,
    )

    assert turn.plan == TurnPlan("default", "Be helpful.", "gpt-test")
    assert [(m.id, m.role, m.content) for m in turn.history] == [
        (turn.user_message_id, "user", "hi there")
    ]
    assert turn.provider_sessions == {}
    user = await store.get_message(turn.user_message_id)
    answer = await store.get_message(turn.answer_id)
    assert user is not None
    assert answer is not None
    assert (user.conversation_id, user.status, user.telegram_message_ids) == (
        turn.conversation_id,
        MessageStatus.COMPLETE,
        (55,),
    )
    assert (answer.conversation_id, answer.role, answer.content, answer.status) == (
        turn.conversation_id,
        "assistant",
        "",
        MessageStatus.STREAMING,
    )
    assert turn.user_message_id < turn.answer_id
    async with engine.connect() as connection:
        chat = (await connection.execute(select(Chat.type, Chat.title, Chat.language))).one()
        model = await connection.scalar(select(Message.model).where(Message.id == turn.answer_id))
    assert tuple(chat) == ("private", "Me", "zh")
    assert model == "gpt-test"
    assert await store.chat_language(CHAT) == "zh"


async def test_begin_turn_plans_from_the_chats_persona_its_prompt_and_model(
    store: Store, engine: AsyncEngine
) -> None:
    await store.ensure_chat(CHAT, "private")
    await store.save_persona("chat:100", "Rhyme.")
    await store.set_chat_persona(CHAT, "chat:100")
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE chats SET model = 'chosen-model'"))
    seen: list[ChatChoices] = []

    def plan(chat: ChatChoices) -> TurnPlan:
        seen.append(chat)
        return _default_plan(chat)

    turn = await store.begin_turn(_turn(), plan)

    assert seen == [ChatChoices(persona="chat:100", persona_prompt="Rhyme.", model="chosen-model")]
    assert turn.plan == TurnPlan("chat:100", "Rhyme.", "chosen-model")
    assert await store.active_conversation(CHAT, persona="chat:100") == turn.conversation_id


async def test_next_turn_continues_the_conversation_with_its_usable_history(
    store: Store,
) -> None:
    first = await store.begin_turn(_turn(text="one"), _default_plan)
    await store.finish_answer(first.answer_id, text="answer one", status=MessageStatus.COMPLETE)
    failed = await store.begin_turn(_turn(text="two"), _default_plan)
    await store.finish_answer(failed.answer_id, text="", status=MessageStatus.ERROR)
    await store.set_provider_session(first.conversation_id, "wrapper", "code-1")

    third = await store.begin_turn(_turn(text="three", history_limit=3), _default_plan)

    assert third.conversation_id == first.conversation_id
    assert [(m.role, m.content) for m in third.history] == [
        ("assistant", "answer one"),
        ("user", "two"),
        ("user", "three"),
    ]
    assert third.history == tuple(await store.history(third.conversation_id, limit=3))
    assert third.provider_sessions == {"wrapper": "code-1"}


async def test_begin_turn_under_another_persona_ends_the_conversation_and_starts_one(
    store: Store, engine: AsyncEngine
) -> None:
    first = await store.begin_turn(_turn(text="one"), _default_plan)

    def pirate(chat: ChatChoices) -> TurnPlan:
        return TurnPlan("pirate", "Arr.", "gpt-test")

    second = await store.begin_turn(_turn(text="two"), pirate)

    assert second.conversation_id != first.conversation_id
    assert [m.content for m in second.history] == ["two"]
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Conversation).order_by(Conversation.id))).all()
    assert [(r.persona, r.ended_at is None) for r in rows] == [
        ("default", False),
        ("pirate", True),
    ]


async def test_begin_turn_keeps_topics_apart_and_follows_a_new_conversation(
    store: Store,
) -> None:
    general = await store.begin_turn(_turn(text="general"), _default_plan)
    topic = await store.begin_turn(_turn(text="topic", thread_id=5), _default_plan)
    fresh = await store.new_conversation(CHAT, persona="default")

    after = await store.begin_turn(_turn(text="after /new"), _default_plan)

    assert len({general.conversation_id, topic.conversation_id, fresh}) == 3
    assert after.conversation_id == fresh
    assert [m.content for m in after.history] == ["after /new"]
    again = await store.begin_turn(_turn(text="topic again", thread_id=5), _default_plan)
    assert again.conversation_id == topic.conversation_id


async def test_turns_arriving_together_share_one_commit_and_keep_their_order(
    store: Store, engine: AsyncEngine
) -> None:
    await store.begin_turn(_turn(chat_id=1, text="earlier"), _default_plan)
    commits = _count_commits(engine)
    starts = [_turn(chat_id=chat_id, text=f"to {chat_id}") for chat_id in range(1, 21)]
    # Two turns of chat 1's conversation in the same batch: the second sees the first.
    starts.append(_turn(chat_id=1, text="to 1 again"))

    turns = await asyncio.gather(*(store.begin_turn(start, _default_plan) for start in starts))

    assert len(commits) == 1
    assert len({turn.conversation_id for turn in turns}) == 20
    assert [m.content for m in turns[0].history] == ["earlier", "to 1"]
    assert [m.content for m in turns[-1].history] == ["earlier", "to 1", "to 1 again"]
    for start, turn in zip(starts[1:20], turns[1:20], strict=True):
        assert [m.content for m in turn.history] == [start.text]
        stored = await store.get_message(turn.user_message_id)
        assert stored is not None
        assert (stored.content, stored.telegram_chat_id) == (start.text, start.chat_id)
        answer = await store.get_message(turn.answer_id)
        assert answer is not None
        assert (answer.conversation_id, answer.status) == (
            turn.conversation_id,
            MessageStatus.STREAMING,
        )


async def test_a_turn_that_fails_in_a_shared_transaction_fails_alone(
    store: Store, engine: AsyncEngine
) -> None:
    def refuse(chat: ChatChoices) -> TurnPlan:
        raise ValueError("no persona")

    good = [_turn(chat_id=chat_id) for chat_id in (1, 2, 3)]
    # A chat without a type breaks the chats' NOT NULL constraint: the database refuses it.
    broken = _turn(chat_id=4, chat_type=cast(str, None))
    calls = [store.begin_turn(start, _default_plan) for start in good]
    calls.append(store.begin_turn(_turn(chat_id=5), refuse))
    calls.append(store.begin_turn(broken, _default_plan))

    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(outcome, BegunTurn) for outcome in outcomes[:3])
    assert isinstance(outcomes[3], ValueError)
    assert isinstance(outcomes[4], IntegrityError)
    async with engine.connect() as connection:
        chats = (await connection.scalars(select(Chat.id).order_by(Chat.id))).all()
        users = (
            await connection.scalars(
                select(Message.telegram_chat_id).where(Message.role == "user").order_by(Message.id)
            )
        ).all()
    assert list(users) == [1, 2, 3]
    assert 4 not in chats


async def test_checkpoints_and_finishes_arriving_together_share_one_commit(
    store: Store, engine: AsyncEngine
) -> None:
    turns = [await store.begin_turn(_turn(chat_id=chat_id), _default_plan) for chat_id in (1, 2)]
    commits = _count_commits(engine)

    await asyncio.gather(
        store.checkpoint_answer(turns[0].answer_id, "so far", [900]),
        store.finish_answer(turns[1].answer_id, text="done", status=MessageStatus.COMPLETE),
    )

    assert len(commits) == 1
    checkpointed = await store.get_message(turns[0].answer_id)
    finished = await store.get_message(turns[1].answer_id)
    assert checkpointed is not None
    assert finished is not None
    assert (checkpointed.content, checkpointed.status, checkpointed.telegram_message_ids) == (
        "so far",
        MessageStatus.STREAMING,
        (900,),
    )
    assert (finished.content, finished.status) == ("done", MessageStatus.COMPLETE)


async def test_turns_racing_a_new_conversation_leave_one_open_conversation(
    store: Store, engine: AsyncEngine
) -> None:
    await store.begin_turn(_turn(text="first"), _default_plan)

    def pirate(chat: ChatChoices) -> TurnPlan:
        return TurnPlan("pirate", "Arr.", "gpt-test")

    turn, fresh = await asyncio.gather(
        store.begin_turn(_turn(text="switch"), pirate),
        store.new_conversation(CHAT, persona="default"),
    )

    async with engine.connect() as connection:
        open_ids = (
            await connection.scalars(
                select(Conversation.id).where(
                    Conversation.chat_id == CHAT, Conversation.ended_at.is_(None)
                )
            )
        ).all()
    assert len(open_ids) == 1
    assert open_ids[0] in {turn.conversation_id, fresh}


async def _rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every row of the chats, conversations and messages tables, in a stable order."""
    async with engine.connect() as connection:
        return [
            tuple(row)
            for table in (Chat, Conversation, Message)
            for row in await connection.execute(select(table.__table__).order_by(text("1")))
        ]


async def test_warm_up_leaves_no_rows_behind(store: Store, engine: AsyncEngine) -> None:
    await store.begin_turn(_turn(text="kept"), _default_plan)
    before = await _rows(engine)

    await store.warm_up()

    assert await _rows(engine) == before
    assert len(before) == 4  # the chat, its conversation, the question and its answer


async def test_after_the_warm_up_turns_of_any_burst_size_run_compiled_statements(
    store: Store, engine: AsyncEngine
) -> None:
    await store.warm_up()
    used = record_cache_use(engine)

    # A new chat alone; bursts of known and new chats (with histories) of two sizes.
    await store.begin_turn(_turn(chat_id=1), _default_plan)
    for chats in ((1, 2, 3), (1, 2, 3, 4, 5, 6, 7)):
        await asyncio.gather(*(store.begin_turn(_turn(chat_id=c), _default_plan) for c in chats))

    def pirate(chat: ChatChoices) -> TurnPlan:
        return TurnPlan("pirate", "Arr.", "gpt-test")

    # Another persona: the open conversation is ended under the chat's lock, a new one begun.
    turn = await store.begin_turn(_turn(chat_id=1), pirate)
    # The answer's own writes as it streams and when it is done, as the chat handler makes
    # them (the final one without a model: the turn's own stays).
    await store.checkpoint_answer(turn.answer_id, "Arr")
    await store.checkpoint_answer(turn.answer_id, "Arr, matey", [41])
    await store.finish_answer(
        turn.answer_id,
        text="Arr, matey.",
        status=MessageStatus.COMPLETE,
        telegram_message_ids=[41],
        usage=Usage(5, 3),
        provider="fake",
        error_kind=None,
    )

    assert {word for word, _ in used} >= {"INSERT", "SELECT", "UPDATE"}
    assert [(word, hit) for word, hit in used if hit is not CacheStats.CACHE_HIT] == []


async def test_turns_together_each_get_their_own_conversations_newest_history(
    store: Store,
) -> None:
    for number in range(4):
        turn = await store.begin_turn(_turn(chat_id=1, text=f"q{number}"), _default_plan)
        await store.finish_answer(turn.answer_id, text=f"a{number}", status=MessageStatus.COMPLETE)
    await store.begin_turn(_turn(chat_id=2, text="only"), _default_plan)

    long, short, new = await asyncio.gather(
        store.begin_turn(_turn(chat_id=1, text="next", history_limit=4), _default_plan),
        store.begin_turn(_turn(chat_id=2, text="next", history_limit=4), _default_plan),
        store.begin_turn(_turn(chat_id=3, text="first", history_limit=4), _default_plan),
    )

    assert [m.content for m in long.history] == ["a2", "q3", "a3", "next"]
    assert [m.content for m in short.history] == ["only", "next"]
    assert [m.content for m in new.history] == ["first"]


async def test_a_message_id_stored_in_another_chat_is_no_duplicate_in_a_batch(
    store: Store,
) -> None:
    stored = await store.begin_turn(_turn(chat_id=1, telegram_message_id=7), _default_plan)

    # Chat 1 has message 7 stored: chat 2's message 7 and chat 1's message 8 are new.
    other_chat, same_chat = await asyncio.gather(
        store.begin_turn(_turn(chat_id=2, telegram_message_id=7), _default_plan),
        store.begin_turn(_turn(chat_id=1, telegram_message_id=8), _default_plan),
    )

    assert other_chat.conversation_id != stored.conversation_id
    assert [m.telegram_message_ids for m in same_chat.history] == [(7,), (8,)]


async def test_a_turn_costs_one_look_up_and_its_inserts_and_a_known_chats_its_history(
    store: Store, engine: AsyncEngine
) -> None:
    statements = _record_statements(engine)

    await store.begin_turn(_turn(chat_id=1), _default_plan)
    # The chat, the look-up (choices, open conversation, duplicates), its conversation, the
    # question, and the answer naming the question's id.
    assert statements == ["INSERT", "SELECT", "INSERT", "INSERT", "INSERT"]
    statements.clear()

    await store.begin_turn(_turn(chat_id=1), _default_plan)
    # The look-up, the history, the question and the answer.
    assert statements == ["SELECT", "SELECT", "INSERT", "INSERT"]
