"""Answering: /chat, plain text in private chats, and /new."""

from __future__ import annotations

import asyncio
import logging

from telegram import Message, Update

from bot.context import build_messages, estimate_tokens, message_tokens
from bot.errors import InputError, ProviderError
from bot.handlers.context import BotContext
from bot.messages import Lang, cut_note, language_of, text, user_message
from bot.providers.base import ChatMessage, ChatRequest, StreamStart, TextDelta, Usage
from bot.providers.service import user_tag
from bot.storage.store import MessageStatus
from bot.streaming.editor import StreamEditor
from bot.streaming.typing import TypingIndicator

logger = logging.getLogger(__name__)

ConversationKey = tuple[int, int | None]


def _conversation_key(message: Message) -> ConversationKey:
    """Chat plus forum topic: each topic keeps its own conversation."""
    thread_id = message.message_thread_id if message.is_topic_message else None
    return (message.chat_id, thread_id)


def _lang(update: Update) -> Lang:
    user = update.effective_user
    return language_of(user.language_code if user else None)


async def chat_command(update: Update, context: BotContext) -> None:
    """Answer ``/chat TEXT``."""
    message = update.effective_message
    if message is None:
        return
    prompt = " ".join(context.args or ()).strip()
    if not prompt:
        await message.reply_text(user_message(InputError("input.empty_chat"), _lang(update)))
        return
    await answer(update, context, prompt)


async def chat_message(update: Update, context: BotContext) -> None:
    """Answer a plain text message."""
    message = update.effective_message
    if message is None or not message.text:
        return
    await answer(update, context, message.text)


async def new_command(update: Update, context: BotContext) -> None:
    """Start a fresh conversation in this chat (or topic)."""
    message = update.effective_message
    if message is None:
        return
    services = context.services
    chat_id, thread_id = key = _conversation_key(message)
    async with services.conversations.hold(key):
        await services.store.ensure_chat(chat_id, message.chat.type, message.chat.title)
        persona = await services.store.chat_persona(chat_id)
        await services.store.new_conversation(
            chat_id, persona=services.config.persona(persona).name, thread_id=thread_id
        )
    await message.reply_text(text("new_conversation", _lang(update)))


async def answer(update: Update, context: BotContext, prompt: str) -> None:
    """Store the user's turn, stream the model's answer into the chat, store the answer."""
    message = update.effective_message
    assert message is not None
    services = context.services
    config = services.config
    lang = _lang(update)
    user_id = update.effective_user.id if update.effective_user else None
    key = _conversation_key(message)
    chat_id, thread_id = key
    # Taken before any other await, so messages of one conversation are answered in order.
    async with services.conversations.hold(key):
        store = services.store
        await store.ensure_chat(chat_id, message.chat.type, message.chat.title, lang)
        persona = config.persona(await store.chat_persona(chat_id))
        conversation = await store.active_conversation(
            chat_id, persona=persona.name, thread_id=thread_id
        )
        await store.add_user_message(
            conversation,
            text=prompt,
            user_id=user_id,
            telegram_chat_id=chat_id,
            telegram_message_id=message.message_id,
        )
        history = await store.history(conversation, limit=config.context.max_messages)
        request = ChatRequest(
            model=config.models.chat,
            messages=build_messages(
                persona.prompt,
                [
                    ChatMessage("user" if m.role == "user" else "assistant", m.content)
                    for m in history
                ],
                max_messages=config.context.max_messages,
                max_tokens=config.context.max_tokens,
            ),
            user=user_tag(user_id) if user_id is not None else None,
        )
        answer_id = await store.start_answer(
            conversation, telegram_chat_id=chat_id, model=request.model
        )

        async def checkpoint(so_far: str, message_ids: tuple[int, ...]) -> None:
            await store.checkpoint_answer(answer_id, so_far, message_ids)

        editor = StreamEditor(
            context.bot,
            services.outbox,
            chat_id,
            reply_to=message.message_id,
            thread_id=thread_id,
            on_progress=checkpoint,
        )
        await _stream_answer(context, request, editor, answer_id, lang)


async def _stream_answer(
    context: BotContext,
    request: ChatRequest,
    editor: StreamEditor,
    answer_id: int,
    lang: Lang,
) -> None:
    """Feed provider events to the editor and finish the stored answer with its status."""
    store = context.services.store
    typing = TypingIndicator(context.bot, editor.chat_id, editor.thread_id)
    typing.start()
    received = False
    usage: Usage | None = None
    provider: str | None = None
    status = MessageStatus.COMPLETE
    note: str | None = None
    error_kind: str | None = None
    try:
        async for event in context.services.providers.stream_chat(request):
            if isinstance(event, TextDelta):
                if not received:
                    received = True
                    await typing.stop()
                editor.append(event.text)
            elif isinstance(event, Usage):
                usage = event
            elif isinstance(event, StreamStart):
                provider = event.provider
    except ProviderError as exc:
        logger.warning("answer %s failed: %s (%s)", answer_id, exc.kind, exc.detail)
        error_kind = exc.kind.value
        status = MessageStatus.CUT if received else MessageStatus.ERROR
        note = cut_note(exc, lang) if received else user_message(exc, lang)
    except asyncio.CancelledError:
        # Shutdown while streaming: keep what arrived; recovery at start-up finishes it.
        await asyncio.shield(store.checkpoint_answer(answer_id, editor.text, editor.message_ids))
        raise
    finally:
        await typing.stop()
    answer_text = editor.text
    if usage is None:
        usage = Usage(
            sum(message_tokens(m) for m in request.messages),
            estimate_tokens(answer_text),
            estimated=True,
        )
    try:
        await editor.finish(note=note)
    finally:
        # Stored even if Telegram refused the final text: the answer itself is not lost.
        await store.finish_answer(
            answer_id,
            text=answer_text,
            status=status,
            telegram_message_ids=editor.message_ids,
            usage=usage,
            provider=provider,
            error_kind=error_kind,
        )
