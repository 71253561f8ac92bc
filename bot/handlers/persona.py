"""/persona: show the chat's persona, pick a configured one, or set a custom prompt."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update

from bot.handlers.chat import (
    command_argument,
    conversation_key,
    conversation_member,
    lang_of,
    lock_key,
)
from bot.handlers.context import BotContext
from bot.messages import Lang, text
from bot.personas import ChatPersona, chat_persona, custom_name

# Callback data of the persona buttons: the prefix and the persona's name.
PERSONA_PREFIX = "persona:"
CUSTOM_WORD = "custom"


async def persona_command(update: Update, context: BotContext) -> None:
    """``/persona`` shows the menu; ``/persona NAME`` picks; ``/persona custom TEXT`` sets."""
    message = update.effective_message
    if message is None:
        return
    lang = lang_of(update)
    argument = command_argument(message)
    if not argument:
        await _show_menu(message, context, lang)
        return
    word, _, rest = argument.partition(" ")
    configured = {p.name for p in context.services.config.personas}
    if word.lower() == CUSTOM_WORD and word not in configured:
        await _set_custom(update, context, message, rest.strip(), lang)
    else:
        await _select(update, context, message, argument, lang)


async def persona_button(update: Update, context: BotContext) -> None:
    """A persona button from the menu was pressed."""
    query = update.callback_query
    if query is None or query.data is None or not isinstance(query.message, Message):
        return
    await query.answer()
    name = query.data.removeprefix(PERSONA_PREFIX)
    await _select(update, context, query.message, name, lang_of(update))


async def _show_menu(message: Message, context: BotContext, lang: Lang) -> None:
    current = await chat_persona(context.services.config, context.services.store, message.chat_id)
    lines = [text("persona.current", lang, name=_label(current, lang))]
    configured = context.services.config.personas
    lines += [f"• {p.name}" + (f" - {p.description}" if p.description else "") for p in configured]
    lines.append(text("persona.choose", lang))
    buttons = [
        [InlineKeyboardButton(p.name, callback_data=f"{PERSONA_PREFIX}{p.name}")]
        for p in configured
        if p.name != current.name
    ]
    await context.services.outbox.call(
        message.chat_id,
        lambda: message.reply_text(
            "\n".join(lines), reply_markup=InlineKeyboardMarkup(buttons) if buttons else None
        ),
        must_deliver=True,
    )


async def _select(
    update: Update, context: BotContext, message: Message, name: str, lang: Lang
) -> None:
    config = context.services.config
    if not any(p.name == name for p in config.personas):
        names = ", ".join(p.name for p in config.personas)
        await context.reply(message, text("persona.unknown", lang, name=name, names=names))
        return
    if await _may_manage(update, context, message, lang):
        await _change(context, message, name)
        await context.reply(message, text("persona.changed", lang, name=name))


async def _set_custom(
    update: Update, context: BotContext, message: Message, prompt: str, lang: Lang
) -> None:
    if not prompt:
        await context.reply(message, text("persona.custom_empty", lang))
        return
    if not await _may_manage(update, context, message, lang):
        return
    name = custom_name(message.chat_id)
    label = text("persona.custom", lang)
    await context.services.store.save_persona(name, prompt, description=label)
    await _change(context, message, name)
    await context.reply(message, text("persona.changed", lang, name=label))


async def _change(context: BotContext, message: Message, name: str) -> None:
    """Switch the chat to persona ``name`` and start a new conversation here."""
    services = context.services
    scope = services.config.context.scope
    chat_id, thread_id = conversation_key(message, scope)
    async with services.conversations.hold(lock_key(message, scope)):
        await services.store.ensure_chat(chat_id, message.chat.type, message.chat.title)
        await services.store.set_chat_persona(chat_id, name)
        await services.store.new_conversation(
            chat_id,
            persona=name,
            thread_id=thread_id,
            user_id=conversation_member(message, scope),
        )


async def _may_manage(update: Update, context: BotContext, message: Message, lang: Lang) -> bool:
    user = update.effective_user
    allowed = await context.services.access.may_manage(
        context.bot, message.chat_id, message.chat.type, user.id if user else None
    )
    if not allowed:
        await context.reply(message, text("access.chat_admins_only", lang))
    return allowed


def _label(persona: ChatPersona, lang: Lang) -> str:
    return text("persona.custom", lang) if persona.custom else persona.name
