"""build_application: the one place python-telegram-bot is wired."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.handlers.chat import STOP_PREFIX, chat_command, chat_message, new_command
from bot.handlers.complete import complete_command
from bot.handlers.context import SERVICES_KEY, BotApplication, BotContext
from bot.handlers.edit import edit_command
from bot.handlers.errors import error_handler
from bot.handlers.gate import (
    ACCESS_GROUP,
    DEDUPE_GROUP,
    refuse_strangers,
    skip_repeated_update,
)
from bot.handlers.groups import group_message, unsupported_message
from bot.handlers.help import help_command, start_command
from bot.handlers.images import (
    PHOTO_FILTER,
    REPLIES_TO_PHOTO,
    edit_photo_command,
    image_command,
    photo_message,
)
from bot.handlers.models import MODELS_PREFIX, models_button, models_command
from bot.handlers.persona import PERSONA_PREFIX, persona_button, persona_command
from bot.handlers.retry import retry_command
from bot.handlers.stop import draft_stopped, is_draft_stop, stop_button_pressed
from bot.handlers.usage import usage_command
from bot.services import Services
from bot.telegram_requests import CountingRequest

CONCURRENT_UPDATES = 4096
# PTB's default pool for Bot API calls other than getUpdates.
CONNECTION_POOL = 256
# Seconds beyond the long-poll timeout before a getUpdates request counts as hung.
POLL_GRACE = 10.0


def build_application(services: Services) -> BotApplication:
    """Build the PTB application for ``services.config`` with every handler registered."""
    telegram = services.config.telegram
    application: BotApplication = (
        Application.builder()
        .token(telegram.token)
        .base_url(telegram.base_url)
        .base_file_url(telegram.base_file_url)
        .context_types(ContextTypes(context=BotContext))
        # One slow stream must not hold up other chats (PTB's default of 256 would make the
        # 257th chat wait for a whole answer); order within a conversation is kept by the
        # conversation lock, and Telegram calls by the outbox.
        .concurrent_updates(CONCURRENT_UPDATES)
        .request(CountingRequest(services.metrics, connection_pool_size=CONNECTION_POOL))
        .get_updates_request(
            CountingRequest(
                services.metrics,
                connection_pool_size=1,
                read_timeout=telegram.poll_timeout + POLL_GRACE,
            )
        )
        .build()
    )
    application.bot_data[SERVICES_KEY] = services
    application.add_handler(TypeHandler(Update, skip_repeated_update), group=DEDUPE_GROUP)
    application.add_handler(TypeHandler(Update, refuse_strangers), group=ACCESS_GROUP)
    application.add_handler(CommandHandler("start", start_command))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("new", new_command))
    application.add_handler(CommandHandler("chat", chat_command))
    application.add_handler(CommandHandler("image", image_command))
    # Before any other /edit handler: only a reply to a photo is an image edit.
    application.add_handler(
        CommandHandler("edit", edit_photo_command, filters=filters.REPLY & REPLIES_TO_PHOTO)
    )
    application.add_handler(MessageHandler(PHOTO_FILTER, photo_message))
    application.add_handler(CommandHandler("retry", retry_command))
    application.add_handler(CommandHandler("edit", edit_command))
    application.add_handler(CommandHandler("complete", complete_command))
    application.add_handler(CommandHandler("persona", persona_command))
    application.add_handler(CallbackQueryHandler(persona_button, pattern=f"^{PERSONA_PREFIX}"))
    application.add_handler(CommandHandler("models", models_command))
    application.add_handler(CommandHandler("usage", usage_command))
    application.add_handler(CallbackQueryHandler(models_button, pattern=f"^{MODELS_PREFIX}"))
    application.add_handler(
        MessageHandler(filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, chat_message)
    )
    application.add_handler(
        MessageHandler(
            filters.UpdateType.MESSAGE & filters.ChatType.GROUPS & filters.TEXT & ~filters.COMMAND,
            group_message,
        )
    )
    application.add_handler(
        MessageHandler(
            filters.UpdateType.MESSAGE & ~filters.TEXT & ~filters.StatusUpdate.ALL,
            unsupported_message,
        )
    )
    application.add_handler(CallbackQueryHandler(stop_button_pressed, pattern=f"^{STOP_PREFIX}"))
    application.add_handler(_DraftStopHandler(Update, draft_stopped))
    application.add_error_handler(error_handler)
    return application


class _DraftStopHandler(TypeHandler[Update, BotContext, None]):
    """Routes the untyped ``stopped_message_generation`` update to its handler."""

    def check_update(self, update: object) -> bool:
        return is_draft_stop(update)
