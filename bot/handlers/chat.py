"""Answering: /chat, plain text in private chats, and /new.

``stream_reply`` is the one path from a provider's events to a stored, shown answer; /chat,
/complete, /edit and /retry all take it, each within its conversation's turn
(``take_turn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, MessageEntityType

from bot.addressing import quoted_context, quoted_image
from bot.config import ConversationScope
from bot.context import build_messages, estimate_tokens, message_tokens, prompt_bound
from bot.errors import ContextTooLong, InputError, ProviderError
from bot.handlers.context import BotContext
from bot.handlers.limits import too_fast
from bot.handlers.photos import seen_images
from bot.handlers.quota import check_quota, record_usage
from bot.handlers.requeue import requeue_unstarted
from bot.inflight import ConversationKey as LockKey
from bot.messages import Lang, cut_note, language_of, text, user_message
from bot.model_choice import resolve_model
from bot.personas import chat_persona, persona_of
from bot.providers import read_pace
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    ProviderSession,
    StreamEvent,
    StreamStart,
    TextDelta,
    Usage,
)
from bot.providers.service import user_tag
from bot.storage.records import (
    ChatChoices,
    DuplicateMessage,
    MessageKind,
    MessageStatus,
    TurnPlan,
    TurnStart,
)
from bot.streaming.editor import StreamEditor
from bot.streaming.typing import TypingIndicator
from bot.vision import stored_text, with_images

logger = logging.getLogger(__name__)

ConversationKey = tuple[int, int | None]

EventSource = Callable[[], AsyncIterator[StreamEvent]]
"""Opens the provider stream of one answer (called once, when the answer starts)."""

# Seconds between two stored checkpoints of a streaming answer.
CHECKPOINT_SECONDS = 3.0

# Callback data of the Stop button: the prefix and the answer's id.
STOP_PREFIX = "stop:"


def topic_of(message: Message) -> int | None:
    """The forum topic ``message`` is in, where answers to it go; None outside topics."""
    return message.message_thread_id if message.is_topic_message else None


def conversation_key(message: Message, scope: ConversationScope = "topic") -> ConversationKey:
    """Chat plus forum topic (each topic keeps its own conversation), or the chat alone."""
    return (message.chat_id, None if scope == "chat" else topic_of(message))


def conversation_member(message: Message, scope: ConversationScope) -> int | None:
    """With the user scope, the group member whose own conversation this is; else None."""
    if scope != "user" or message.chat.type == ChatType.PRIVATE or message.from_user is None:
        return None
    return message.from_user.id


def lock_key(message: Message, scope: ConversationScope) -> LockKey:
    """What the conversation of ``message`` is locked by: the same split as its history."""
    chat_id, thread_id = conversation_key(message, scope)
    member = conversation_member(message, scope)
    return (chat_id, thread_id) if member is None else (chat_id, thread_id, member)


def command_argument(message: Message) -> str:
    """The text after the leading /command, line breaks kept (``context.args`` loses them)."""
    body = message.text or ""
    for entity in message.entities:
        if entity.type == MessageEntityType.BOT_COMMAND and entity.offset == 0:
            # Entity lengths are UTF-16 units, but a command is ASCII, so they match here.
            return body[entity.length :].strip()
    return body.strip()


def lang_of(update: Update) -> Lang:
    """The catalogue language of the user behind ``update``."""
    user = update.effective_user
    return language_of(user.language_code if user else None)


async def chat_command(update: Update, context: BotContext) -> None:
    """Answer ``/chat TEXT``."""
    message = update.effective_message
    if message is None:
        return
    prompt = command_argument(message)
    if not prompt:
        await context.reply(message, user_message(InputError("input.empty_chat"), lang_of(update)))
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
    scope = services.config.context.scope
    chat_id, thread_id = conversation_key(message, scope)
    async with services.conversations.hold(lock_key(message, scope)):
        await services.store.ensure_chat(chat_id, message.chat.type, message.chat.title)
        persona = await chat_persona(services.config, services.store, chat_id)
        await services.store.new_conversation(
            chat_id,
            persona=persona.name,
            thread_id=thread_id,
            user_id=conversation_member(message, scope),
        )
    await context.reply(message, text("new_conversation", lang_of(update)))


async def answer(
    update: Update, context: BotContext, prompt: str, images: tuple[str, ...] = ()
) -> None:
    """Store the user's turn, stream the model's answer into the chat, store the answer.

    ``images`` (data: or https: URLs) go to the model with this turn only; without them, a
    photo the message replies to goes instead.
    """
    message = update.effective_message
    assert message is not None
    lang = lang_of(update)
    if await too_long(context, message, prompt, lang):
        return
    if not images and (photo := quoted_image(message, context.bot.id)) is not None:
        seen = await seen_images(context, message, [photo], lang)
        if seen is None:
            return
        images = seen
    # A message of someone else the user replies to is part of what they ask about.
    if (quote := quoted_context(message, context.bot.id)) is not None:
        prompt = f"{quote}\n\n{prompt}"
    try:
        await take_turn(
            context,
            message,
            lang,
            lambda: _answer_in_turn(update, context, prompt, lang, images),
            prompt_tokens=prompt_bound(
                prompt, len(images), context.services.config.context.max_tokens
            ),
            unanswered=lambda: _keep_unanswered(update, context, prompt, images),
        )
    except DuplicateMessage:
        # Delivered again (a restart before Telegram heard it was handled): answered already.
        logger.info("message %s in chat %s arrived again", message.message_id, message.chat_id)


async def too_long(context: BotContext, message: Message, prompt: str, lang: Lang) -> bool:
    """Whether ``prompt`` is over ``context.max_prompt_chars``; if so, the user is told."""
    limit = context.services.config.context.max_prompt_chars
    if len(prompt) <= limit:
        return False
    await context.reply(message, text("input.too_long", lang, length=len(prompt), limit=limit))
    return True


Unanswered = Callable[[], Awaitable[str | None]]
"""Keeps a message the stopping bot will not answer; returns the key of the note to reply."""


async def take_turn(
    context: BotContext,
    message: Message,
    lang: Lang,
    work: Callable[[], Awaitable[None]],
    *,
    prompt_tokens: int | None,
    unanswered: Unanswered | None = None,
    held: bool = False,
) -> None:
    """Run ``work`` when the conversation of ``message`` is free, saying so if it waits.

    ``prompt_tokens`` (at most) are reserved, with the answer's, on the sender's quotas
    (None: a request whose tokens are not counted); over a quota ``work`` never runs.
    ``held``: no lock to take (the caller holds the conversation, or works outside it).
    If the bot stops first, ``work`` never runs: ``unanswered`` keeps what it must and
    names the note to reply (by default the user is asked to send the message again).
    """
    services = context.services
    if await too_fast(context, message, lang):
        return
    quota = check_quota(context, message, lang, prompt_tokens=prompt_tokens)
    key = lock_key(message, services.config.context.scope)

    async def say_queued() -> None:
        if await quota.granted():
            await context.reply(message, text("queued", lang))

    def queued() -> None:
        # Scheduled now but sent while waiting, so the queue position is taken first.
        asyncio.get_running_loop().create_task(say_queued())

    # Taken before any other await, so messages of one conversation are answered in order;
    # ``queued`` runs if an answer before it (on this instance or another) is still going.
    hold = contextlib.nullcontext() if held else services.conversations.hold(key, on_wait=queued)
    async with services.stops.turn(hold) as free, quota.charging() as granted:
        if not granted:
            return
        if free:
            await work()
            return
        note = "restarting" if unanswered is None else await unanswered()
    if note is not None:
        await context.reply(message, text(note, lang))


async def answer_pending(update: Update, context: BotContext, question_id: int) -> None:
    """Answer a message a restart left unanswered (stored as ``question_id``).

    The caller holds its conversation. Should the bot stop again first, it stays pending.
    """
    message = update.effective_message
    assert message is not None
    assert message.text is not None
    lang, prompt = lang_of(update), message.text

    async def stay_pending() -> None:
        return None

    try:
        await take_turn(
            context,
            message,
            lang,
            lambda: _answer_in_turn(update, context, prompt, lang, resumes=question_id),
            prompt_tokens=prompt_bound(prompt, 0, context.services.config.context.max_tokens),
            unanswered=stay_pending,
            held=True,
        )
    except DuplicateMessage:
        logger.info("pending message %s was answered by another instance", question_id)


async def active_conversation_of(context: BotContext, message: Message, lang: Lang) -> int:
    """Record the chat of ``message`` and return its active conversation under its persona."""
    services = context.services
    store = services.store
    scope = services.config.context.scope
    chat_id, thread_id = conversation_key(message, scope)
    await store.ensure_chat(chat_id, message.chat.type, message.chat.title, lang)
    persona = await chat_persona(services.config, store, chat_id)
    return await store.active_conversation(
        chat_id,
        persona=persona.name,
        thread_id=thread_id,
        user_id=conversation_member(message, scope),
    )


async def _keep_unanswered(
    update: Update, context: BotContext, prompt: str, images: tuple[str, ...]
) -> str:
    """Store the user's turn that the bot, stopping, will not answer; the note to reply.

    It is answered after the restart if resuming is on; photos are not kept, so a message
    with photos must be sent again.
    """
    message = update.effective_message
    assert message is not None
    resumes = context.services.config.streaming.resume_within > 0 and not images
    conversation = await active_conversation_of(context, message, lang_of(update))
    await context.services.store.add_user_message(
        conversation,
        text=stored_text(prompt, images),
        user_id=update.effective_user.id if update.effective_user else None,
        telegram_chat_id=message.chat_id,
        telegram_message_id=message.message_id,
        status=MessageStatus.PENDING if resumes else MessageStatus.COMPLETE,
    )
    return "resume.queued" if resumes else "restarting"


async def _answer_in_turn(
    update: Update,
    context: BotContext,
    prompt: str,
    lang: Lang,
    images: tuple[str, ...] = (),
    *,
    resumes: int | None = None,
) -> None:
    """Store the turn (or, with ``resumes``, take up that pending message) and answer it."""
    message = update.effective_message
    assert message is not None
    services = context.services
    config = services.config
    store = services.store
    user_id = update.effective_user.id if update.effective_user else None
    chat_id, thread_id = conversation_key(message, config.context.scope)

    def plan(chat: ChatChoices) -> TurnPlan:
        persona = persona_of(config, chat.persona, chat.persona_prompt)
        return TurnPlan(
            persona=persona.name,
            prompt=persona.prompt,
            model=resolve_model(
                config.models, "chat", chat_choice=chat.model, admin_default=chat.default_model
            ),
        )

    if resumes is not None:
        begun = await store.resume_turn(resumes, plan, config.context.max_messages)
    else:
        # One transaction (shared with the messages that arrived alongside) stores the
        # user's turn and the empty answer before the provider is asked.
        begun = await store.begin_turn(
            TurnStart(
                chat_id=chat_id,
                chat_type=message.chat.type,
                title=message.chat.title,
                language=lang,
                thread_id=thread_id,
                user_id=user_id,
                telegram_message_id=message.message_id,
                conversation_user_id=conversation_member(message, config.context.scope),
                text=stored_text(prompt, images),
                history_limit=config.context.max_messages,
            ),
            plan,
        )
    conversation, answer_id, history = begun.conversation_id, begun.answer_id, begun.history
    request = ChatRequest(
        model=begun.plan.model,
        messages=build_messages(
            begun.plan.prompt,
            [ChatMessage("user" if m.role == "user" else "assistant", m.content) for m in history],
            max_messages=config.context.max_messages,
            max_tokens=config.context.max_tokens,
        ),
        user=user_tag(user_id) if user_id is not None else None,
    )
    request = with_images(request, prompt, images)
    # Providers that keep the context themselves (the wrapper kind) get their own id back.
    sessions = dict(begun.provider_sessions) if services.providers.keeps_sessions else {}
    await stream_reply(
        context,
        Reply(answer_id, conversation, chat_id, topic_of(message), message.message_id),
        lambda: services.providers.stream_chat(request, sessions),
        prompt_tokens=sum(message_tokens(m) for m in request.messages),
        user_id=user_id,
        lang=lang,
    )


@dataclass(frozen=True, slots=True)
class Reply:
    """Where a stored answer goes: its row, its conversation, and its place in Telegram.

    ``in_place_of`` are the messages of an earlier answer the new one takes over (edited in
    place; those it no longer needs are deleted).
    """

    answer_id: int
    conversation: int
    chat_id: int
    thread_id: int | None
    reply_to: int | None
    in_place_of: tuple[int, ...] = ()


async def stream_reply(
    context: BotContext,
    reply: Reply,
    events: EventSource,
    *,
    prompt_tokens: int,
    user_id: int | None,
    lang: Lang,
    kind: MessageKind = MessageKind.CHAT,
    replaces: Sequence[int] = (),
    keep_replaced_on_failure: bool = False,
) -> bool:
    """Stream the answer ``events`` gives into Telegram, checkpointed, with the Stop button.

    ``replaces`` are stored answers the new one supersedes once it shows any text. With
    ``keep_replaced_on_failure``, an answer that shows no text at all leaves the messages of
    ``reply.in_place_of`` untouched and says why in a message of its own. Returns whether
    the answer has any text.
    """
    services = context.services
    store = services.store
    answer_id = reply.answer_id
    last_checkpoint: tuple[float, tuple[int, ...]] = (-math.inf, ())
    superseded = False

    async def supersede() -> None:
        nonlocal superseded
        if replaces and not superseded:
            await store.replace_answers(replaces)
            superseded = True

    async def checkpoint(so_far: str, message_ids: tuple[int, ...]) -> None:
        # Telegram shows the text meanwhile; the store needs it only to survive a crash,
        # so once every few seconds (and whenever a new message joins) is enough.
        nonlocal last_checkpoint
        if so_far:
            await supersede()
        now = time.monotonic()
        if now - last_checkpoint[0] < CHECKPOINT_SECONDS and message_ids == last_checkpoint[1]:
            return
        last_checkpoint = (now, message_ids)
        await store.checkpoint_answer(answer_id, so_far, message_ids)

    editor = StreamEditor(
        context.bot,
        services.outbox,
        reply.chat_id,
        reply_to=reply.reply_to,
        thread_id=reply.thread_id,
        on_progress=checkpoint,
        adopt_message_ids=reply.in_place_of,
        # A draft would grow at the bottom of the chat, away from the answer it replaces.
        drafts=None if reply.in_place_of else services.drafts,
        # The answer's id doubles as its draft id: a stop from the draft names it.
        draft_id=answer_id,
        stop_button=stop_button(answer_id, lang),
    )
    failure_editor = None
    if keep_replaced_on_failure and reply.in_place_of:
        failure_editor = StreamEditor(
            context.bot,
            services.outbox,
            reply.chat_id,
            reply_to=reply.reply_to,
            thread_id=reply.thread_id,
        )
    with services.stops.track(answer_id, user_id) as stop:
        turn = _Turn(
            answer_id,
            reply.conversation,
            lang,
            stop,
            records_session=kind is MessageKind.CHAT,
            failure_editor=failure_editor,
            replaces=tuple(replaces),
        )
        await _stream_answer(context, events, prompt_tokens, editor, turn)
    return bool(editor.text)


def stop_button(answer_id: int, lang: Lang) -> InlineKeyboardMarkup:
    """The Stop button shown under a streaming answer."""
    button = InlineKeyboardButton(
        text("button.stop", lang), callback_data=f"{STOP_PREFIX}{answer_id}"
    )
    return InlineKeyboardMarkup([[button]])


@dataclass(frozen=True, slots=True)
class _Turn:
    """What one answer is part of."""

    answer_id: int
    conversation: int
    lang: Lang
    stop: asyncio.Event
    # Only chat answers belong to the conversation a provider keeps (its session).
    records_session: bool = True
    # Where an answer that shows no text says so, when the messages it took over must stay.
    failure_editor: StreamEditor | None = None
    # Stored answers this one supersedes, marked so with it if it has any text.
    replaces: tuple[int, ...] = ()


@dataclass
class _Outcome:
    """How an answer ended, for storage and for the note under it."""

    status: MessageStatus = MessageStatus.COMPLETE
    note: str | None = None
    error_kind: str | None = None
    usage: Usage | None = None
    provider: str | None = None


async def _stream_answer(
    context: BotContext, events: EventSource, prompt_tokens: int, editor: StreamEditor, turn: _Turn
) -> None:
    """Feed provider events to the editor and finish the stored answer with its status."""
    store, pacing = context.services.store, context.services.config.streaming
    answer_id, lang = turn.answer_id, turn.lang
    typing = TypingIndicator(context.bot, editor.chat_id, editor.thread_id)
    typing.start()
    outcome = _Outcome()

    async def consume() -> None:
        requested = time.monotonic()
        # The provider reads the body when the editor can show more of it.
        read_pace.PACE.set(read_pace.Pace(editor.next_updates, pacing.read_interval_max))
        async for event in events():
            if isinstance(event, TextDelta):
                if not editor.has_text:
                    context.services.metrics.first_chunk.observe(time.monotonic() - requested)
                    await typing.stop()
                editor.append(event.text)
            elif isinstance(event, Usage):
                outcome.usage = event
            elif isinstance(event, StreamStart):
                outcome.provider = event.provider
            elif (
                isinstance(event, ProviderSession)
                and outcome.provider is not None
                and turn.records_session
            ):
                await store.set_provider_session(turn.conversation, outcome.provider, event.value)

    streaming = asyncio.create_task(consume(), name=f"answer-{answer_id}")
    stopped = asyncio.create_task(turn.stop.wait(), name=f"stop-{answer_id}")
    try:
        await asyncio.wait((streaming, stopped), return_when=asyncio.FIRST_COMPLETED)
        if not streaming.done():
            # Cancelling the consumer closes the provider's HTTP response mid-stream.
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
            outcome.status, outcome.note = await _stop_outcome(context, editor, turn)
        else:
            streaming.result()
    except ProviderError as exc:
        logger.warning("answer %s failed: %s (%s)", answer_id, exc.kind, exc.detail)
        outcome.error_kind = exc.kind.value
        if isinstance(exc, ContextTooLong) and turn.records_session:
            # A provider keeping the whole history itself would refuse every turn from now
            # on; the next turn starts it afresh with our trimmed history instead.
            await store.clear_provider_session(turn.conversation)
        if editor.text:
            outcome.status, outcome.note = MessageStatus.CUT, cut_note(exc, lang)
        else:
            outcome.status, outcome.note = MessageStatus.ERROR, user_message(exc, lang)
    except asyncio.CancelledError:
        streaming.cancel()
        # Shutdown while streaming: keep what arrived; recovery at start-up finishes it.
        await asyncio.shield(store.checkpoint_answer(answer_id, editor.text, editor.message_ids))
        raise
    finally:
        stopped.cancel()
        await typing.stop()
    await _finish(context, prompt_tokens, editor, turn, outcome)


async def _stop_outcome(
    context: BotContext, editor: StreamEditor, turn: _Turn
) -> tuple[MessageStatus, str]:
    """How a stopped answer ends: stopped by its user, or interrupted by the bot stopping.

    Interrupted before it showed anything, its question is answered after the restart if it
    may be (see ``requeue_unstarted``); else the user is asked to send it again.
    """
    services, lang = context.services, turn.lang
    if not services.stops.interrupted:
        return MessageStatus.STOPPED, text("note.stopped", lang)
    if editor.text:
        # Start-up recovery would call it interrupted too.
        return MessageStatus.INTERRUPTED, text("note.shutdown", lang)
    answer = await services.store.get_message(turn.answer_id)
    requeued = answer is not None and await requeue_unstarted(services, answer)
    return MessageStatus.INTERRUPTED, text("resume.queued" if requeued else "restarting", lang)


async def _finish(
    context: BotContext,
    prompt_tokens: int,
    editor: StreamEditor,
    turn: _Turn,
    outcome: _Outcome,
) -> None:
    """Show the final text and store the answer, even if Telegram refuses the text."""
    answer_text = editor.text
    usage = outcome.usage or Usage(prompt_tokens, estimate_tokens(answer_text), estimated=True)
    record_usage(usage.prompt_tokens + usage.completion_tokens, answered=bool(answer_text))
    shown, note = editor, outcome.note
    if not answer_text and turn.failure_editor is not None:
        # Nothing new to show: the answer this one was to replace stays as it is.
        await editor.aclose()
        shown = turn.failure_editor
        note = text("retry.failed", turn.lang, reason=note) if note else None
    try:
        await shown.finish(note=note)
    finally:
        await context.services.store.finish_answer(
            turn.answer_id,
            text=answer_text,
            status=outcome.status,
            telegram_message_ids=shown.message_ids,
            usage=usage,
            provider=outcome.provider,
            error_kind=outcome.error_kind,
            # In the same transaction: never two answers to one question in the context.
            replaces=turn.replaces if answer_text else (),
        )
        context.services.metrics.answers.labels(outcome.status.value).inc()
