"""Answers name their question; turns answered after a restart are read in conversation order."""

from __future__ import annotations

import itertools

from bot.storage.records import ChatChoices, MessageStatus, TurnPlan, TurnStart
from bot.storage.store import Store

CHAT = 400
USER = 7

_telegram_ids = itertools.count(1000)


def _plan(chat: ChatChoices) -> TurnPlan:
    return TurnPlan(persona=chat.persona or "default", prompt="Be helpful.", model="gpt-test")


def _start(text: str) -> TurnStart:
    return TurnStart(
        chat_id=CHAT,
        chat_type="private",
        text=text,
        history_limit=20,
        user_id=USER,
        telegram_message_id=next(_telegram_ids),
    )


async def _answered(store: Store, question: str, answer: str) -> tuple[int, int, int]:
    """A turn answered live: its conversation, question and answer ids."""
    turn = await store.begin_turn(_start(question), _plan)
    await store.finish_answer(turn.answer_id, text=answer, status=MessageStatus.COMPLETE)
    return turn.conversation_id, turn.user_message_id, turn.answer_id


async def _pending(store: Store, conversation: int, text: str) -> int:
    """A message queued when the bot stopped, left for the restart."""
    return await store.add_user_message(
        conversation,
        text=text,
        user_id=USER,
        telegram_chat_id=CHAT,
        telegram_message_id=next(_telegram_ids),
        status=MessageStatus.PENDING,
    )


async def _contents(store: Store, conversation: int, **options: int) -> list[str]:
    return [m.content for m in await store.history(conversation, limit=20, **options)]


async def test_every_new_answer_names_the_question_it_answers(store: Store) -> None:
    conversation, asked, answered = await _answered(store, "one", "1")
    pending = await _pending(store, conversation, "two")
    resumed = await store.resume_turn(pending, _plan, 20)

    for question, answer in ((asked, answered), (pending, resumed.answer_id)):
        stored = await store.get_message(answer)
        assert stored is not None
        assert stored.question_id == question
        found = await store.question_of(stored)
        assert found is not None
        assert found.id == question


async def test_answers_resumed_after_a_restart_are_read_right_after_their_questions(
    store: Store,
) -> None:
    conversation, _, _ = await _answered(store, "Q1", "A1")
    second = await _pending(store, conversation, "Q2")
    third = await _pending(store, conversation, "Q3")

    # Each resumed answer sees what came before its question, not the later pending one.
    begun = await store.resume_turn(second, _plan, 20)
    assert [m.content for m in begun.history] == ["Q1", "A1", "Q2"]
    await store.finish_answer(begun.answer_id, text="A2", status=MessageStatus.COMPLETE)
    begun = await store.resume_turn(third, _plan, 20)
    assert [m.content for m in begun.history] == ["Q1", "A1", "Q2", "A2", "Q3"]
    await store.finish_answer(begun.answer_id, text="A3", status=MessageStatus.COMPLETE)

    # Stored as Q1 A1 Q2 Q3 A2 A3, read in the order they were asked and answered.
    assert await _contents(store, conversation) == ["Q1", "A1", "Q2", "A2", "Q3", "A3"]
    assert [m.content for m in await store.history(conversation, limit=3)] == ["A2", "Q3", "A3"]
    # A /retry of Q2's turn or of Q3's sees what came before that question.
    assert await _contents(store, conversation, upto=second) == ["Q1", "A1", "Q2"]
    assert await _contents(store, conversation, upto=third) == ["Q1", "A1", "Q2", "A2", "Q3"]
    exchange = await store.last_exchange(conversation)
    assert exchange is not None
    assert (exchange[0].content, [a.content for a in exchange[1]]) == ("Q3", ["A3"])
    # The next live turn is asked with the whole conversation in order.
    turn = await store.begin_turn(_start("Q4"), _plan)
    assert [m.content for m in turn.history] == ["Q1", "A1", "Q2", "A2", "Q3", "A3", "Q4"]


async def test_an_answer_that_showed_nothing_sends_its_question_back_to_pending(
    store: Store,
) -> None:
    conversation, _, _ = await _answered(store, "Q1", "A1")
    turn = await store.begin_turn(_start("Q2"), _plan)

    assert await store.requeue_unstarted(turn.answer_id, turn.user_message_id)

    answer = await store.get_message(turn.answer_id)
    assert answer is not None
    assert (answer.status, answer.question_id) == (MessageStatus.INTERRUPTED, turn.user_message_id)
    assert [p.message.content for p in await store.pending_turns()] == ["Q2"]
    resumed = await store.resume_turn(turn.user_message_id, _plan, 20)
    assert [m.content for m in resumed.history] == ["Q1", "A1", "Q2"]
    # Asked once: a restart later does not take it up again.
    assert not await store.requeue_unstarted(resumed.answer_id, turn.user_message_id)
    assert await store.pending_turns() == []
    assert conversation == resumed.conversation_id


async def test_a_question_another_answer_shows_text_for_is_not_sent_back_to_pending(
    store: Store,
) -> None:
    conversation, asked, _ = await _answered(store, "Q1", "A1")
    # A /retry of Q1 whose new answer the bot stopped before it showed anything.
    retry = await store.start_answer(
        conversation, question_id=asked, telegram_chat_id=CHAT, model="gpt-test"
    )

    assert not await store.requeue_unstarted(retry, asked)

    question = await store.get_message(asked)
    answer = await store.get_message(retry)
    assert question is not None
    assert answer is not None
    assert (question.status, answer.status) == (MessageStatus.COMPLETE, MessageStatus.STREAMING)
