"""/usage: one's own quota figures; a chat's for its administrators; everyone's for bot admins."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from telegram import Message, Update
from telegram.constants import ChatType

from bot.config import Config, QuotaLimits
from bot.handlers.chat import command_argument, lang_of
from bot.handlers.context import BotContext
from bot.handlers.quota import GROUP_TYPES
from bot.messages import Lang, text
from bot.quota_text import period_lines, ranking_lines, subject_name
from bot.quotas import (
    ADMIN_ROLE,
    CounterKey,
    Figures,
    Period,
    Scope,
    chat_limits,
    period_id,
    user_role,
)
from bot.storage.models import utcnow
from bot.storage.quotas import QuotaStore

# Users and chats listed by /usage all, per period.
TOP_ENTRIES = 10


async def usage_command(update: Update, context: BotContext) -> None:
    """``/usage``, ``/usage chat [CHAT_ID]`` or ``/usage all``."""
    message = update.effective_message
    if message is None:
        return
    lang = lang_of(update)
    quotas = context.services.quotas
    if quotas is None:
        await context.reply(message, text("usage.off", lang))
        return
    words = command_argument(message).split()
    if not words:
        answer = await _own_usage(context, quotas, message, lang)
    elif words[0].lower() == "all" and len(words) == 1:
        answer = await _everyone(context, quotas, message, lang)
    elif words[0].lower() == "chat" and len(words) <= 2:
        answer = await _chat_usage(context, quotas, message, lang, words[1:])
    else:
        answer = text("usage.usage", lang)
    await context.reply(message, answer)


async def _own_usage(context: BotContext, quotas: QuotaStore, message: Message, lang: Lang) -> str:
    """The sender's figures against their role's limits, and in a group the group's."""
    config = context.services.config
    user = message.from_user
    if user is None:
        return text("usage.usage", lang)
    now = utcnow()
    role, limits = user_role(config.quotas, user.id, config.telegram.admins)
    figures = await quotas.figures(_keys(Scope.USER, user.id, now))
    lines = [text("usage.title", lang)]
    if role == ADMIN_ROLE:
        lines.append(text("usage.admin", lang))
    else:
        lines.append(text("usage.role", lang, role=role))
    lines += _day_and_month(figures, _keys(Scope.USER, user.id, now), limits, lang, now)
    if message.chat.type in GROUP_TYPES:
        lines += ["", *await _chat_lines(config, quotas, message.chat_id, message.chat.title, lang)]
    return "\n".join(lines)


async def _chat_usage(
    context: BotContext, quotas: QuotaStore, message: Message, lang: Lang, words: list[str]
) -> str:
    """A group's figures: any group for bot admins, their own group for its administrators."""
    services = context.services
    user_id = message.from_user.id if message.from_user else None
    try:
        target = int(words[0]) if words else message.chat_id
    except ValueError:
        return text("usage.bad_chat", lang, value=words[0])
    refused = await _chat_refusal(context, message, user_id, target)
    if refused is not None:
        return text(refused, lang)
    title = message.chat.title if target == message.chat_id else await quotas.chat_title(target)
    return "\n".join(await _chat_lines(services.config, quotas, target, title, lang))


async def _chat_refusal(
    context: BotContext, message: Message, user_id: int | None, target: int
) -> str | None:
    """Why ``user_id`` may not see the figures of chat ``target`` (a catalogue key), or None."""
    access = context.services.access
    if target > 0 or (target == message.chat_id and message.chat.type == ChatType.PRIVATE):
        # A user's own chat with the bot: no chat counters, only the user's.
        return "usage.private_chat"
    if access.is_bot_admin(user_id):
        return None
    if target != message.chat_id:
        return "usage.other_chat_not_allowed"
    if not await access.may_manage(context.bot, message.chat_id, message.chat.type, user_id):
        return "usage.chat_not_allowed"
    return None


async def _chat_lines(
    config: Config, quotas: QuotaStore, chat_id: int, title: str | None, lang: Lang
) -> list[str]:
    """A group's heading and its figures against its limits."""
    now = utcnow()
    limits = chat_limits(config.quotas, chat_id)
    day, month = _keys(Scope.CHAT, chat_id, now)
    figures = await quotas.figures((day, month))
    return [
        text("usage.chat_title", lang, name=subject_name(chat_id, title, lang)),
        *_day_and_month(figures, (day, month), limits, lang, now),
    ]


async def _everyone(context: BotContext, quotas: QuotaStore, message: Message, lang: Lang) -> str:
    """Totals and the top users and groups, today and this month; bot admins only."""
    user_id = message.from_user.id if message.from_user else None
    if not context.services.access.is_bot_admin(user_id):
        return text("usage.all_not_allowed", lang)
    now = utcnow()
    lines = [text("usage.all_title", lang)]
    for period in (Period.DAY, Period.MONTH):
        current = period_id(period, now)
        users, total = await quotas.totals(Scope.USER, current)
        heading, *_ = period_lines(period, total, lang, now)
        lines += [
            "",
            heading,
            text(
                "usage.all_totals",
                lang,
                users=users,
                requests=f"{total.requests:,}",
                tokens=f"{total.tokens:,}",
            ),
            text("usage.top_users", lang),
            *ranking_lines(await quotas.top(Scope.USER, current, TOP_ENTRIES), lang),
            text("usage.top_chats", lang),
            *ranking_lines(await quotas.top(Scope.CHAT, current, TOP_ENTRIES), lang),
        ]
    return "\n".join(lines)


def _day_and_month(
    figures: Mapping[CounterKey, Figures],
    keys: tuple[CounterKey, CounterKey],
    limits: QuotaLimits,
    lang: Lang,
    now: datetime,
) -> list[str]:
    """Today's and this month's lines of one user or chat against its limits."""
    day, month = keys
    return [
        *period_lines(
            Period.DAY,
            figures.get(day, Figures()),
            lang,
            now,
            requests_limit=limits.requests_per_day,
            tokens_limit=limits.tokens_per_day,
        ),
        *period_lines(
            Period.MONTH,
            figures.get(month, Figures()),
            lang,
            now,
            requests_limit=limits.requests_per_month,
            tokens_limit=limits.tokens_per_month,
        ),
    ]


def _keys(scope: Scope, subject: int, now: datetime) -> tuple[CounterKey, CounterKey]:
    """The day and month counters of a user or chat."""
    return (
        CounterKey(scope, subject, period_id(Period.DAY, now)),
        CounterKey(scope, subject, period_id(Period.MONTH, now)),
    )
