"""/models: what the providers offer, the defaults, and this chat's chat model.

``/models`` lists; ``/models chat MODEL`` (or a button, or ``/models MODEL``) and
``/models chat reset`` choose the chat's model; ``/models set CAPABILITY MODEL`` and
``/models reset CAPABILITY`` change the bot-wide defaults (bot admins only).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, InlineKeyboardButtonLimit, MessageLimit
from telegram.error import BadRequest

from bot.config import ModelsConfig
from bot.errors import ErrorKind
from bot.handlers.chat import command_argument, lang_of
from bot.handlers.context import BotContext
from bot.messages import Lang, text
from bot.model_choice import (
    MODEL_ROLES,
    ModelRole,
    admin_choices,
    choosable_chat_models,
    configured_default,
    match_model,
    resolve_model,
    suggestions,
)
from bot.providers.catalogue import ProviderModels

# Callback data of the model buttons: the prefix, then "=" and the model, "#" and a digest of
# a model too long for Telegram's 64 bytes, or "reset".
MODELS_PREFIX = "models:"
_BY_NAME = "="
_BY_DIGEST = "#"
_RESET = "reset"
_DIGEST_LENGTH = 16

MAX_BUTTONS = 12
"""Model buttons under the listing; more are chosen by name."""

LIST_LIMITS = (30, 15, 8, 4, 0)
"""Names shown per list, tried in turn until the listing fits one Telegram message."""

UNKNOWN_LIST_LIMIT = 30
"""Valid names shown after an unknown one."""

_RESET_WORDS = frozenset({"reset", "default"})

Source = Literal["chat", "admin", "config"]


@dataclass(frozen=True, slots=True)
class Show:
    """List the models."""


@dataclass(frozen=True, slots=True)
class ChooseChat:
    """Choose the chat's chat model; None goes back to the default."""

    model: str | None


@dataclass(frozen=True, slots=True)
class SetDefault:
    """Set the bot-wide default of a capability."""

    role: ModelRole
    model: str


@dataclass(frozen=True, slots=True)
class ResetDefault:
    """Go back to the configured default of a capability."""

    role: ModelRole


@dataclass(frozen=True, slots=True)
class UnknownRole:
    """A capability the bot does not know."""

    name: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Arguments that make no command."""


Action = Show | ChooseChat | SetDefault | ResetDefault | UnknownRole | Usage


def parse_arguments(argument: str) -> Action:
    """What ``/models ARGUMENT`` asks for; a lone unknown word is a chat model's name."""
    words = argument.split()
    if not words:
        return Show()
    verb, rest = words[0].lower(), words[1:]
    if verb == "chat":
        if len(rest) != 1:
            return Usage()
        return ChooseChat(None if rest[0].lower() in _RESET_WORDS else rest[0])
    if verb in ("set", "reset"):
        return _parse_default(verb, rest)
    if len(words) == 1 and verb != "help":
        return ChooseChat(words[0])
    return Usage()


def _parse_default(verb: str, rest: Sequence[str]) -> Action:
    """``set CAPABILITY MODEL`` or ``reset CAPABILITY``."""
    if len(rest) != (2 if verb == "set" else 1):
        return Usage()
    role = _role(rest[0])
    if role is None:
        return UnknownRole(rest[0])
    return SetDefault(role, rest[1]) if verb == "set" else ResetDefault(role)


def _role(word: str) -> ModelRole | None:
    wanted = word.lower().replace("-", "_")
    return next((role for role in MODEL_ROLES if role == wanted), None)


@dataclass(frozen=True, slots=True)
class Listing:
    """What ``/models`` shows."""

    current: str
    source: Source
    defaults: Mapping[ModelRole, str]
    admin_set: frozenset[str]
    suggested: Mapping[str, Sequence[str]]
    reports: Sequence[ProviderModels]
    may_choose: bool
    is_admin: bool


