"""The per-user request rate, checked where a request would reach a provider."""

from __future__ import annotations

import math

from telegram import Message

from bot.handlers.context import BotContext
from bot.messages import Lang, text


async def too_fast(context: BotContext, message: Message, lang: Lang) -> bool:
    """Count a request of the sender; if over the limit, say how long to wait and return True."""
    services = context.services
    user = message.from_user
    if user is None or services.access.is_bot_admin(user.id):
        return False
    wait = services.rate_limit.take(user.id)
    if wait is None:
        return False
    limit = services.rate_limit.per_minute
    await context.reply(
        message, text("limits.too_fast", lang, limit=limit, seconds=math.ceil(wait))
    )
    return True
