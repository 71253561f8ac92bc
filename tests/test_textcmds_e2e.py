"""End to end: /complete, /edit of a text and /retry through the real bot and the fakes."""

from __future__ import annotations

import pytest

from bot.handlers.edit import REWRITE_PROMPT
from tests.e2e import bot_texts, stored_once_finished, turn_over, until
from tests.factories import MODEL
from tests.fakes.provider import Chunk, Delay, Done, EditAnswer, ErrorResponse, Finish, Role

USER = 42
OTHER = 43
ADMIN = 44
GROUP = -1001234
EDITS_MODEL = "text-davinci-edit-001"
BAD_KEY = {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}


@pytest.fixture
def config(config_for):
    """Send-then-edit streaming, as in groups; drafts have their own tests."""
    return config_for(streaming={"drafts": False})


def completion_steps(pieces, delay=0.0):
    """A /v1/completions script (chunks carry text on the choice)."""
    steps: list[object] = []
    for piece in pieces:
        if delay:
            steps.append(Delay(delay))
        steps.append(Chunk(piece))
    return [*steps, Finish("stop"), Done()]


def bot_message(telegram, text, chat_id=USER):
    (message,) = [m for m in telegram.messages(chat_id, from_bot=True) if m.text == text]
    return message


# --- /complete -------------------------------------------------------------------------------


async def test_complete_streams_the_continuation_after_its_prompt(telegram, provider, bot, config):
    provider.enqueue(*completion_steps([" there was", " a small", " dragon."], delay=0.6))
    telegram.user_sends("/complete Once upon a time")
    whole = "Once upon a time there was a small dragon."
    await until(lambda: whole in bot_texts(telegram))

    shown = bot_message(telegram, whole)
    assert len(shown.texts) >= 2, "the continuation should show while it streams"
    assert shown.texts[0].startswith("Once upon a time there was")
    (request,) = provider.requests
    assert request.path == "/v1/completions"
    assert request.json["model"] == "gpt-3.5-turbo-instruct"
    assert request.json["prompt"] == "Once upon a time"
    assert request.json["stream"] is True
    rows = await stored_once_finished(config, 1)
    assert rows == [
        ("completion", "user", "Once upon a time", "complete"),
        ("completion", "assistant", whole, "complete"),
    ]


@pytest.mark.both_databases
async def test_a_completion_is_kept_but_is_not_context_for_the_next_chat(
    telegram, provider, bot, config
):
    provider.enqueue_stream(["Hi there."])
    telegram.user_sends("hello")
    await until(lambda: "Hi there." in bot_texts(telegram))
    provider.enqueue(*completion_steps([" upon a time"]))
    telegram.user_sends("/complete Once")
    await until(lambda: "Once upon a time" in bot_texts(telegram))
    telegram.user_sends("and now?")
    await until(lambda: "echo: and now?" in bot_texts(telegram))

    contents = [m["content"] for m in provider.requests[2].json["messages"]]
    assert contents == ["You are a test assistant.", "hello", "Hi there.", "and now?"]
    kinds = [(kind, role) for kind, role, _, _ in await stored_once_finished(config, 3)]
    assert ("completion", "assistant") in kinds


async def test_complete_without_text_explains_itself(telegram, provider, bot):
    telegram.user_sends("/complete")
    await until(lambda: any("/complete Once upon a time" in t for t in bot_texts(telegram)))
    assert provider.requests == []


async def test_complete_failure_is_told_in_chinese_and_stored_as_error(
    telegram, provider, bot, config
):
    provider.enqueue(ErrorResponse(200, {"codes": 300, "mess": "额度不足", "data": "token"}))
    telegram.user_sends("/complete 从前有座山", language_code="zh-hans")
    await until(lambda: any("额度" in t for t in bot_texts(telegram)))
    rows = await stored_once_finished(config, 1)
    assert rows[-1] == ("completion", "assistant", "", "error")


# --- /edit of a text -------------------------------------------------------------------------


