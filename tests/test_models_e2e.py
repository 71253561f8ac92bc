"""/models end to end: the listing, the defaults, each chat's model, and who may change them."""

from __future__ import annotations

import pytest

from tests.e2e import bot_texts, until
from tests.factories import MODEL
from tests.fakes.provider import ErrorResponse, FakeProvider
from tests.fakes.wrapper import FakeWrapper

USER = 42
GROUP = -1007777
BOT_ADMIN = 9
FAST = {"connect": 2, "first_chunk": 1, "idle": 1, "total": 10}


@pytest.fixture
def config(config_for):
    """The one fake provider, BOT_ADMIN as the bot's admin, and edits rather than drafts."""
    return config_for(streaming={"drafts": False}, telegram={"admins": [BOT_ADMIN]})


def last_text(telegram, chat_id=USER):
    texts = bot_texts(telegram, chat_id)
    return texts[-1] if texts else ""


def buttons(message):
    markup = message.reply_markup or {}
    return [
        (b["text"], b["callback_data"]) for row in markup.get("inline_keyboard", []) for b in row
    ]


async def reply_to(telegram, command, chat_id=USER, **kwargs):
    """Send ``command`` and wait for the bot's next message in the chat; return it."""
    before = len(bot_texts(telegram, chat_id))
    # In a private chat the user is the chat.
    kwargs.setdefault("user_id", chat_id if chat_id > 0 else USER)
    telegram.user_sends(command, chat_id=chat_id, **kwargs)
    await until(lambda: len(bot_texts(telegram, chat_id)) > before)
    return telegram.messages(chat_id, from_bot=True)[-1]


async def chat_model_used(telegram, provider, prompt="hi", chat_id=USER, **kwargs):
    """Ask something and return the model the provider was asked for."""
    count = len(provider.requests)
    command = prompt if chat_id == USER else f"/chat {prompt}"
    kwargs.setdefault("user_id", chat_id if chat_id > 0 else USER)
    telegram.user_sends(command, chat_id=chat_id, **kwargs)
    await until(lambda: f"echo: {prompt}" in bot_texts(telegram, chat_id))
    chats = [r for r in provider.requests[count:] if r.path == "/v1/chat/completions"]
    return chats[-1].json["model"]


# --- the listing -------------------------------------------------------------------------------


async def test_the_listing_shows_reported_models_suggestions_and_this_chats_model(
    telegram, config_for, provider, start_bot
):
    async with FakeWrapper() as wrapper:
        config = config_for(
            providers=[
                {"name": "fake", "kind": "openai", "base_url": provider.base_url},
                {"name": "wrapper", "kind": "wrapper", "base_url": wrapper.base_url},
            ],
            models={"chat": MODEL, "suggestions": {"images": ["dall-e-3"]}},
        )
        async with start_bot(config):
            menu = await reply_to(telegram, "/models")
    lines = menu.text.splitlines()
    assert lines[0] == "🤖 Models"
    assert f"This chat uses {MODEL} (the default)." in lines
    assert f"• chat: {MODEL}" in lines
    assert "• edits: the chat model" in lines
    assert "• chat: gpt-4" in lines, "the wrapper's suggestions"
    assert "• images: dall-e-3" in lines, "the configured suggestions"
    assert "• moderations: text-moderation-stable" in lines
    assert "• fake (2): fake-model, fake-model-mini" in lines
    wrapper_line = next(line for line in lines if line.startswith("• wrapper ("))
    assert wrapper_line.startswith("• wrapper (7): whisper-1, gpt-4, ")
    assert "/models chat MODEL" in menu.text
    assert "/models set" not in menu.text, "admin help only for bot admins"
    labels = [label for label, _ in buttons(menu)]
    assert labels[:2] == [f"✅ {MODEL}", "gpt-4"]
    assert "fake-model" in labels
    assert all(data.startswith("models:=") for _, data in buttons(menu))


async def test_a_provider_whose_list_fails_or_hangs_is_noted_and_the_listing_answers(
    telegram, config_for, provider, start_bot
):
    broken = ErrorResponse(500, {"error": {"message": "boom", "type": "server_error"}})
    async with FakeProvider(models=broken) as failing, FakeProvider() as hanging:
        hanging.models_delay = 60.0
        config = config_for(
            providers=[
                {"name": "fake", "kind": "openai", "base_url": provider.base_url},
                {"name": "broken", "base_url": failing.base_url, "timeouts": FAST},
                {"name": "slow", "base_url": hanging.base_url, "timeouts": FAST},
            ]
        )
        async with start_bot(config):
            menu = await reply_to(telegram, "/models")
            # Routing does not wait for lists either: the chat is answered meanwhile.
            assert await chat_model_used(telegram, provider) == MODEL
    lines = menu.text.splitlines()
    assert "• fake (2): fake-model, fake-model-mini" in lines
    assert "• broken: the model list could not be fetched" in lines
    assert "• slow: did not answer in time" in lines


