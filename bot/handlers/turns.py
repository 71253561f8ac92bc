"""The stored side of a turn outside the conversation's context: /complete and /edit."""

from __future__ import annotations

from telegram import Message

from bot.handlers.chat import Reply, active_conversation_of, topic_of
from bot.handlers.context import BotContext
from bot.messages import Lang
from bot.storage.records import MessageKind


async def begin_turn(
    context: BotContext,
    message: Message,
    lang: Lang,
    *,
    prompt: str,
    kind: MessageKind,
    model: str,
    user_id: int | None,
) -> Reply:
    """Store the user's turn and the empty answer, of ``kind``; return where it goes."""
    store = context.services.store
    chat_id = message.chat_id
    conversation = await active_conversation_of(context, message, lang)
    question_id = await store.add_user_message(
        conversation,
        text=prompt,
        user_id=user_id,
        telegram_chat_id=chat_id,
        telegram_message_id=message.message_id,
        kind=kind,
    )
    answer_id = await store.start_answer(
        conversation, question_id=question_id, telegram_chat_id=chat_id, model=model, kind=kind
    )
    return Reply(answer_id, conversation, chat_id, topic_of(message), message.message_id)
