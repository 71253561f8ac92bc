"""Stopping a streaming answer: the Stop button, and the stop control of a native draft."""

from __future__ import annotations

import logging

from telegram import Update

from bot.handlers.chat import STOP_PREFIX
from bot.handlers.context import BotContext
from bot.inflight import StopOutcome
from bot.messages import language_of, text
from bot.stop_relay import request_stop

logger = logging.getLogger(__name__)

# Bot API 10.3 update sent when the user presses stop on a draft; PTB 22.8 does not type it
# yet, so it arrives in Update.api_kwargs.
DRAFT_STOPPED = "stopped_message_generation"


async def stop_button_pressed(update: Update, context: BotContext) -> None:
    """Stop the answer named by the button, if the presser may."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    try:
        answer_id = int(query.data.removeprefix(STOP_PREFIX))
    except ValueError:
        await query.answer()
        return
    user = update.effective_user
    user_id = user.id if user else None
    services = context.services
    outcome = await request_stop(
        services.stops,
        services.stop_relay,
        answer_id,
        user_id,
        privileged=services.access.is_bot_admin(user_id),
    )
    lang = language_of(user.language_code if user else None)
    await query.answer(text(f"stop.{outcome.value}", lang))


async def draft_stopped(update: Update, context: BotContext) -> None:
    """Stop the answer whose draft the user stopped (its draft id is the answer's id)."""
    payload = update.api_kwargs.get(DRAFT_STOPPED)
    if not isinstance(payload, dict):
        return
    draft_id = payload.get("draft_id")
    chat = payload.get("chat")
    if not isinstance(draft_id, int) or not isinstance(chat, dict):
        return
    # Drafts exist only in private chats, whose id is the user's: the asker pressed it.
    services = context.services
    outcome = await request_stop(
        services.stops, services.stop_relay, draft_id, chat.get("id"), privileged=False
    )
    if outcome is not StopOutcome.STOPPING:
        logger.info("draft stop for answer %s: %s", draft_id, outcome.value)


def is_draft_stop(update: object) -> bool:
    """Whether ``update`` is a draft's stop."""
    return isinstance(update, Update) and DRAFT_STOPPED in update.api_kwargs
