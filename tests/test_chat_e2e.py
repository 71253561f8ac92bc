"""End to end: the real PTB Application polls the fake Bot API, streams from the fake provider."""

from __future__ import annotations

from itertools import pairwise

import pytest

from bot.handlers.help import MENU_COMMANDS
from tests.e2e import answers_once_stored, bot_texts, until
from tests.factories import API_KEY, MODEL
from tests.fakes.provider import Chunk, Cut, Role

USER = 42
REPLY_METHODS = ("sendMessage", "editMessageText")


@pytest.fixture
def config(config_for):
    """Send-then-edit streaming, as in groups; drafts have their own tests."""
    return config_for(streaming={"drafts": False})


def bot_calls(telegram, chat_id=USER):
    return [c for c in telegram.calls if c.method in REPLY_METHODS and c.ok and _chat(c) == chat_id]


def _chat(call):
    return int(call.params.get("chat_id", 0))


async def wait_for_answer(telegram, count=1, chat_id=USER, timeout=15.0):
    """Wait until the bot has finished ``count`` answers, marked by the stored final text."""

    def finished(call):
        return call.method in REPLY_METHODS and call.ok and _chat(call) == chat_id

    await telegram.wait_for(finished, count=count, timeout=timeout)


async def test_streamed_answer_arrives_progressively_and_ends_complete(
    telegram, provider, bot, config
):
    pieces = [f"word{i} " for i in range(12)]
    provider.enqueue_stream(pieces, delay=0.3)
    telegram.user_sends("Tell me something")
    answer = "".join(pieces).strip()
    await until(lambda: answer in bot_texts(telegram))

    calls = bot_calls(telegram)
    texts = [c.params["text"] for c in calls]
    assert calls[0].method == "sendMessage"
    assert len(calls) >= 3, "the answer should have been shown while it streamed"
    assert all(b.startswith(a.rstrip()) for a, b in pairwise(texts))
    assert texts[-1] == answer
    typing = telegram.calls_to("sendChatAction")
    assert typing
    assert typing[0].at < calls[0].at
    await until(lambda: provider.requests and True)
    request = provider.requests[0]
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.json["model"] == MODEL
    assert request.json["stream"] is True
    assert await answers_once_stored(config, 1) == [("".join(pieces), "complete")]


async def test_updates_in_one_chat_stay_at_least_one_second_apart(telegram, provider, bot):
    provider.enqueue_stream([f"t{i} " for i in range(40)], delay=0.1)
    telegram.user_sends("stream fast please")
    await until(lambda: any("t39" in t for t in bot_texts(telegram)))
    times = [c.at for c in bot_calls(telegram)]
    assert len(times) >= 4
    gaps = [b - a for a, b in pairwise(times)]
    # The final text alone may spend the chat's reserve and follow the last update sooner.
    assert min(gaps[:-1]) >= 1.0, gaps


