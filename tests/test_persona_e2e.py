"""/persona end to end: the menu, picking, custom prompts, and who may change them."""

from __future__ import annotations

import pytest

from bot.access import AdminCache
from tests.e2e import bot_texts, until

USER = 42
GROUP = -1005555
BOT_ADMIN = 9
PERSONAS = [
    {"name": "default", "prompt": "You are a test assistant."},
    {"name": "pirate", "prompt": "You are a pirate.", "description": "talks like a pirate"},
]


@pytest.fixture
def config(config_for):
    """Two personas, BOT_ADMIN as the bot's admin, and edits rather than drafts."""
    return config_for(
        personas=PERSONAS, streaming={"drafts": False}, telegram={"admins": [BOT_ADMIN]}
    )


def last_text(telegram, chat_id=USER):
    return bot_texts(telegram, chat_id)[-1]


def system_prompt(request):
    return request.json["messages"][0]["content"]


async def test_the_menu_shows_the_current_persona_and_buttons_for_the_others(telegram, bot):
    telegram.user_sends("/persona")
    await until(lambda: bool(bot_texts(telegram)))
    menu = telegram.messages(USER, from_bot=True)[-1]
    assert menu.text.startswith("Persona: default")
    assert "pirate - talks like a pirate" in menu.text
    buttons = [b["callback_data"] for row in menu.reply_markup["inline_keyboard"] for b in row]
    assert buttons == ["persona:pirate"]


@pytest.mark.both_databases
async def test_picking_a_persona_uses_its_prompt_in_a_new_conversation(telegram, provider, bot):
    provider.enqueue_stream(["Hello."])
    telegram.user_sends("hi")
    await until(lambda: "Hello." in bot_texts(telegram))
    telegram.user_sends("/persona pirate")
    await until(lambda: "Persona set to pirate" in last_text(telegram))
    assert "new conversation" in last_text(telegram)

    provider.enqueue_stream(["Arr."])
    telegram.user_sends("hi again")
    await until(lambda: "Arr." in bot_texts(telegram))
    messages = provider.requests[-1].json["messages"]
    assert [m["content"] for m in messages] == ["You are a pirate.", "hi again"]


async def test_pressing_a_persona_button_selects_it(telegram, provider, bot):
    telegram.user_sends("/persona")
    await until(lambda: bool(bot_texts(telegram)))
    menu = telegram.messages(USER, from_bot=True)[-1]
    telegram.user_presses("persona:pirate", message_id=menu.message_id)
    await until(lambda: "Persona set to pirate" in last_text(telegram))
    provider.enqueue_stream(["Arr."])
    telegram.user_sends("ahoy")
    await until(lambda: "Arr." in bot_texts(telegram))
    assert system_prompt(provider.requests[-1]) == "You are a pirate."


async def test_an_unknown_persona_is_refused_with_the_valid_names(telegram, bot):
    telegram.user_sends("/persona wizard")
    await until(lambda: bool(bot_texts(telegram)))
    assert last_text(telegram) == (
        "There is no persona called wizard. Choose one of: default, pirate."
    )


@pytest.mark.both_databases
async def test_a_custom_persona_is_the_system_prompt_and_survives_a_restart(
    telegram, provider, config, start_bot
):
    async with start_bot(config):
        telegram.user_sends("/persona custom You answer in rhyme.\nAlways.")
        await until(lambda: bool(bot_texts(telegram)))
        assert last_text(telegram).startswith("Persona set to custom")
    async with start_bot(config):
        provider.enqueue_stream(["A rhyme."])
        telegram.user_sends("rhyme please")
        await until(lambda: "A rhyme." in bot_texts(telegram))
        telegram.user_sends("/persona")
        await until(lambda: bot_texts(telegram)[-1].startswith("Persona: custom"))
    assert system_prompt(provider.requests[-1]) == "You answer in rhyme.\nAlways."


async def test_a_custom_persona_needs_a_prompt(telegram, bot):
    telegram.user_sends("/persona custom", language_code="zh-hans")
    await until(lambda: bool(bot_texts(telegram)))
    assert "/persona custom" in last_text(telegram)
    assert "系统提示词" in last_text(telegram)


async def test_in_groups_only_chat_and_bot_admins_change_the_persona(telegram, provider, bot):
    telegram.user_sends("/persona pirate", chat_id=GROUP, user_id=7)
    await until(lambda: bool(bot_texts(telegram, GROUP)))
    assert last_text(telegram, GROUP) == "Only this group's administrators can change that."

    telegram.set_member_status(GROUP, 8, "administrator")
    telegram.user_sends("/persona pirate", chat_id=GROUP, user_id=8)
    await until(lambda: "Persona set to pirate" in last_text(telegram, GROUP))

    telegram.user_sends("/persona default", chat_id=GROUP, user_id=BOT_ADMIN)
    await until(lambda: "Persona set to default" in last_text(telegram, GROUP))
    checked = {c.params["user_id"] for c in telegram.calls_to("getChatMember")}
    assert checked == {7, 8}, "bot admins need no getChatMember"


def test_admin_answers_are_cached_for_a_while():
    now = [0.0]
    cache = AdminCache(ttl=300, clock=lambda: now[0])
    assert cache.get(-1, 5) is None
    cache.put(-1, 5, True)
    now[0] = 299.0
    assert cache.get(-1, 5) is True
    now[0] = 300.0
    assert cache.get(-1, 5) is None
