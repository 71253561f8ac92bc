"""/retry: the last answer of the conversation regenerated, in place of the old one.

The last chat question goes to the model again with the history before it. The new answer
streams into the old answer's messages (the first ones it needs; the rest are deleted) and
supersedes it in the store once it shows any text. If it fails before that, the old answer
stays where and as it was, and the failure is told in a message of its own, deleted once a
later /retry succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import Update
from telegram.error import TelegramError

from bot.context import build_messages, message_tokens
from bot.handlers.chat import (
    Reply,
    active_conversation_of,
    lang_of,
    stream_reply,
    take_turn,
    topic_of,
)
from bot.handlers.context import BotContext
from bot.messages import Lang, text
from bot.model_choice import effective_model
from bot.personas import chat_persona
from bot.providers.base import ChatMessage, ChatRequest
from bot.providers.service import user_tag
from bot.storage.records import CONTEXT_STATUSES, StoredMessage

logger = logging.getLogger(__name__)


async def retry_command(update: Update, context: BotContext) -> None:
    """Regenerate the last answer of this chat's conversation."""
    message = update.effective_message
    if message is None:
        return
    lang = lang_of(update)
    # In the conversation's turn: an answer still streaming is finished before it is redone.
    await take_turn(
        context,
        message,
        lang,
        lambda: _retry_in_turn(update, context, lang),
        # The history sent is trimmed to this (unless the question alone is longer).
        prompt_tokens=context.services.config.context.max_tokens,
    )


def answer_to_replace(answers: Sequence[StoredMessage]) -> StoredMessage | None:
    """The answer whose messages the new one takes over: the newest the user saw as an
    answer (text in a context status), else the newest shown at all (an error), else None."""
    shown = [a for a in answers if a.telegram_message_ids]
    good = [a for a in shown if a.content and a.status in CONTEXT_STATUSES]
    if good:
        return good[-1]
    return shown[-1] if shown else None


async def _retry_in_turn(update: Update, context: BotContext, lang: Lang) -> None:
    message = update.effective_message
    assert message is not None
    services = context.services
    config = services.config
    store = services.store
    user_id = update.effective_user.id if update.effective_user else None
    chat_id, thread_id = message.chat_id, topic_of(message)
    conversation = await active_conversation_of(context, message, lang)
    exchange = await store.last_exchange(conversation)
    if exchange is None:
        await context.reply(message, text("retry.nothing", lang))
        return
    question, answers = exchange
    if question.user_id != user_id and not await services.access.may_manage(
        context.bot, chat_id, message.chat.type, user_id
    ):
        await context.reply(message, text("retry.not_allowed", lang))
        return
    persona = await chat_persona(config, store, chat_id)
    history = await store.history(conversation, limit=config.context.max_messages, upto=question.id)
    asker = question.user_id
    request = ChatRequest(
        model=await effective_model(services, chat_id, "chat"),
        messages=build_messages(
            persona.prompt,
            [ChatMessage("user" if m.role == "user" else "assistant", m.content) for m in history],
            max_messages=config.context.max_messages,
            max_tokens=config.context.max_tokens,
        ),
        user=user_tag(asker) if asker is not None else None,
    )
    if services.providers.keeps_sessions:
        # A provider keeping the conversation itself holds the old answer in it.
        await store.clear_provider_session(conversation)
    old = answer_to_replace(answers)
    answer_id = await store.start_answer(
        conversation, question_id=question.id, telegram_chat_id=chat_id, model=request.model
    )
    reply_to = question.telegram_message_ids[0] if question.telegram_message_ids else None
    answered = await stream_reply(
        context,
        Reply(
            answer_id,
            conversation,
            chat_id,
            thread_id,
            reply_to,
            in_place_of=old.telegram_message_ids if old else (),
        ),
        # Without a session, such a provider starts afresh from our history.
        lambda: services.providers.stream_chat(request),
        prompt_tokens=sum(message_tokens(m) for m in request.messages),
        user_id=user_id,
        lang=lang,
        replaces=[a.id for a in answers],
        keep_replaced_on_failure=old is not None and old.status in CONTEXT_STATUSES,
    )
    if answered:
        # Notes of earlier attempts that failed are out of date now.
        stale = [i for a in answers if a is not old for i in a.telegram_message_ids]
        await _delete_messages(context, chat_id, stale)


async def _delete_messages(context: BotContext, chat_id: int, message_ids: Sequence[int]) -> None:
    """Delete what can be deleted; a message too old or already gone just stays or is gone."""
    for message_id in message_ids:
        try:
            await context.bot.delete_message(chat_id, message_id)
        except TelegramError as exc:
            logger.info("could not delete message %s in chat %s: %s", message_id, chat_id, exc)
