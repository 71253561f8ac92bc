"""End to end: the bot keeps a wrapper service's conversation by its chatcode."""

from __future__ import annotations

import pytest

from tests.e2e import bot_texts, until
from tests.fakes.wrapper import FakeWrapper


@pytest.fixture
async def wrapper():
    async with FakeWrapper() as fake:
        yield fake


@pytest.fixture
def config(config_for, wrapper):
    return config_for(
        providers=[{"name": "wrapper", "kind": "wrapper", "base_url": wrapper.base_url}],
        streaming={"drafts": False},
    )


async def test_the_chatcode_is_kept_per_conversation_and_sent_back(telegram, wrapper, bot):
    telegram.user_sends("first question")
    await until(lambda: "echo: first question" in bot_texts(telegram))
    telegram.user_sends("second question")
    await until(lambda: "echo: second question" in bot_texts(telegram))

    first, second = (r.json for r in wrapper.requests)
    assert "chatcode" not in first
    assert first["initMessage"]["content"] == "You are a test assistant."
    assert second["chatcode"] in wrapper.conversations
    assert [m["content"] for m in second["messages"]] == ["second question"]


async def test_new_starts_a_fresh_service_conversation(telegram, wrapper, bot):
    telegram.user_sends("remember me")
    await until(lambda: "echo: remember me" in bot_texts(telegram))
    telegram.user_sends("/new")
    await until(lambda: any("new conversation" in t for t in bot_texts(telegram)))
    telegram.user_sends("who am I?")
    await until(lambda: "echo: who am I?" in bot_texts(telegram))
    assert "chatcode" not in wrapper.requests[-1].json
    assert len(wrapper.conversations) == 2


async def test_image_through_the_wrapper_service_arrives_as_a_photo(telegram, wrapper, bot):
    telegram.user_sends("/image A cute baby sea otter")
    await until(lambda: any(m.kind == "photo" for m in telegram.messages(42, from_bot=True)))
    (photo,) = [m for m in telegram.messages(42, from_bot=True) if m.kind == "photo"]
    assert photo.text == "A cute baby sea otter"
    (request,) = wrapper.requests
    assert request.path == "/openai/image"
    assert request.json == {
        "prompt": "A cute baby sea otter",
        "n": 1,
        "size": "1024x1024",
        "response_format": "b64_json",
    }


async def test_an_image_url_from_the_wrapper_is_handed_to_telegram(
    telegram, wrapper, start_bot, config_for
):
    config = config_for(
        providers=[{"name": "wrapper", "kind": "wrapper", "base_url": wrapper.base_url}],
        images={"response_format": "url"},
    )
    async with start_bot(config):
        telegram.user_sends("/image an otter")
        await until(lambda: any(m.kind == "photo" for m in telegram.messages(42, from_bot=True)))
    (photo,) = [m for m in telegram.messages(42, from_bot=True) if m.kind == "photo"]
    assert photo.photo.source == "https://images.example/generated.png"
