"""Answering, after a restart, the messages the previous process left unanswered.

A message queued behind an answer when the bot stopped, one whose answer the stop cut
before it showed anything, or one stored just before a crash with no answer begun, is
pending. Start-up answers each recent one in order, in its conversation,
as a reply to it; an older one gets a note to ask again, and a very old one nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from telegram import Chat, Message, Update, User

from bot.handlers.chat import answer_pending
from bot.handlers.context import BotApplication, BotContext
from bot.inflight import ConversationKey
from bot.messages import language_of, text
from bot.services import Services
from bot.storage.models import utcnow
from bot.storage.records import PendingTurn

logger = logging.getLogger(__name__)

# Past this age a pending message gets no note either: the user has long moved on.
NOTE_WITHIN = timedelta(days=1)


async def resume_pending(
    services: Services, application: BotApplication
) -> list[asyncio.Task[None]]:
    """Start answering the pending messages, a task per conversation; return the tasks.

    Returns once every conversation is held by its task (or known held elsewhere), so that
    messages arriving later queue behind the pending ones.
    """
    by_conversation: dict[int, list[PendingTurn]] = {}
    for turn in await services.store.pending_turns():
        by_conversation.setdefault(turn.message.conversation_id, []).append(turn)
    tasks = []
    for turns in by_conversation.values():
        placed = asyncio.Event()
        task = asyncio.create_task(
            _resume_conversation(services, application, turns, placed),
            name=f"resume-{turns[0].message.conversation_id}",
        )
        tasks.append(task)
        # Set whatever happens to the task (its ``finally``).
        await placed.wait()
    if tasks:
        logger.info("answering the messages of %d conversations left by a restart", len(tasks))
    return tasks


def _lock_key(turn: PendingTurn) -> ConversationKey:
    chat_id = turn.message.telegram_chat_id
    if turn.member_id is None:
        return (chat_id, turn.thread_id)
    return (chat_id, turn.thread_id, turn.member_id)


async def _resume_conversation(
    services: Services,
    application: BotApplication,
    turns: Sequence[PendingTurn],
    placed: asyncio.Event,
) -> None:
    """Answer one conversation's pending messages in order, holding it throughout."""
    try:
        async with services.conversations.try_hold(_lock_key(turns[0])) as free:
            placed.set()
            if not free:
                # A live instance answers in it now; its messages wait for the next start-up.
                logger.info("conversation %s is busy elsewhere", turns[0].message.conversation_id)
                return
            for turn in turns:
                if services.stops.closing:
                    return
                try:
                    await _resume(services, application, turn)
                except Exception:
                    logger.exception("answering pending message %s failed", turn.message.id)
    finally:
        placed.set()


async def _resume(services: Services, application: BotApplication, turn: PendingTurn) -> None:
    """Answer one pending message, or, too old, say it was not answered (or say nothing)."""
    stored = turn.message
    age = utcnow() - stored.created_at
    update = _update_of(turn, application)
    message = update.effective_message
    assert message is not None
    within = timedelta(seconds=services.config.streaming.resume_within)
    if age > within or message.text is None or message.message_id <= 0:
        if await services.store.expire_turn(stored.id) and age <= NOTE_WITHIN:
            lang = language_of(turn.language)
            await BotContext(application).reply(message, text("resume.too_old", lang))
        logger.info("pending message %s is too old to answer", stored.id)
        return
    await answer_pending(update, BotContext(application), stored.id)
    if not services.stops.closing:
        # Not begun (the user was over their rate, say): never left for a later restart.
        await services.store.expire_turn(stored.id)


def _update_of(turn: PendingTurn, application: BotApplication) -> Update:
    """The stored message as the update that brought it, as far as answering needs."""
    stored = turn.message
    chat = Chat(
        id=stored.telegram_chat_id,
        type=turn.chat_type,
        title=turn.title,
        is_forum=True if turn.thread_id is not None else None,
    )
    sender = (
        None
        if stored.user_id is None
        else User(id=stored.user_id, first_name="", is_bot=False, language_code=turn.language)
    )
    message = Message(
        message_id=stored.telegram_message_ids[0] if stored.telegram_message_ids else 0,
        date=stored.created_at,
        chat=chat,
        from_user=sender,
        text=stored.content,
        message_thread_id=turn.thread_id,
        is_topic_message=True if turn.thread_id is not None else None,
    )
    message.set_bot(application.bot)
    return Update(update_id=0, message=message)
