"""Message kinds and regenerated answers in the Store, on real databases."""

from __future__ import annotations

from bot.storage.records import MessageKind, MessageStatus
from bot.storage.store import Store

CHAT = 300
USER = 7


async def _conversation(store: Store) -> int:
    await store.ensure_chat(CHAT, "private")
    return await store.active_conversation(CHAT, persona="default")


async def _turn(
    store: Store,
    conversation: int,
    question: str,
    answer: str,
    *,
    kind: MessageKind = MessageKind.CHAT,
    status: MessageStatus = MessageStatus.COMPLETE,
) -> tuple[int, int]:
    asked = await store.add_user_message(
        conversation,
        text=question,
        user_id=USER,
        telegram_chat_id=CHAT,
        telegram_message_id=None,
        kind=kind,
    )
    answered = await store.start_answer(
        conversation, question_id=asked, telegram_chat_id=CHAT, model="m", kind=kind
    )
    await store.finish_answer(answered, text=answer, status=status, telegram_message_ids=[90])
    return asked, answered


async def test_completion_and_edit_turns_are_kept_but_are_not_context(store: Store) -> None:
    conversation = await _conversation(store)
    await _turn(store, conversation, "hi", "hello")
    asked, answered = await _turn(
        store, conversation, "Once upon", " a time", kind=MessageKind.COMPLETION
    )
    await _turn(store, conversation, "fix: teh", "the", kind=MessageKind.EDIT)
    history = await store.history(conversation, limit=10)
    assert [m.content for m in history] == ["hi", "hello"]
    kept = await store.get_message(answered)
    assert kept is not None
    assert (kept.kind, kept.content) == ("completion", " a time")
    question = await store.get_message(asked)
    assert question is not None
    assert (question.kind, question.user_id) == ("completion", USER)


async def test_history_upto_stops_at_the_question_being_answered_again(store: Store) -> None:
    conversation = await _conversation(store)
    await _turn(store, conversation, "one", "1")
    asked, _ = await _turn(store, conversation, "two", "2")
    history = await store.history(conversation, limit=10, upto=asked)
    assert [m.content for m in history] == ["one", "1", "two"]


async def test_last_exchange_is_the_last_chat_question_and_its_answers(store: Store) -> None:
    conversation = await _conversation(store)
    assert await store.last_exchange(conversation) is None
    await _turn(store, conversation, "one", "1")
    asked, answered = await _turn(store, conversation, "two", "2")
    await _turn(store, conversation, "continue", "d", kind=MessageKind.COMPLETION)
    found = await store.last_exchange(conversation)
    assert found is not None
    question, answers = found
    assert (question.id, question.content, question.user_id) == (asked, "two", USER)
    assert [(a.id, a.content, a.telegram_message_ids) for a in answers] == [(answered, "2", (90,))]


async def test_replaced_answers_leave_the_history_and_the_last_exchange(store: Store) -> None:
    conversation = await _conversation(store)
    asked, old = await _turn(store, conversation, "two", "old answer")
    new = await store.start_answer(
        conversation, question_id=asked, telegram_chat_id=CHAT, model="m"
    )
    await store.finish_answer(new, text="new answer", status=MessageStatus.COMPLETE)
    await store.replace_answers([old])
    assert [m.content for m in await store.history(conversation, limit=10)] == [
        "two",
        "new answer",
    ]
    found = await store.last_exchange(conversation)
    assert found is not None
    assert [a.id for a in found[1]] == [new]
    replaced = await store.get_message(old)
    assert replaced is not None
    assert (replaced.status, replaced.content) == (MessageStatus.REPLACED, "old answer")
    assert asked < old < new
