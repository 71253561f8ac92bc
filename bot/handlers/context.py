"""The typed callback context every handler receives, carrying our services."""

from __future__ import annotations

from typing import Any, cast

from telegram import Message
from telegram.ext import Application, CallbackContext, ExtBot

from bot.services import Services

SERVICES_KEY = "services"


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """PTB's context plus typed access to the bot's services."""

    @property
    def services(self) -> Services:
        """The services installed by ``bot.app.build_application``."""
        return cast(Services, self.application.bot_data[SERVICES_KEY])

    async def reply(self, message: Message, text: str) -> Message | None:
        """Reply to ``message`` within the chat's flood budget (every send counts)."""
        return await self.services.outbox.call(
            message.chat_id,
            lambda: message.reply_text(text, do_quote=True),
            must_deliver=True,
        )


BotApplication = Application[
    ExtBot[None], BotContext, dict[Any, Any], dict[Any, Any], dict[Any, Any], Any
]
