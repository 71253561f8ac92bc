"""/edit of a text: the replied-to text (or the lines after the instruction) rewritten.

An edits model (``models.edits``) answers through the provider's edits endpoint, whole; when
none is configured, or the provider has no such endpoint or model, the chat model rewrites
the text, streamed. Photos are edited elsewhere; a reply to one that reaches this handler has
no text to edit.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from telegram import Update

from bot.context import estimate_tokens, message_tokens
from bot.errors import InputError, ModelNotFound, Unsupported
from bot.handlers.chat import command_argument, lang_of, stream_reply, take_turn, too_long
from bot.handlers.context import BotContext
from bot.handlers.turns import begin_turn
from bot.messages import Lang, user_message
from bot.model_choice import effective_model
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    EditRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from bot.providers.service import ProviderService, user_tag
from bot.storage.records import MessageKind

logger = logging.getLogger(__name__)

REWRITE_PROMPT = (
    "Rewrite the text as the instruction says. Answer with the rewritten text only: "
    "no introduction, no comments, no quotation marks around it. Keep the text's language "
    "unless the instruction asks for another."
)
"""The system prompt when the chat model does the editing."""


@dataclass(frozen=True, slots=True)
class EditTask:
    """What to do (``instruction``) to which ``text``."""

    instruction: str
    text: str

    @property
    def prompt(self) -> str:
        """The instruction and the text as one, as the user's turn keeps them."""
        return f"{self.instruction}\n\n{self.text}"


def edit_task(argument: str, replied_text: str | None) -> EditTask:
    """Read ``/edit``'s argument and the text of the message it replies to, if any.

    As a reply to a text, the whole argument is the instruction; otherwise its first line is,
    and the lines after it are the text. Raises ``InputError`` when either is missing.
    """
    if replied_text and replied_text.strip():
        instruction, text = argument, replied_text
    else:
        instruction, _, text = argument.partition("\n")
    task = EditTask(instruction.strip(), text.strip())
    if not task.instruction:
        raise InputError("input.edit_no_instruction")
    if not task.text:
        raise InputError("input.edit_no_text")
    return task


def rewrite_request(task: EditTask, model: str, user: str | None) -> ChatRequest:
    """The chat request that has ``model`` carry out ``task``."""
    prompt = f"Instruction: {task.instruction}\n\nText:\n{task.text}"
    messages = (ChatMessage("system", REWRITE_PROMPT), ChatMessage("user", prompt))
    return ChatRequest(model=model, messages=messages, user=user)


async def edit_command(update: Update, context: BotContext) -> None:
    """Answer ``/edit INSTRUCTION`` with the rewritten text."""
    message = update.effective_message
    if message is None:
        return
    lang = lang_of(update)
    replied = message.reply_to_message
    try:
        task = edit_task(command_argument(message), replied.text if replied else None)
    except InputError as exc:
        await context.reply(message, user_message(exc, lang))
        return
    if await too_long(context, message, task.prompt, lang):
        return
    await take_turn(
        context,
        message,
        lang,
        lambda: _edit_in_turn(update, context, task, lang),
        prompt_tokens=edit_prompt_tokens(task),
    )


def edit_prompt_tokens(task: EditTask) -> int:
    """The most tokens an edit sends: the rewrite prompt, the instruction and the text."""
    return sum(message_tokens(m) for m in rewrite_request(task, "", None).messages)


async def _edit_in_turn(update: Update, context: BotContext, task: EditTask, lang: Lang) -> None:
    message = update.effective_message
    assert message is not None
    services = context.services
    user_id = update.effective_user.id if update.effective_user else None
    user = user_tag(user_id) if user_id is not None else None
    edits_model = await effective_model(services, message.chat_id, "edits")
    rewrite = rewrite_request(task, await effective_model(services, message.chat_id, "chat"), user)
    reply = await begin_turn(
        context,
        message,
        lang,
        prompt=task.prompt,
        kind=MessageKind.EDIT,
        model=edits_model or rewrite.model,
        user_id=user_id,
    )

    def events() -> AsyncIterator[StreamEvent]:
        if not edits_model:
            return services.providers.stream_chat(rewrite)
        request = EditRequest(
            model=edits_model, input=task.text, instruction=task.instruction, user=user
        )
        return edited(services.providers, request, rewrite)

    await stream_reply(
        context,
        reply,
        events,
        prompt_tokens=estimate_tokens(task.instruction) + estimate_tokens(task.text),
        user_id=user_id,
        lang=lang,
        kind=MessageKind.EDIT,
    )


async def edited(
    providers: ProviderService, request: EditRequest, fallback: ChatRequest
) -> AsyncIterator[StreamEvent]:
    """The edits endpoint's answer as one piece; the chat model's rewrite if it has none."""
    try:
        text = await providers.edit_text(request)
    except (Unsupported, ModelNotFound) as exc:
        logger.info(
            "edits model %s unavailable (%s: %s); rewriting with %s",
            request.model,
            exc.kind,
            exc.detail,
            fallback.model,
        )
        async for event in providers.stream_chat(fallback):
            yield event
        return
    if text:
        yield TextDelta(text)
    yield StreamEnd()