@pytest.mark.both_databases
async def test_second_turn_sends_the_first_as_context_and_new_resets_it(telegram, provider, bot):
    provider.enqueue_stream(["Paris ", "is the capital."])
    telegram.user_sends("What is the capital of France?")
    await until(lambda: "Paris is the capital." in bot_texts(telegram))

    provider.enqueue_stream(["About 2 million."])
    telegram.user_sends("How many people live there?")
    await until(lambda: "About 2 million." in bot_texts(telegram))
    second = provider.requests[1].json["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[0]["content"] == "You are a test assistant."
    assert second[2]["content"] == "Paris is the capital."

    telegram.user_sends("/new")
    await until(lambda: any("new conversation" in t for t in bot_texts(telegram)))
    provider.enqueue_stream(["Fresh."])
    telegram.user_sends("/chat Hello again")
    await until(lambda: "Fresh." in bot_texts(telegram))
    third = provider.requests[2].json["messages"]
    assert [m["content"] for m in third] == ["You are a test assistant.", "Hello again"]


@pytest.mark.both_databases
async def test_context_survives_a_restart_on_the_same_database(
    telegram, provider, config, start_bot
):
    async with start_bot(config):
        provider.enqueue_stream(["Remembered."])
        telegram.user_sends("Remember the number 7.")
        await until(lambda: "Remembered." in bot_texts(telegram))
    async with start_bot(config):
        provider.enqueue_stream(["It was 7."])
        telegram.user_sends("Which number?")
        await until(lambda: "It was 7." in bot_texts(telegram))
    contents = [m["content"] for m in provider.requests[-1].json["messages"]]
    assert contents[1:] == ["Remember the number 7.", "Remembered.", "Which number?"]


async def test_injected_429_delays_the_answer_but_loses_nothing(telegram, provider, bot):
    telegram.inject_retry_after("editMessageText", 2, chat_id=USER, times=1)
    pieces = [f"part{i} " for i in range(10)]
    provider.enqueue_stream(pieces, delay=0.25)
    telegram.user_sends("go")
    answer = "".join(pieces).strip()
    await until(lambda: answer in bot_texts(telegram), timeout=20)

    rejected = [c for c in telegram.calls if c.error_code == 429]
    assert len(rejected) == 1
    after = [c for c in bot_calls(telegram) if c.at > rejected[0].at]
    assert after, "the final text must still be delivered"
    assert after[0].at - rejected[0].at >= 2.0
    assert after[-1].params["text"] == answer


@pytest.mark.both_databases
async def test_provider_error_reaches_the_user_and_the_bot_keeps_serving(
    telegram, provider, bot, config
):
    provider.enqueue_error(
        401,
        {
            "error": {
                "message": "Incorrect API key",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    )
    telegram.user_sends("hello?")
    await until(lambda: any("API key" in t for t in bot_texts(telegram)))

    provider.enqueue_stream(["Back to normal."])
    telegram.user_sends("and now?")
    await until(lambda: "Back to normal." in bot_texts(telegram))
    statuses = [status for _, status in await answers_once_stored(config, 2)]
    assert statuses == ["error", "complete"]


async def test_errors_are_told_in_chinese_to_chinese_users(telegram, provider, bot):
    provider.enqueue_error(
        400,
        {
            "error": {
                "message": "Your request was rejected by the safety system.",
                "type": "invalid_request_error",
                "code": "content_policy_violation",
            }
        },
    )
    telegram.user_sends("你好", language_code="zh-hans")
    await until(lambda: any("内容安全策略" in t for t in bot_texts(telegram)))


@pytest.mark.both_databases
async def test_a_cut_stream_keeps_what_arrived_and_says_it_was_cut(telegram, provider, bot, config):
    provider.enqueue(Role(), Chunk("The first half "), Chunk("of the answer"), Cut())
    telegram.user_sends("long story")
    await until(lambda: any("cut off" in t for t in bot_texts(telegram)))
    final = bot_texts(telegram)[-1]
    assert final.startswith("The first half of the answer")
    assert await answers_once_stored(config, 1) == [("The first half of the answer", "cut")]


async def test_a_10000_character_answer_arrives_as_three_messages(telegram, provider, bot):
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum " * 40 for i in range(20)]
    answer = "\n\n".join(p.strip() for p in paragraphs)
    assert 9_500 < len(answer) < 10_500
    size = 500
    provider.enqueue_stream([answer[i : i + size] for i in range(0, len(answer), size)])
    telegram.user_sends("write a lot")
    await until(lambda: "".join(bot_texts(telegram)).endswith(paragraphs[-1].strip()))
    texts = bot_texts(telegram)
    assert all(len(t) <= 4096 for t in texts)
    assert "".join(texts).replace("\n", "") == answer.replace("\n", "")


async def test_start_and_help_explain_the_commands_registered_in_the_menu(telegram, bot):
    telegram.user_sends("/start")
    telegram.user_sends("/help", language_code="zh")
    await until(lambda: len(bot_texts(telegram)) == 2)
    english, chinese = bot_texts(telegram)
    assert "/new" in english
    assert "/chat" in english
    assert "新对话" in chinese
    registered = telegram.calls_to("setMyCommands")
    assert {c.params.get("language_code") for c in registered} == {None, "zh"}
    commands = {c["command"] for c in registered[0].params["commands"]}
    assert commands == set(MENU_COMMANDS)
    for command in MENU_COMMANDS:
        assert f"/{command}" in english
        assert f"/{command}" in chinese


async def test_chat_without_text_explains_how_to_use_it(telegram, provider, bot):
    telegram.user_sends("/chat")
    await until(lambda: any("/chat" in t for t in bot_texts(telegram)))
    assert provider.requests == []


async def test_not_modified_and_rejected_entities_do_not_lose_the_answer(telegram, provider, bot):
    telegram.inject_cant_parse_entities("editMessageText", chat_id=USER, times=1)
    telegram.inject_not_modified("editMessageText", chat_id=USER, times=1)
    pieces = ["**Bold** start ", "then more ", "and the end."]
    provider.enqueue_stream(pieces, delay=0.6)
    telegram.user_sends("format it")
    await until(lambda: "Bold start then more and the end." in bot_texts(telegram), timeout=20)


async def test_a_multi_line_chat_command_keeps_its_line_breaks(telegram, provider, bot):
    provider.enqueue_stream(["ok"])
    telegram.user_sends("/chat first line\nsecond line\n\n  indented")
    await until(lambda: "ok" in bot_texts(telegram))
    assert provider.requests[0].json["messages"][-1]["content"] == (
        "first line\nsecond line\n\n  indented"
    )
