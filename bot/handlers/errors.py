"""The one place an unexpected exception ends: logged with its traceback, a short apology sent."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError

from bot.handlers.context import BotContext
from bot.messages import language_of, user_message
from bot.storage.records import DuplicateMessage

logger = logging.getLogger(__name__)


async def error_handler(update: object, context: BotContext) -> None:
    """Log the error; tell the user something went wrong, never how."""
    if isinstance(context.error, DuplicateMessage):
        # Telegram delivered a message again after a restart: it was handled the first time.
        logger.info("ignoring a message delivered again: %s", context.error)
        return
    logger.error("error while handling an update", exc_info=context.error)
    if not isinstance(update, Update) or update.effective_message is None:
        return
    user = update.effective_user
    lang = language_of(user.language_code if user else None)
    try:
        apology = user_message(context.error or Exception(), lang)
        await context.reply(update.effective_message, apology)
    except TelegramError:
        logger.warning("could not send the apology for a failed update", exc_info=True)
