"""build_application: the one place python-telegram-bot is wired."""

from __future__ import annotations

from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from bot.handlers.chat import chat_command, chat_message, new_command
from bot.handlers.context import SERVICES_KEY, BotApplication, BotContext
from bot.handlers.errors import error_handler
from bot.handlers.help import help_command, start_command
from bot.services import Services

# Seconds beyond the long-poll timeout before a getUpdates request counts as hung.
_POLL_GRACE = 10.0


def build_application(services: Services) -> BotApplication:
    """Build the PTB application for ``services.config`` with every handler registered."""
    telegram = services.config.telegram
    application: BotApplication = (
        Application.builder()
        .token(telegram.token)
        .base_url(telegram.base_url)
        .base_file_url(telegram.base_file_url)
        .context_types(ContextTypes(context=BotContext))
        # One slow stream must not hold up other chats; order within a conversation is
        # kept by the conversation lock instead.
        .concurrent_updates(True)
        .get_updates_read_timeout(telegram.poll_timeout + _POLL_GRACE)
        .build()
    )
    application.bot_data[SERVICES_KEY] = services
    application.add_handler(CommandHandler("start", start_command))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("new", new_command))
    application.add_handler(CommandHandler("chat", chat_command))
    application.add_handler(
        MessageHandler(filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, chat_message)
    )
    application.add_error_handler(error_handler)
    return application
