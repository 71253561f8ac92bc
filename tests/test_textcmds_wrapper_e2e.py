"""End to end: /complete, /edit and /retry against seed 000's wrapper service."""

from __future__ import annotations

import pytest

from tests.e2e import USER, bot_texts, stored_once_finished, until
from tests.fakes.wrapper import FakeWrapper


@pytest.fixture
async def wrapper():
    async with FakeWrapper() as fake:
        yield fake


@pytest.fixture
def config(config_for, wrapper):
    return config_for(
        providers=[{"name": "wrapper", "kind": "wrapper", "base_url": wrapper.base_url}],
        models={"chat": "gpt-4", "edits": "text-davinci-edit-001"},
        streaming={"drafts": False},
    )


async def test_a_completion_leaves_the_services_conversation_alone(telegram, wrapper, bot, config):
    telegram.user_sends("first question")
    await stored_once_finished(config, 1)
    telegram.user_sends("/complete Once upon")
    await until(lambda: "Once uponecho: Once upon" in bot_texts(telegram))
    await stored_once_finished(config, 2)
    telegram.user_sends("second question")
    await until(lambda: "echo: second question" in bot_texts(telegram))

    _chat, completion, second = wrapper.requests
    assert completion.path == "/openai/completions/stream"
    assert completion.json["prompt"] == "Once upon"
    (chatcode,) = wrapper.conversations
    assert second.json["chatcode"] == chatcode
    assert [m["content"] for m in wrapper.conversations[chatcode] if m["role"] == "user"] == [
        "first question",
        "second question",
    ]


async def test_an_edit_with_an_edits_model_goes_to_the_services_edits(
    telegram, wrapper, bot, config
):
    telegram.user_sends("/edit fix the spelling\nWhat day of the wek is it?")
    await until(lambda: "fix the spelling: What day of the wek is it?" in bot_texts(telegram))
    (request,) = wrapper.requests
    assert request.path == "/openai/edits"
    assert request.json["input"] == "What day of the wek is it?"
    assert request.json["instruction"] == "fix the spelling"


async def test_retry_starts_a_service_conversation_without_the_old_answer(
    telegram, wrapper, bot, config
):
    telegram.user_sends("first question")
    await stored_once_finished(config, 1)
    (old_code,) = wrapper.conversations
    telegram.user_sends("/retry")
    await until(lambda: len(wrapper.requests) == 2)
    await stored_once_finished(config, 2)
    retried = wrapper.requests[1].json
    assert "chatcode" not in retried
    assert [m["content"] for m in retried["messages"]] == ["first question"]
    telegram.user_sends("second question")
    await until(lambda: "echo: second question" in bot_texts(telegram))
    new_code = wrapper.requests[2].json["chatcode"]
    assert new_code != old_code
    assert [m["content"] for m in wrapper.conversations[new_code] if m["role"] == "user"] == [
        "first question",
        "second question",
    ]
    assert bot_texts(telegram, USER).count("echo: first question") == 1
