"""Allow-lists, admins in a group with topics, and input the bot cannot take."""

from __future__ import annotations

import pytest

from bot.messages import text
from tests.fakes.telegram import BOT_USERNAME
from tests.test_chat_e2e import bot_texts, until

ALICE, BOB, STRANGER, BOT_ADMIN = 7, 8, 99, 1
GROUP, OTHER_GROUP = -1004444, -1005555
REFUSED = text("access.refused", "en")


@pytest.fixture
def config(config_for):
    return config_for(
        streaming={"drafts": False},
        telegram={"admins": [BOT_ADMIN], "allowed_users": [ALICE], "allowed_chats": [GROUP]},
        personas=[
            {"name": "default", "prompt": "You are a test assistant."},
            {"name": "pirate", "prompt": "You are a pirate."},
        ],
    )


async def test_a_stranger_is_told_once_and_never_reaches_the_provider(telegram, provider, bot):
    telegram.user_sends("hello?", user_id=STRANGER)
    await until(lambda: bool(bot_texts(telegram, STRANGER)))
    telegram.user_sends("/chat anyone there?", user_id=STRANGER)
    telegram.user_sends("please", user_id=STRANGER)
    provider.enqueue_stream(["Hi Alice."])
    telegram.user_sends("hi", user_id=ALICE)
    await until(lambda: "Hi Alice." in bot_texts(telegram, ALICE))

    assert bot_texts(telegram, STRANGER) == [REFUSED]
    assert len(provider.requests) == 1


async def test_chinese_strangers_are_refused_in_chinese(telegram, provider, bot):
    telegram.user_sends("你好", user_id=STRANGER, language_code="zh-hans")
    await until(lambda: bool(bot_texts(telegram, STRANGER)))
    assert bot_texts(telegram, STRANGER) == [text("access.refused", "zh")]


async def test_allowed_users_anywhere_everyone_in_allowed_chats_and_admins_always(
    telegram, provider, bot
):
    provider.enqueue_stream(["In the group."])
    telegram.user_sends("/chat hi", chat_id=GROUP, user_id=STRANGER)
    await until(lambda: "In the group." in bot_texts(telegram, GROUP))
    provider.enqueue_stream(["Alice elsewhere."])
    telegram.user_sends("/chat hi", chat_id=OTHER_GROUP, user_id=ALICE)
    await until(lambda: "Alice elsewhere." in bot_texts(telegram, OTHER_GROUP))
    provider.enqueue_stream(["Admin here."])
    telegram.user_sends("hi", user_id=BOT_ADMIN)
    await until(lambda: "Admin here." in bot_texts(telegram, BOT_ADMIN))


async def test_in_a_closed_group_only_what_is_meant_for_the_bot_is_refused(telegram, provider, bot):
    telegram.user_sends("just chatting", chat_id=OTHER_GROUP, user_id=BOB)
    telegram.user_sends("/chat@another_bot hi", chat_id=OTHER_GROUP, user_id=BOB)
    telegram.user_sends(f"@{BOT_USERNAME} hi", chat_id=OTHER_GROUP, user_id=BOB)
    await until(lambda: bool(bot_texts(telegram, OTHER_GROUP)))
    telegram.user_sends(f"/chat@{BOT_USERNAME} hi again", chat_id=OTHER_GROUP, user_id=BOB)
    # Alice's answer comes after anything said to Bob: nothing more was said to him.
    provider.enqueue_stream(["For Alice."])
    telegram.user_sends("/chat hi", chat_id=OTHER_GROUP, user_id=ALICE)
    await until(lambda: "For Alice." in bot_texts(telegram, OTHER_GROUP))
    assert bot_texts(telegram, OTHER_GROUP) == [REFUSED, "For Alice."]


async def test_a_strangers_button_press_gets_an_alert(telegram, provider, bot):
    provider.enqueue_stream(["Hi."])
    telegram.user_sends("/persona", chat_id=OTHER_GROUP, user_id=ALICE)
    await until(lambda: bool(bot_texts(telegram, OTHER_GROUP)))
    menu = next(m for m in telegram.messages(OTHER_GROUP) if m.from_bot)
    telegram.user_presses(
        "persona:pirate", message_id=menu.message_id, chat_id=OTHER_GROUP, user_id=STRANGER
    )
    (call,) = await telegram.wait_for_call("answerCallbackQuery")
    assert call.params.get("show_alert") is True
    assert call.params.get("text") == REFUSED


async def test_in_a_group_with_topics_members_ask_but_only_admins_change_settings(
    telegram, provider, bot
):
    telegram.make_forum(GROUP)
    provider.enqueue_stream(["Topic answer."])
    telegram.user_sends("/chat hi", chat_id=GROUP, user_id=BOB, message_thread_id=5)
    await until(lambda: "Topic answer." in bot_texts(telegram, GROUP))

    telegram.user_sends("/persona pirate", chat_id=GROUP, user_id=BOB, message_thread_id=5)
    telegram.user_sends(
        "/models set chat other-model", chat_id=GROUP, user_id=ALICE, message_thread_id=5
    )
    await until(lambda: len(bot_texts(telegram, GROUP)) == 3)
    assert sorted(bot_texts(telegram, GROUP)[1:]) == sorted(
        [text("access.chat_admins_only", "en"), text("models.admins_only", "en")]
    )
    topics = {m.message_thread_id for m in telegram.messages(GROUP) if m.from_bot}
    assert topics == {5}, "refusals land in the topic too"

    telegram.set_member_status(GROUP, ALICE, "administrator")
    telegram.user_sends("/persona pirate", chat_id=GROUP, user_id=ALICE, message_thread_id=5)
    await until(lambda: "Persona set to pirate" in bot_texts(telegram, GROUP)[-1])
    telegram.user_sends(
        "/models set chat other-model", chat_id=GROUP, user_id=BOT_ADMIN, message_thread_id=5
    )
    await until(lambda: len(bot_texts(telegram, GROUP)) == 5)
    assert bot_texts(telegram, GROUP)[-1] != text("models.admins_only", "en")


async def test_an_oversized_prompt_is_refused_with_the_limit(
    telegram, provider, config_for, start_bot
):
    async with start_bot(config_for(context={"max_prompt_chars": 50})):
        telegram.user_sends("x" * 51)
        await until(lambda: bool(bot_texts(telegram, 42)))
    assert bot_texts(telegram, 42) == [text("input.too_long", "en", length=51, limit=50)]
    assert provider.requests == []


async def test_unsupported_messages_get_told_what_the_bot_understands(
    telegram, provider, config_for, start_bot
):
    async with start_bot(config_for()):
        telegram.user_sends_photo(b"%PDF-1.4", as_document="application/pdf", user_id=ALICE)
        await until(lambda: bool(bot_texts(telegram, ALICE)))
        telegram.user_sends_other(
            {"voice": {"file_id": "AwAD", "file_unique_id": "AwAD-u", "duration": 3}},
            user_id=ALICE,
        )
        await until(lambda: len(bot_texts(telegram, ALICE)) == 2)
    assert bot_texts(telegram, ALICE) == [text("input.unsupported", "en")] * 2
    assert provider.requests == []
