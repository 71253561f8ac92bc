"""/start and /help, and the command list Telegram shows in its menu."""

from __future__ import annotations

from telegram import Bot, BotCommand, Update

from bot.handlers.context import BotContext
from bot.messages import CATALOGUE, Lang, language_of, text

# The commands in the order Telegram's menu shows them.
MENU_COMMANDS = (
    "chat",
    "new",
    "retry",
    "image",
    "edit",
    "complete",
    "persona",
    "models",
    "usage",
    "help",
)


def menu(lang: Lang) -> list[BotCommand]:
    """The command menu in ``lang``."""
    return [BotCommand(name, CATALOGUE[f"command.{name}"][lang]) for name in MENU_COMMANDS]


async def register_commands(bot: Bot) -> None:
    """Publish the command menu: English by default, Chinese for Chinese-speaking users."""
    await bot.set_my_commands(menu("en"))
    await bot.set_my_commands(menu("zh"), language_code="zh")


async def start_command(update: Update, context: BotContext) -> None:
    """Greet the user."""
    if update.effective_message is None:
        return
    lang = language_of(update.effective_user.language_code if update.effective_user else None)
    await context.reply(update.effective_message, text("start", lang) + "\n\n" + text("help", lang))


async def help_command(update: Update, context: BotContext) -> None:
    """Explain the commands."""
    if update.effective_message is None:
        return
    lang = language_of(update.effective_user.language_code if update.effective_user else None)
    await context.reply(update.effective_message, text("help", lang))
