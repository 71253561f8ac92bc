"""Group messages that speak to the bot: a mention of it, or a reply to one of its messages.

Everything else in a group is left alone; /chat and photos have their own handlers.
"""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType

from bot.addressing import is_addressed, without_mention
from bot.handlers.chat import answer, lang_of
from bot.handlers.context import BotContext
from bot.messages import text


async def group_message(update: Update, context: BotContext) -> None:
    """Answer a group message addressed to the bot; ignore the rest."""
    message = update.effective_message
    if message is None or message.chat.type == ChatType.PRIVATE:
        return
    bot = context.bot
    if not is_addressed(message, bot.id, bot.username):
        return
    prompt = without_mention(message, bot.id, bot.username)
    if not prompt:
        lang = lang_of(update)
        await context.reply(message, text("input.empty_mention", lang, username=bot.username))
        return
    await answer(update, context, prompt)


async def unsupported_message(update: Update, context: BotContext) -> None:
    """Say what the bot understands when sent something it cannot read: anything in a
    private chat, in groups only when it mentions the bot or replies to it."""
    message = update.effective_message
    if message is None:
        return
    bot = context.bot
    if message.chat.type != ChatType.PRIVATE and not is_addressed(message, bot.id, bot.username):
        return
    await context.reply(message, text("input.unsupported", lang_of(update)))