async def test_edit_as_a_reply_rewrites_the_text_with_the_chat_model(
    telegram, provider, bot, config
):
    original = telegram.user_sends(
        "What day of the wek is it?", user_id=USER, chat_id=GROUP, chat_type="supergroup"
    )
    provider.enqueue_stream(["What day ", "of the week ", "is it?"], delay=0.5)
    telegram.user_sends("/edit fix the spelling", chat_id=GROUP, reply_to_message_id=original)
    await until(lambda: "What day of the week is it?" in bot_texts(telegram, GROUP))

    (request,) = provider.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["model"] == MODEL
    system, user = request.json["messages"]
    assert system == {"role": "system", "content": REWRITE_PROMPT}
    assert "fix the spelling" in user["content"]
    assert "What day of the wek is it?" in user["content"]
    shown = bot_message(telegram, "What day of the week is it?", GROUP)
    assert len(shown.texts) >= 2, "the rewrite should show while it streams"
    rows = await stored_once_finished(config, 1)
    assert rows == [
        ("edit", "user", "fix the spelling\n\nWhat day of the wek is it?", "complete"),
        ("edit", "assistant", "What day of the week is it?", "complete"),
    ]


async def test_edit_takes_the_text_from_the_lines_after_the_instruction(telegram, provider, bot):
    provider.enqueue_stream(["Bonjour.\nÀ bientôt."])
    telegram.user_sends("/edit translate to French\nGood morning.\nSee you soon.")
    await until(lambda: "Bonjour.\nÀ bientôt." in bot_texts(telegram))
    user = provider.requests[0].json["messages"][1]["content"]
    assert user.startswith("Instruction: translate to French")
    assert user.endswith("Good morning.\nSee you soon.")


async def test_edit_is_not_context_for_the_next_chat(telegram, provider, bot):
    provider.enqueue_stream(["Fixed text."])
    telegram.user_sends("/edit fix it\nsome txet")
    await until(lambda: "Fixed text." in bot_texts(telegram))
    telegram.user_sends("hi")
    await until(lambda: "echo: hi" in bot_texts(telegram))
    contents = [m["content"] for m in provider.requests[1].json["messages"]]
    assert contents == ["You are a test assistant.", "hi"]


async def test_edit_with_an_edits_model_uses_the_edits_endpoint(
    telegram, provider, config_for, start_bot
):
    config = config_for(streaming={"drafts": False}, models={"chat": MODEL, "edits": EDITS_MODEL})
    edited = "make it formal: hey dude, what's up?"
    # Long enough for "typing…" to be shown while the edit is made.
    provider.enqueue(Delay(0.5), EditAnswer(edited))
    async with start_bot(config):
        telegram.user_sends("/edit make it formal\nhey dude, what's up?")
        await until(lambda: edited in bot_texts(telegram))
    (request,) = provider.requests
    assert request.path == "/v1/edits"
    assert request.json == {
        "model": EDITS_MODEL,
        "input": "hey dude, what's up?",
        "instruction": "make it formal",
    }
    typing = telegram.calls_to("sendChatAction")
    assert typing
    assert typing[0].at < bot_message(telegram, edited).versions[0].at


async def test_edit_falls_back_to_the_chat_model_when_the_provider_has_no_edits(
    telegram, provider, config_for, start_bot
):
    config = config_for(streaming={"drafts": False}, models={"chat": MODEL, "edits": EDITS_MODEL})
    provider.enqueue(ErrorResponse(404, {"error": {"message": "Invalid URL (POST /v1/edits)"}}))
    provider.enqueue_stream(["Good evening, sir."])
    async with start_bot(config):
        telegram.user_sends("/edit make it formal\nyo, evening")
        await until(lambda: "Good evening, sir." in bot_texts(telegram))
    assert [r.path for r in provider.requests] == ["/v1/edits", "/v1/chat/completions"]
    assert provider.requests[1].json["model"] == MODEL
    assert "yo, evening" in provider.requests[1].json["messages"][1]["content"]


@pytest.mark.parametrize(
    ("command", "reply", "expected"),
    [
        ("/edit", False, "Say how to change the text"),
        ("/edit fix the spelling", False, "There is no text to edit"),
        ("/edit", True, "Say how to change the text"),
        ("/edit   \n", True, "Say how to change the text"),
    ],
)
async def test_edit_without_an_instruction_or_a_text_explains_how(
    telegram, provider, bot, command, reply, expected
):
    original = None
    if reply:
        original = telegram.user_sends("some text", chat_id=GROUP, chat_type="supergroup")
    telegram.user_sends(
        command, chat_id=GROUP, chat_type="supergroup", reply_to_message_id=original
    )
    await until(lambda: any(expected in t for t in bot_texts(telegram, GROUP)))
    assert provider.requests == []


