"""Updates the bot does not act on: ones seen before, and ones from users it does not serve.

Both run before every other handler (PTB groups below 0) and end the update there.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop

from bot.addressing import is_addressed
from bot.handlers.chat import lang_of
from bot.handlers.context import BotContext
from bot.messages import text

logger = logging.getLogger(__name__)

DEDUPE_GROUP = -2
ACCESS_GROUP = -1


async def skip_repeated_update(update: Update, context: BotContext) -> None:
    """An update delivered again (a webhook retry, say) is handled once."""
    if not context.services.seen_updates.add(update.update_id):
        logger.info("update %s arrived again; handled already", update.update_id)
        raise ApplicationHandlerStop


async def refuse_strangers(update: Update, context: BotContext) -> None:
    """Users outside the allow-lists are told once that the bot is not theirs, then ignored."""
    services = context.services
    user, chat = update.effective_user, update.effective_chat
    if user is None and chat is None:
        return  # nothing to judge by; handlers check what they need
    if services.allow_list.allows(user.id if user else None, chat.id if chat else None):
        return
    lang = lang_of(update)
    query = update.callback_query
    if query is not None:
        await query.answer(text("access.refused", lang), show_alert=True)
    elif user is not None and _asks_the_bot(update, context):
        message = update.effective_message
        if message is not None and services.refused_told.add(user.id):
            logger.info("user %s refused in chat %s", user.id, chat.id if chat else None)
            await context.reply(message, text("access.refused", lang))
    raise ApplicationHandlerStop


def _asks_the_bot(update: Update, context: BotContext) -> bool:
    """Whether the update is meant for the bot: anything in private, else a command or mention."""
    message = update.message
    if message is None:
        return False
    if message.chat.type == ChatType.PRIVATE:
        return True
    body = message.text or message.caption or ""
    if body.startswith("/"):
        command = body.split(maxsplit=1)[0]
        _, _, addressee = command.partition("@")
        return not addressee or addressee.lower() == (context.bot.username or "").lower()
    return is_addressed(message, context.bot.id, context.bot.username)