def render_listing(listing: Listing, lang: Lang) -> str:
    """The listing's text, with lists shortened until it fits one message."""
    for limit in LIST_LIMITS:
        body = _listing_text(listing, lang, limit)
        if _utf16_length(body) <= MessageLimit.MAX_TEXT_LENGTH:
            return body
    return body[: MessageLimit.MAX_TEXT_LENGTH // 2]


def _listing_text(listing: Listing, lang: Lang, limit: int) -> str:
    source = text(f"models.source.{listing.source}", lang)
    lines = [
        text("models.title", lang),
        "",
        text("models.current", lang, model=listing.current, source=source),
        "",
        text("models.defaults", lang),
    ]
    for role, model in listing.defaults.items():
        shown = model or text("models.edits_chat", lang)
        mark = text("models.admin_mark", lang) if role in listing.admin_set else ""
        lines.append(f"• {role}: {shown}{mark}")
    suggested = [(c, names) for c, names in listing.suggested.items() if names]
    if suggested:
        lines += ["", text("models.suggested", lang)]
        lines += [f"• {c}: {name_list(names, limit, lang)}" for c, names in suggested]
    lines += ["", text("models.reported", lang)]
    for report in listing.reports:
        if report.error is not None:
            key = "timeout" if report.error is ErrorKind.TIMEOUT else "failed"
            lines.append(f"• {report.provider}: {text(f'models.provider_{key}', lang)}")
        elif not report.models:
            lines.append(f"• {report.provider}: {text('models.provider_none', lang)}")
        else:
            names = name_list(report.models, limit, lang)
            lines.append(f"• {report.provider} ({len(report.models)}): {names}")
    if listing.may_choose:
        lines += ["", text("models.how_chat", lang)]
    if listing.is_admin:
        lines.append(text("models.how_admin", lang))
    return "\n".join(lines)


def name_list(names: Sequence[str], limit: int, lang: Lang) -> str:
    """The first ``limit`` names, comma-separated, and how many more there are."""
    shown = ", ".join(names[:limit])
    hidden = len(names) - min(limit, len(names))
    if not hidden:
        return shown
    more = text("models.more", lang, count=hidden)
    return f"{shown} {more}" if shown else more


def _utf16_length(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def button_data(model: str) -> str:
    """The callback data of ``model``'s button, within Telegram's 64 bytes."""
    data = f"{MODELS_PREFIX}{_BY_NAME}{model}"
    if len(data.encode()) <= InlineKeyboardButtonLimit.MAX_CALLBACK_DATA:
        return data
    return f"{MODELS_PREFIX}{_BY_DIGEST}{_digest(model)}"


def model_of_button(data: str, candidates: Sequence[str]) -> str | None:
    """The model a button's callback data names, looked up among ``candidates`` by digest."""
    value = data.removeprefix(MODELS_PREFIX)
    if value.startswith(_BY_NAME):
        return value.removeprefix(_BY_NAME)
    digest = value.removeprefix(_BY_DIGEST)
    return next((m for m in candidates if _digest(m) == digest), None)


def _digest(model: str) -> str:
    return hashlib.sha256(model.encode()).hexdigest()[:_DIGEST_LENGTH]


def chat_buttons(
    candidates: Sequence[str], current: str, default: str, *, own_choice: bool, lang: Lang
) -> InlineKeyboardMarkup | None:
    """Two model buttons a row (the current one marked), and one back to the default."""
    buttons = [
        InlineKeyboardButton(
            f"✅ {model}" if model == current else model, callback_data=button_data(model)
        )
        for model in candidates[:MAX_BUTTONS]
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    if own_choice:
        label = text("models.button_default", lang, model=default)
        rows.append([InlineKeyboardButton(label, callback_data=f"{MODELS_PREFIX}{_RESET}")])
    return InlineKeyboardMarkup(rows) if rows else None


# --- handlers ----------------------------------------------------------------------------------


async def models_command(update: Update, context: BotContext) -> None:
    """``/models`` lists; its arguments choose the chat's model or change the defaults."""
    message = update.effective_message
    if message is None:
        return
    lang = lang_of(update)
    user_id = update.effective_user.id if update.effective_user else None
    match parse_arguments(command_argument(message)):
        case Show():
            await _show(context, message, user_id, lang)
        case ChooseChat(model):
            refusal = await _chat_refusal(context, message, user_id)
            if refusal is not None:
                await context.reply(message, text(refusal, lang))
            else:
                await _choose(context, message, model, lang)
        case SetDefault() as change:
            await _set_default(context, message, user_id, change, lang)
        case ResetDefault(role):
            await _reset_default(context, message, user_id, role, lang)
        case UnknownRole(name):
            names = ", ".join(MODEL_ROLES)
            await context.reply(message, text("models.unknown_role", lang, name=name, names=names))
        case Usage():
            await context.reply(message, text("models.usage", lang))


async def models_button(update: Update, context: BotContext) -> None:
    """A model button under the listing was pressed."""
    query = update.callback_query
    if query is None or query.data is None or not isinstance(query.message, Message):
        return
    lang = lang_of(update)
    refusal = await _chat_refusal(context, query.message, query.from_user.id)
    if refusal is not None:
        # An alert to the one who pressed, rather than a message to the whole group.
        await query.answer(text(refusal, lang), show_alert=True)
        return
    await query.answer()
    model: str | None = None
    if query.data != f"{MODELS_PREFIX}{_RESET}":
        reports = await context.services.providers.catalogue.reports()
        admin_default = (await context.services.store.model_defaults()).get("chat")
        allowed = choosable_chat_models(context.services.config.models, reports, admin_default)
        model = model_of_button(query.data, allowed) or query.data.removeprefix(MODELS_PREFIX)
    menu = query.message
    if await _choose(context, menu, model, lang):
        # The menu marks the model in force: move the mark.
        markup = await _chat_markup(context, menu.chat_id, lang)
        with contextlib.suppress(BadRequest):
            await context.services.outbox.call(
                menu.chat_id, lambda: menu.edit_reply_markup(markup), must_deliver=False
            )


async def _show(context: BotContext, message: Message, user_id: int | None, lang: Lang) -> None:
    services = context.services
    models = services.config.models
    reports = await services.providers.catalogue.reports()
    admin_defaults = await services.store.model_defaults()
    own = await services.store.chat_model(message.chat_id)
    admin_chat = admin_defaults.get("chat")
    current = resolve_model(models, "chat", chat_choice=own, admin_default=admin_chat)
    source: Source = "chat" if own and current == own else "admin" if admin_chat else "config"
    may_choose = await _chat_refusal(context, message, user_id) is None
    listing = Listing(
        current=current,
        source=source,
        defaults={r: admin_defaults.get(r) or configured_default(models, r) for r in MODEL_ROLES},
        admin_set=frozenset(admin_defaults),
        suggested=suggestions(models, reports),
        reports=reports,
        may_choose=may_choose,
        is_admin=services.access.is_bot_admin(user_id),
    )
    markup = await _chat_markup(context, message.chat_id, lang) if may_choose else None
    body = render_listing(listing, lang)
    await services.outbox.call(
        message.chat_id,
        lambda: message.reply_text(body, reply_markup=markup),
        must_deliver=True,
    )


async def _chat_markup(
    context: BotContext, chat_id: int, lang: Lang
) -> InlineKeyboardMarkup | None:
    """The buttons choosing the chat's model, the one in force marked."""
    services = context.services
    models = services.config.models
    reports = await services.providers.catalogue.reports()
    admin_chat = (await services.store.model_defaults()).get("chat")
    own = await services.store.chat_model(chat_id)
    current = resolve_model(models, "chat", chat_choice=own, admin_default=admin_chat)
    return chat_buttons(
        choosable_chat_models(models, reports, admin_chat),
        current,
        admin_chat or models.chat,
        own_choice=bool(own) and current == own,
        lang=lang,
    )


async def _choose(context: BotContext, message: Message, name: str | None, lang: Lang) -> bool:
    """Set the chat's chat model (None: the default) and announce it; the conversation goes on.

    False when nothing changed (an unknown model, or the one already in force).
    """
    services = context.services
    models = services.config.models
    admin_defaults = await services.store.model_defaults()
    admin_chat = admin_defaults.get("chat")
    model: str | None = None
    if name is not None:
        reports = await services.providers.catalogue.reports()
        allowed = choosable_chat_models(models, reports, admin_chat)
        model = match_model(name, allowed)
        if model is None:
            names = name_list(allowed, UNKNOWN_LIST_LIMIT, lang)
            await context.reply(message, text("models.unknown_model", lang, name=name, names=names))
            return False
        own = await services.store.chat_model(message.chat_id)
        if model == resolve_model(models, "chat", chat_choice=own, admin_default=admin_chat):
            await context.reply(message, text("models.chat_already", lang, model=model))
            return False
    await services.store.ensure_chat(message.chat_id, message.chat.type, message.chat.title)
    await services.store.set_chat_model(message.chat_id, model)
    if model is None:
        default = admin_chat or models.chat
        await context.reply(message, text("models.chat_reset", lang, model=default))
    else:
        await context.reply(message, text("models.chat_set", lang, model=model))
    return True


async def _chat_refusal(context: BotContext, message: Message, user_id: int | None) -> str | None:
    """Why ``user_id`` may not choose this chat's model (a catalogue key), or None."""
    services = context.services
    if services.access.is_bot_admin(user_id):
        return None
    if message.chat.type == ChatType.PRIVATE:
        return None if services.config.models.users_choose else "models.choice_off"
    allowed = await services.access.may_manage(
        context.bot, message.chat_id, message.chat.type, user_id
    )
    return None if allowed else "access.chat_admins_only"


async def _set_default(
    context: BotContext,
    message: Message,
    user_id: int | None,
    change: SetDefault,
    lang: Lang,
) -> None:
    services = context.services
    role, name = change.role, change.model
    if not services.access.is_bot_admin(user_id):
        await context.reply(message, text("models.admins_only", lang))
        return
    reports = await services.providers.catalogue.reports()
    admin_defaults = await services.store.model_defaults()
    configured = [p.models for p in services.config.providers]
    valid = admin_choices(services.config.models, role, reports, configured, admin_defaults)
    # Nothing known (no provider listed anything): the admin's word is taken on trust.
    model = match_model(name, valid) if valid else name
    if model is None:
        names = name_list(valid, UNKNOWN_LIST_LIMIT, lang)
        await context.reply(message, text("models.unknown_model", lang, name=name, names=names))
        return
    await services.store.set_model_default(role, model, set_by=user_id)
    await context.reply(message, text("models.default_set", lang, role=role, model=model))


async def _reset_default(
    context: BotContext, message: Message, user_id: int | None, role: ModelRole, lang: Lang
) -> None:
    services = context.services
    if not services.access.is_bot_admin(user_id):
        await context.reply(message, text("models.admins_only", lang))
        return
    await services.store.reset_model_default(role)
    model = _shown_default(services.config.models, role, lang)
    await context.reply(message, text("models.default_reset", lang, role=role, model=model))


def _shown_default(models: ModelsConfig, role: ModelRole, lang: Lang) -> str:
    return configured_default(models, role) or text("models.edits_chat", lang)