async def test_a_long_list_is_shortened_to_fit_one_message(telegram, config_for, start_bot):
    many = [{"id": f"vendor/a-rather-long-model-name-number-{i:03d}"} for i in range(400)]
    async with FakeProvider(models=many) as big:
        config = config_for(providers=[{"name": "big", "base_url": big.base_url}])
        async with start_bot(config):
            menu = await reply_to(telegram, "/models")
    assert len(menu.text) <= 4096
    line = next(line for line in menu.text.splitlines() if line.startswith("• big (400): "))
    assert "vendor/a-rather-long-model-name-number-000" in line
    assert line.endswith("more")
    assert len(buttons(menu)) <= 12


# --- defaults ----------------------------------------------------------------------------------


async def test_an_admins_default_serves_the_next_chat_until_it_is_reset(telegram, provider, bot):
    assert await chat_model_used(telegram, provider, "before") == MODEL
    reply = await reply_to(telegram, "/models set chat fake-model-mini", chat_id=BOT_ADMIN)
    assert reply.text == "The default chat model is now fake-model-mini."
    assert await chat_model_used(telegram, provider, "after") == "fake-model-mini"

    menu = await reply_to(telegram, "/models")
    assert "This chat uses fake-model-mini (the default, set by the bot's admins)." in menu.text
    assert "• chat: fake-model-mini (set by an admin)" in menu.text

    reply = await reply_to(telegram, "/models reset chat", chat_id=BOT_ADMIN)
    assert reply.text == f"The default chat model is the configured one again: {MODEL}."
    assert await chat_model_used(telegram, provider, "reset") == MODEL


async def test_only_bot_admins_change_the_defaults(telegram, bot):
    reply = await reply_to(telegram, "/models set chat fake-model")
    assert reply.text == "Only the bot's admins can change the default models."
    reply = await reply_to(telegram, "/models reset chat")
    assert reply.text == "Only the bot's admins can change the default models."


async def test_unknown_capabilities_and_models_are_refused_with_the_valid_ones(telegram, bot):
    reply = await reply_to(telegram, "/models set voice x", chat_id=BOT_ADMIN)
    assert reply.text == (
        "There is no capability voice. Choose one of: chat, completions, edits, images, "
        "image_edits."
    )
    reply = await reply_to(telegram, "/models set chat gpt-17", chat_id=BOT_ADMIN)
    assert reply.text.startswith("There is no model gpt-17 to choose. Choose one of: ")
    assert "fake-model-mini" in reply.text
    reply = await reply_to(telegram, "/models chat nope")
    assert reply.text == (
        f"There is no model nope to choose. Choose one of: {MODEL}, fake-model, fake-model-mini."
    )
    reply = await reply_to(telegram, "/models set chat")
    assert reply.text.startswith("/models - the models and this chat's choice")


# --- a chat's own model ------------------------------------------------------------------------


async def test_a_button_chooses_the_chat_model_and_the_conversation_goes_on(
    telegram, provider, bot
):
    assert await chat_model_used(telegram, provider, "first") == MODEL
    menu = await reply_to(telegram, "/models")
    assert ("fake-model", "models:=fake-model") in buttons(menu)
    telegram.user_presses("models:=fake-model", message_id=menu.message_id)
    await until(
        lambda: last_text(telegram) == "This chat now uses fake-model. The conversation continues."
    )
    assert await chat_model_used(telegram, provider, "second") == "fake-model"
    contents = [m["content"] for m in provider.requests[-1].json["messages"]]
    assert "first" in contents, "the conversation was not reset"

    menu = await reply_to(telegram, "/models")
    assert "This chat uses fake-model (chosen for this chat)." in menu.text
    assert ("✅ fake-model", "models:=fake-model") in buttons(menu)
    assert buttons(menu)[-1] == (f"↩ Default ({MODEL})", "models:reset")
    telegram.user_presses("models:reset", message_id=menu.message_id)
    await until(lambda: last_text(telegram).startswith("This chat now uses the default model"))
    assert await chat_model_used(telegram, provider, "third") == MODEL


@pytest.mark.both_databases
async def test_an_argument_chooses_the_chat_model_and_reset_goes_back(telegram, provider, bot):
    reply = await reply_to(telegram, "/models chat FAKE-MODEL-MINI")
    assert reply.text == "This chat now uses fake-model-mini. The conversation continues."
    reply = await reply_to(telegram, "/models fake-model-mini")
    assert reply.text == "This chat already uses fake-model-mini."
    assert await chat_model_used(telegram, provider) == "fake-model-mini"
    reply = await reply_to(telegram, "/models chat reset")
    assert reply.text == (
        f"This chat now uses the default model, {MODEL}. The conversation continues."
    )
    assert await chat_model_used(telegram, provider, "again") == MODEL


async def test_another_chats_choice_does_not_change_this_one(telegram, provider, bot):
    await reply_to(telegram, "/models chat fake-model", chat_id=BOT_ADMIN, user_id=BOT_ADMIN)
    assert await chat_model_used(telegram, provider) == MODEL