async def test_edit_usage_is_explained_in_chinese(telegram, provider, bot):
    telegram.user_sends("/edit 改正错别字", language_code="zh")
    await until(lambda: any("没有可修改的文字" in t for t in bot_texts(telegram)))
    assert provider.requests == []


# --- /retry ----------------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_retry_regenerates_the_last_answer_in_its_own_message(
    telegram, provider, bot, config
):
    provider.enqueue_stream(["A first joke."])
    question = telegram.user_sends("Tell me a joke")
    await stored_once_finished(config, 1)
    answer = bot_message(telegram, "A first joke.")
    provider.enqueue_stream(["A better ", "second ", "joke."], delay=0.8)
    telegram.user_sends("/retry")
    await until(lambda: telegram.text_of(USER, answer.message_id) == "A better second joke.")

    assert "A first joke." not in bot_texts(telegram)
    assert bot_texts(telegram).count("A better second joke.") == 1
    assert answer.reply_to_message_id == question
    assert len(answer.texts) >= 3, "the new answer should stream into the old message"
    contents = [m["content"] for m in provider.requests[1].json["messages"]]
    assert contents == ["You are a test assistant.", "Tell me a joke"]
    rows = await stored_once_finished(config, 2)
    assert [(r[2], r[3]) for r in rows if r[1] == "assistant"] == [
        ("A first joke.", "replaced"),
        ("A better second joke.", "complete"),
    ]

    telegram.user_sends("Another one")
    await until(lambda: "echo: Another one" in bot_texts(telegram))
    contents = [m["content"] for m in provider.requests[2].json["messages"]]
    assert contents == [
        "You are a test assistant.",
        "Tell me a joke",
        "A better second joke.",
        "Another one",
    ]


async def test_retry_of_a_long_answer_keeps_its_first_message_and_deletes_the_rest(
    telegram, provider, bot, config
):
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum " * 40 for i in range(20)]
    long_answer = "\n\n".join(p.strip() for p in paragraphs)
    provider.enqueue_stream([long_answer[i : i + 2000] for i in range(0, len(long_answer), 2000)])
    telegram.user_sends("write a lot")
    await until(lambda: "".join(bot_texts(telegram)).endswith(paragraphs[-1].strip()))
    await stored_once_finished(config, 1)
    first, *rest = telegram.messages(USER, from_bot=True)
    assert len(rest) >= 2
    provider.enqueue_stream(["Short now."])
    telegram.user_sends("/retry")
    await until(lambda: telegram.text_of(USER, first.message_id) == "Short now.")
    await until(lambda: all(telegram.message(USER, m.message_id).deleted for m in rest))
    assert bot_texts(telegram) == ["Short now."]


async def test_retry_with_nothing_to_retry_says_so(telegram, provider, bot, config):
    telegram.user_sends("/retry")
    await until(lambda: any("no answer to regenerate" in t for t in bot_texts(telegram)))
    provider.enqueue_stream(["Sure."])
    telegram.user_sends("hello")
    await stored_once_finished(config, 1)
    telegram.user_sends("/new")
    await until(lambda: any("new conversation" in t for t in bot_texts(telegram)))
    telegram.user_sends("/retry", language_code="zh")
    await until(lambda: any("还没有可以重新生成的回答" in t for t in bot_texts(telegram)))
    assert len(provider.requests) == 1


async def test_a_completion_or_an_edit_is_not_what_retry_regenerates(
    telegram, provider, bot, config
):
    telegram.user_sends("/complete Once")
    await stored_once_finished(config, 1)
    telegram.user_sends("/retry")
    await until(lambda: any("no answer to regenerate" in t for t in bot_texts(telegram)))
    assert len(provider.requests) == 1


async def test_retry_by_another_member_of_a_group_is_refused_but_an_admin_may(
    telegram, provider, bot, config
):
    provider.enqueue_stream(["First."])
    telegram.user_sends("/chat question", user_id=USER, chat_id=GROUP, chat_type="supergroup")
    await stored_once_finished(config, 1)
    telegram.user_sends("/retry", user_id=OTHER, chat_id=GROUP)
    await until(lambda: any("Only the person who asked" in t for t in bot_texts(telegram, GROUP)))
    assert len(provider.requests) == 1
    telegram.user_sends("/retry", user_id=OTHER, chat_id=GROUP, language_code="zh")
    await until(lambda: any("只有提问的人或管理员" in t for t in bot_texts(telegram, GROUP)))
    assert len(provider.requests) == 1

    telegram.set_member_status(GROUP, ADMIN, "administrator")
    provider.enqueue_stream(["Second."])
    answer = bot_message(telegram, "First.", GROUP)
    telegram.user_sends("/retry", user_id=ADMIN, chat_id=GROUP)
    await until(lambda: telegram.text_of(GROUP, answer.message_id) == "Second.")


