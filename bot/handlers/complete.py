"""/complete: the model continues the user's text (a legacy completion), streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from telegram import Update

from bot.context import estimate_tokens
from bot.errors import InputError
from bot.handlers.chat import command_argument, lang_of, stream_reply, take_turn, too_long
from bot.handlers.context import BotContext
from bot.handlers.turns import begin_turn
from bot.messages import Lang, user_message
from bot.model_choice import effective_model
from bot.providers.base import CompletionRequest, StreamEvent, TextDelta
from bot.providers.service import user_tag
from bot.storage.records import MessageKind


async def complete_command(update: Update, context: BotContext) -> None:
    """Answer ``/complete TEXT`` with the text and its continuation."""
    message = update.effective_message
    if message is None:
        return
    lang = lang_of(update)
    prompt = command_argument(message)
    if not prompt:
        await context.reply(message, user_message(InputError("input.empty_complete"), lang))
        return
    if await too_long(context, message, prompt, lang):
        return
    await take_turn(
        context,
        message,
        lang,
        lambda: _complete_in_turn(update, context, prompt, lang),
        prompt_tokens=estimate_tokens(prompt),
    )


async def _complete_in_turn(update: Update, context: BotContext, prompt: str, lang: Lang) -> None:
    message = update.effective_message
    assert message is not None
    services = context.services
    user_id = update.effective_user.id if update.effective_user else None
    request = CompletionRequest(
        model=await effective_model(services, message.chat_id, "completions"),
        prompt=prompt,
        user=user_tag(user_id) if user_id is not None else None,
    )
    reply = await begin_turn(
        context,
        message,
        lang,
        prompt=prompt,
        kind=MessageKind.COMPLETION,
        model=request.model,
        user_id=user_id,
    )
    await stream_reply(
        context,
        reply,
        lambda: continued(prompt, services.providers.stream_completion(request)),
        prompt_tokens=estimate_tokens(prompt),
        user_id=user_id,
        lang=lang,
        kind=MessageKind.COMPLETION,
    )


async def continued(prompt: str, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """``events`` with ``prompt`` joined to the first piece of text.

    The continuation often starts mid-sentence; shown after its prompt it reads as one text.
    Joined to the first piece rather than sent ahead, an answer that fails before any text
    stays a failure and not a cut answer.
    """
    first = True
    async for event in events:
        if first and isinstance(event, TextDelta):
            first = False
            yield TextDelta(prompt + event.text)
        else:
            yield event
