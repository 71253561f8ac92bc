"""The typed callback context every handler receives, carrying our services."""

from __future__ import annotations

from typing import Any, cast

from telegram.ext import Application, CallbackContext, ExtBot

from bot.services import Services

SERVICES_KEY = "services"


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """PTB's context plus typed access to the bot's services."""

    @property
    def services(self) -> Services:
        """The services installed by ``bot.app.build_application``."""
        return cast(Services, self.application.bot_data[SERVICES_KEY])


BotApplication = Application[
    ExtBot[None], BotContext, dict[Any, Any], dict[Any, Any], dict[Any, Any], Any
]