async def test_retry_by_the_asker_in_a_group_needs_no_admin_rights(telegram, provider, bot, config):
    provider.enqueue_stream(["First."])
    telegram.user_sends("/chat question", user_id=USER, chat_id=GROUP, chat_type="supergroup")
    await stored_once_finished(config, 1)
    answer = bot_message(telegram, "First.", GROUP)
    provider.enqueue_stream(["Again."])
    telegram.user_sends("/retry", user_id=USER, chat_id=GROUP)
    await until(lambda: telegram.text_of(GROUP, answer.message_id) == "Again.")
    assert telegram.calls_to("getChatMember") == []


async def test_a_failed_retry_keeps_the_old_answer_and_says_why(telegram, provider, bot, config):
    provider.enqueue_stream(["The answer."])
    telegram.user_sends("question")
    await stored_once_finished(config, 1)
    answer = bot_message(telegram, "The answer.")
    provider.enqueue_error(401, BAD_KEY)
    telegram.user_sends("/retry")
    await until(lambda: any("Could not regenerate" in t for t in bot_texts(telegram)))
    assert telegram.text_of(USER, answer.message_id) == "The answer."
    assert any("API key" in t for t in bot_texts(telegram))
    rows = await stored_once_finished(config, 2)
    assert [(r[2], r[3]) for r in rows if r[1] == "assistant"] == [
        ("The answer.", "complete"),
        ("", "error"),
    ]

    (notice,) = [m for m in telegram.messages(USER, from_bot=True) if "API key" in m.text]
    provider.enqueue_stream(["A new answer."])
    telegram.user_sends("/retry")
    await until(lambda: telegram.text_of(USER, answer.message_id) == "A new answer.")
    await until(lambda: telegram.message(USER, notice.message_id).deleted)
    await stored_once_finished(config, 3)
    telegram.user_sends("next")
    await until(lambda: "echo: next" in bot_texts(telegram))
    contents = [m["content"] for m in provider.requests[-1].json["messages"]]
    assert contents == ["You are a test assistant.", "question", "A new answer.", "next"]


async def test_a_failed_retry_is_told_in_chinese(telegram, provider, bot, config):
    provider.enqueue_stream(["答案。"])
    telegram.user_sends("问题", language_code="zh-hans")
    await stored_once_finished(config, 1)
    provider.enqueue_error(401, BAD_KEY)
    telegram.user_sends("/retry", language_code="zh-hans")
    await until(
        lambda: any("未能重新生成回答" in t and "API 密钥" in t for t in bot_texts(telegram))
    )


@pytest.mark.both_databases
async def test_retry_of_an_error_answer_replaces_the_error_in_place(
    telegram, provider, bot, config
):
    provider.enqueue_error(401, BAD_KEY)
    telegram.user_sends("question")
    await stored_once_finished(config, 1)
    (error_message,) = telegram.messages(USER, from_bot=True)
    # Else the /retry may come while the failed turn still holds the conversation: queued.
    await turn_over(bot)
    provider.enqueue_stream(["Works now."])
    telegram.user_sends("/retry")
    await until(lambda: telegram.text_of(USER, error_message.message_id) == "Works now.")
    assert bot_texts(telegram) == ["Works now."]


async def test_retry_waits_for_the_answer_still_streaming(telegram, provider, bot, config):
    provider.enqueue(
        Role(), Delay(1.0), Chunk("Slow "), Delay(1.0), Chunk("answer."), Finish(), Done()
    )
    telegram.user_sends("question")
    await until(lambda: len(provider.requests) == 1)
    provider.enqueue_stream(["Fast answer."])
    telegram.user_sends("/retry")
    await until(lambda: "Fast answer." in bot_texts(telegram))
    assert provider.requests[1].at >= provider.ended_at[0]
    assert any("as soon as I've finished" in t for t in bot_texts(telegram))
    assert "Slow answer." not in bot_texts(telegram)
    rows = await stored_once_finished(config, 2)
    assert [(r[2], r[3]) for r in rows if r[1] == "assistant"] == [
        ("Slow answer.", "replaced"),
        ("Fast answer.", "complete"),
    ]