async def test_in_groups_only_chat_admins_choose(telegram, provider, bot):
    reply = await reply_to(telegram, "/models chat fake-model", chat_id=GROUP, user_id=7)
    assert reply.text == "Only this group's administrators can change that."

    telegram.set_member_status(GROUP, 8, "administrator")
    menu = await reply_to(telegram, "/models", chat_id=GROUP, user_id=8)
    assert buttons(menu)
    texts_before = len(bot_texts(telegram, GROUP))
    telegram.user_presses(
        "models:=fake-model", message_id=menu.message_id, chat_id=GROUP, user_id=7
    )
    (alert,) = await telegram.wait_for_call("answerCallbackQuery")
    assert alert.params["text"] == "Only this group's administrators can change that."
    assert alert.params["show_alert"] in (True, "true")
    assert len(bot_texts(telegram, GROUP)) == texts_before, "no message for the whole group"

    telegram.user_presses(
        "models:=fake-model", message_id=menu.message_id, chat_id=GROUP, user_id=8
    )
    await until(lambda: last_text(telegram, GROUP).startswith("This chat now uses fake-model"))
    assert await chat_model_used(telegram, provider, chat_id=GROUP, user_id=7) == "fake-model"


async def test_private_users_cannot_choose_when_the_config_forbids_it(
    telegram, provider, config_for, start_bot
):
    config = config_for(
        streaming={"drafts": False},
        telegram={"admins": [BOT_ADMIN]},
        models={"chat": MODEL, "users_choose": False},
    )
    async with start_bot(config):
        reply = await reply_to(telegram, "/models chat fake-model")
        assert reply.text == "Choosing your own model is turned off; the bot's admins choose it."
        menu = await reply_to(telegram, "/models")
        assert buttons(menu) == []
        assert "/models chat" not in menu.text
        assert await chat_model_used(telegram, provider) == MODEL

        reply = await reply_to(
            telegram, "/models chat fake-model", chat_id=BOT_ADMIN, user_id=BOT_ADMIN
        )
        assert reply.text.startswith("This chat now uses fake-model")


async def test_configured_chat_suggestions_are_the_only_choices(
    telegram, provider, config_for, start_bot
):
    config = config_for(
        streaming={"drafts": False},
        models={"chat": MODEL, "suggestions": {"chat": ["fake-model"]}},
    )
    async with start_bot(config):
        reply = await reply_to(telegram, "/models chat fake-model-mini")
        assert reply.text == (
            f"There is no model fake-model-mini to choose. Choose one of: {MODEL}, fake-model."
        )
        menu = await reply_to(telegram, "/models")
        assert [label for label, _ in buttons(menu)] == [f"✅ {MODEL}", "fake-model"]


@pytest.mark.both_databases
async def test_choices_and_defaults_survive_a_restart(telegram, provider, config, start_bot):
    async with start_bot(config):
        await reply_to(telegram, "/models chat fake-model")
        await reply_to(telegram, "/models set chat fake-model-mini", chat_id=BOT_ADMIN)
    async with start_bot(config):
        assert await chat_model_used(telegram, provider) == "fake-model"
        assert await chat_model_used(telegram, provider, chat_id=BOT_ADMIN, user_id=BOT_ADMIN) == (
            "fake-model-mini"
        )
        menu = await reply_to(telegram, "/models")
    assert "This chat uses fake-model (chosen for this chat)." in menu.text


async def test_answers_are_in_chinese_for_chinese_users(telegram, bot):
    menu = await reply_to(telegram, "/models", language_code="zh-hans")
    assert menu.text.startswith("🤖 模型")
    assert f"本聊天使用 {MODEL}（默认模型）。" in menu.text
    assert "各服务商提供的模型：" in menu.text
    reply = await reply_to(telegram, "/models chat nope", language_code="zh-hans")
    assert reply.text == f"没有可选的模型 nope。可选：{MODEL}, fake-model, fake-model-mini。"
    reply = await reply_to(telegram, "/models chat fake-model", language_code="zh-hans")
    assert reply.text == "本聊天现在使用 fake-model，对话继续。"
    reply = await reply_to(telegram, "/models set chat x", language_code="zh-hans")
    assert reply.text == "只有机器人管理员可以修改默认模型。"


async def test_a_model_only_the_second_provider_reports_is_answered_by_it(
    telegram, config_for, provider, start_bot
):
    async with FakeWrapper() as wrapper:
        config = config_for(
            streaming={"drafts": False},
            providers=[
                {"name": "fake", "kind": "openai", "base_url": provider.base_url},
                {"name": "wrapper", "kind": "wrapper", "base_url": wrapper.base_url},
            ],
        )
        async with start_bot(config):
            await reply_to(telegram, "/models")
            reply = await reply_to(telegram, "/models chat gpt-4")
            assert reply.text == "This chat now uses gpt-4. The conversation continues."
            telegram.user_sends("hello")
            await until(lambda: "echo: hello" in bot_texts(telegram))
    chats = [r for r in wrapper.requests if r.path.startswith("/openai/chat")]
    assert [r.json["model"] for r in chats] == ["gpt-4"]
    assert all(r.path == "/v1/models" for r in provider.requests), "the first provider is skipped"
