"""Nothing is lost: a bot process killed mid-answer, and secrets kept out of the logs."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest

from bot.logs import setup_logging
from bot.messages import text as message_text
from tests.e2e import (
    USER,
    answer_held_open,
    answers_once_stored,
    bot_texts,
    stored_answers,
    stored_questions,
    until,
)
from tests.factories import API_KEY, TOKEN
from tests.fakes.provider import Chunk, Delay, Done, Finish, ImagesAnswer, Role, b64_item
from tests.processes import GRACE, bot_process, terminated


@pytest.mark.both_databases
async def test_an_answer_cut_by_a_killed_process_is_sent_with_a_note_after_restart(
    telegram, provider, config, start_bot, tmp_path
):
    async with bot_process(tmp_path, telegram, provider, config) as process:
        await answer_held_open(
            telegram, provider, "Tell me a long story", "The beginning of a long answer"
        )
        # The checkpoint follows the visible update; give it a moment to commit.
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async with start_bot(config):
        await until(lambda: any("interrupted" in t for t in bot_texts(telegram)))
    (text,) = bot_texts(telegram)
    assert text.startswith("The beginning of a long answer")
    assert await answers_once_stored(config, 1) == [
        ("The beginning of a long answer", "interrupted")
    ]
    user_turns = [m["content"] for m in provider.requests[0].json["messages"]]
    assert user_turns[-1] == "Tell me a long story"


async def test_sigterm_cuts_an_answer_still_streaming_after_the_grace_period(
    telegram, provider, config, start_bot, tmp_path
):
    async with bot_process(
        tmp_path, telegram, provider, config, streaming={"shutdown_grace": GRACE}
    ) as process:
        await answer_held_open(
            telegram, provider, "Tell me a long story", "The beginning of a long answer"
        )
        assert await terminated(process, GRACE) == 0

    (shown,) = bot_texts(telegram)
    assert shown.startswith("The beginning of a long answer")
    assert shown.endswith(message_text("note.shutdown", "en"))
    assert await stored_answers(config) == [("The beginning of a long answer", "interrupted")]
    # Nothing is left for start-up recovery to finish a second time.
    async with start_bot(config):
        telegram.user_sends("/help")
        await until(lambda: len(bot_texts(telegram)) == 2)
    assert bot_texts(telegram)[0] == shown


async def test_sigterm_lets_an_answer_that_ends_within_the_grace_period_finish(
    telegram, provider, config, tmp_path
):
    grace = 30.0
    async with bot_process(
        tmp_path, telegram, provider, config, streaming={"shutdown_grace": grace}
    ) as process:
        provider.enqueue(
            Role(), Chunk("A short answer, "), Delay(1.5), Chunk("finished."), Finish(), Done()
        )
        telegram.user_sends("Tell me something short")
        await until(lambda: any("A short answer" in d.text for d in telegram.drafts()))
        assert await terminated(process, grace) == 0

    assert bot_texts(telegram) == ["A short answer, finished."]
    assert await stored_answers(config) == [("A short answer, finished.", "complete")]


@pytest.mark.both_databases
async def test_a_message_queued_at_sigterm_is_kept_and_without_resuming_asked_for_again(
    telegram, provider, config, tmp_path
):
    async with bot_process(
        tmp_path,
        telegram,
        provider,
        config,
        streaming={"shutdown_grace": GRACE, "resume_within": 0},
    ) as process:
        await answer_held_open(telegram, provider, "first question", "The first answer")
        telegram.user_sends("second question")
        queued = message_text("queued", "en")
        await until(lambda: queued in bot_texts(telegram))
        assert await terminated(process, GRACE) == 0

    restarting = message_text("restarting", "en")
    texts = bot_texts(telegram)
    assert queued in texts
    assert restarting in texts
    (answer,) = [t for t in texts if t.startswith("The first answer")]
    assert answer.endswith(message_text("note.shutdown", "en"))
    # The queued message never reached the provider, but it is not lost.
    assert len(provider.requests) == 1
    assert [text for text, _ in await stored_questions(config)] == [
        "first question",
        "second question",
    ]
    assert await stored_answers(config) == [("The first answer", "interrupted")]
    (note,) = [m for m in telegram.messages(USER, from_bot=True) if m.text == restarting]
    second = next(m for m in telegram.messages(USER, from_bot=False) if m.text == "second question")
    assert note.reply_to_message_id == second.message_id


async def test_an_answer_not_begun_when_the_bot_stops_without_resuming_asks_to_send_again(
    telegram, provider, config_for, start_bot
):
    config = config_for(streaming={"shutdown_grace": 0, "resume_within": 0})
    async with start_bot(config):
        provider.enqueue(Delay(60), Role(), Chunk("never shown"))
        telegram.user_sends("Are you there?")
        await until(lambda: len(provider.requests) == 1)

    assert bot_texts(telegram) == [message_text("restarting", "en")]
    assert await stored_answers(config) == [("", "interrupted")]
    assert [text for text, _ in await stored_questions(config)] == ["Are you there?"]


async def test_no_secret_reaches_the_log_even_at_debug_level(
    telegram, provider, config, start_bot, capsys
):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging(config, logging.DEBUG)
    try:
        async with start_bot(config):
            provider.enqueue_error(401, {"error": {"message": f"bad key {API_KEY}"}})
            telegram.user_sends("first")
            await until(lambda: len(bot_texts(telegram)) == 1)
            provider.enqueue_stream(["Fine."])
            telegram.user_sends("second")
            await until(lambda: "Fine." in bot_texts(telegram))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    output = capsys.readouterr()
    log = output.out + output.err
    assert "POST" in log or "sendMessage" in log, "DEBUG logging should have been captured"
    assert TOKEN not in log
    assert API_KEY not in log
    assert TOKEN.split(":")[1] not in log


async def test_no_secret_reaches_the_log_in_groups_refusals_and_repeated_updates(
    telegram, provider, config_for, start_bot, capsys
):
    config = config_for(telegram={"allowed_chats": [-1003333]})
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging(config, logging.DEBUG)
    try:
        async with start_bot(config):
            telegram.user_sends("let me in", user_id=99)
            await until(lambda: len(bot_texts(telegram, 99)) == 1)
            bobs = telegram.user_sends("a claim", chat_id=-1003333, user_id=8, first_name="Bob")
            provider.enqueue_stream(["Checked."])
            telegram.user_sends(
                "@test_llm_bot true?", chat_id=-1003333, user_id=7, reply_to_message_id=bobs
            )
            telegram.push_update(telegram.pending_updates[-1])
            await until(lambda: "Checked." in bot_texts(telegram, -1003333))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    output = capsys.readouterr()
    log = output.out + output.err
    assert "refused" in log, "the refusal path should have logged"
    assert "arrived again" in log, "the repeated update path should have logged"
    assert TOKEN not in log
    assert API_KEY not in log
    assert TOKEN.split(":")[1] not in log


async def test_sigterm_cuts_an_image_still_being_made_after_the_grace_period(
    telegram, provider, config, tmp_path
):
    async with bot_process(
        tmp_path, telegram, provider, config, streaming={"shutdown_grace": GRACE}
    ) as process:
        provider.enqueue_images(Delay(60), ImagesAnswer([b64_item()]))
        asked = telegram.user_sends("/image a red fox")
        await until(lambda: len(provider.requests) == 1)
        # Exits on time although the image would take another minute.
        assert await terminated(process, GRACE) == 0

    (note,) = telegram.messages(USER, from_bot=True)
    assert note.text == message_text("restarting", "en")
    assert note.reply_to_message_id == asked
    assert await stored_answers(config) == [("", "interrupted")]
