"""Allow-lists, admins in a group with topics, and input the bot cannot take."""

from __future__ import annotations

import pytest

from bot.messages import text
from tests.e2e import bot_texts, until
from tests.fakes.telegram import BOT_USERNAME

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


@pytest.mark.parametrize(
    ("words", "chat_id"),
    [
        ("x" * 51, ALICE),
        ("/chat " + "x" * 51, GROUP),
        (f"@{BOT_USERNAME} " + "x" * 51, GROUP),
        ("/complete " + "x" * 51, ALICE),
        ("/edit shorten it\n" + "x" * 51, ALICE),
        ("/image " + "x" * 51, GROUP),
    ],
)
async def test_an_oversized_prompt_is_refused_with_the_limit(
    telegram, provider, config_for, start_bot, words, chat_id
):
    async with start_bot(config_for(context={"max_prompt_chars": 50})):
        telegram.user_sends(words, user_id=ALICE, chat_id=chat_id)
        await until(lambda: bool(bot_texts(telegram, chat_id)))
    (refusal,) = bot_texts(telegram, chat_id)
    assert refusal.startswith("That message is too long (")
    assert "the limit is 50" in refusal
    assert provider.requests == []


STICKER = {
    "sticker": {
        "file_id": "CAAC",
        "file_unique_id": "CAAC-u",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "type": "regular",
    }
}
VOICE = {"voice": {"file_id": "AwAD", "file_unique_id": "AwAD-u", "duration": 3}}
LOCATION = {"location": {"latitude": 52.52, "longitude": 13.405}}
UNSUPPORTED = text("input.unsupported", "en")


async def test_unsupported_messages_get_told_what_the_bot_understands(
    telegram, provider, config_for, start_bot
):
    async with start_bot(config_for()):
        telegram.user_sends_photo(b"%PDF-1.4", as_document="application/pdf", user_id=ALICE)
        for fields in (VOICE, STICKER, LOCATION):
            telegram.user_sends_other(fields, user_id=ALICE)
        await until(lambda: len(bot_texts(telegram, ALICE)) == 4)
    assert bot_texts(telegram, ALICE) == [UNSUPPORTED] * 4
    assert provider.requests == []


async def test_in_a_group_unsupported_messages_are_noted_only_when_they_speak_to_the_bot(
    telegram, provider, bot
):
    telegram.make_forum(GROUP)
    in_topic = {"chat_id": GROUP, "user_id": BOB, "message_thread_id": 5}
    for fields in (STICKER, VOICE, LOCATION):
        telegram.user_sends_other(fields, **in_topic)
    telegram.user_sends_photo(b"%PDF-1.4", "the minutes", as_document="application/pdf", **in_topic)
    telegram.user_sends_photo(
        b"%PDF-1.4", f"@{BOT_USERNAME} summarise this", as_document="application/pdf", **in_topic
    )
    await until(lambda: bool(bot_texts(telegram, GROUP)))
    note = next(m for m in telegram.messages(GROUP) if m.from_bot)
    telegram.user_sends_other(STICKER, reply_to_message_id=note.message_id, **in_topic)
    await until(lambda: len(bot_texts(telegram, GROUP)) == 2)
    # An answer after them all: nothing more was said about the rest.
    provider.enqueue_stream(["Bye."])
    telegram.user_sends("/chat bye", **in_topic)
    await until(lambda: "Bye." in bot_texts(telegram, GROUP))

    assert bot_texts(telegram, GROUP) == [UNSUPPORTED, UNSUPPORTED, "Bye."]
    assert {m.message_thread_id for m in telegram.messages(GROUP) if m.from_bot} == {5}
    assert len(provider.requests) == 1


async def test_each_refused_user_is_told_once_and_once_more_after_a_restart(
    telegram, provider, config, start_bot
):
    for run in (1, 2):
        async with start_bot(config):
            for stranger in (STRANGER, STRANGER + 1):
                telegram.user_sends("hello?", user_id=stranger)
                telegram.user_sends("/chat anyone?", user_id=stranger)
            telegram.user_sends(f"@{BOT_USERNAME} hi", chat_id=OTHER_GROUP, user_id=STRANGER)
            await until(lambda n=run: len(bot_texts(telegram, STRANGER + 1)) == n)
            # An answer after them all: nothing more was said to the strangers.
            provider.enqueue_stream([f"Hi {run}."])
            telegram.user_sends("hi", user_id=ALICE)
            await until(lambda n=run: f"Hi {n}." in bot_texts(telegram, ALICE))
        assert bot_texts(telegram, STRANGER) == [REFUSED] * run
        assert bot_texts(telegram, STRANGER + 1) == [REFUSED] * run
        assert bot_texts(telegram, OTHER_GROUP) == [], "told already, in private"
    assert len(provider.requests) == 2


async def test_a_chat_administrator_manages_only_their_own_chat(telegram, provider, bot):
    telegram.set_member_status(GROUP, ALICE, "administrator")
    telegram.user_sends("/persona pirate", chat_id=OTHER_GROUP, user_id=ALICE)
    telegram.user_sends("/models chat other-model", chat_id=OTHER_GROUP, user_id=ALICE)
    await until(lambda: len(bot_texts(telegram, OTHER_GROUP)) == 2)
    assert set(bot_texts(telegram, OTHER_GROUP)) == {text("access.chat_admins_only", "en")}
    telegram.user_sends("/persona pirate", chat_id=GROUP, user_id=ALICE)
    await until(lambda: bool(bot_texts(telegram, GROUP)))
    assert "Persona set to pirate" in bot_texts(telegram, GROUP)[0]
