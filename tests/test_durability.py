"""Nothing is lost: a bot process killed mid-answer, and secrets kept out of the logs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import yaml

from bot.logs import setup_logging
from tests.factories import API_KEY, MODEL, TOKEN
from tests.fakes.provider import Chunk, Delay, Role
from tests.test_chat_e2e import answers_once_stored, bot_texts, until

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, telegram, provider, database: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "telegram": {
                    "token": "${TEST_BOT_TOKEN}",
                    "base_url": telegram.base_url,
                    "base_file_url": telegram.base_file_url,
                    "poll_timeout": 1,
                },
                "database": {"url": f"sqlite+aiosqlite:///{database}"},
                "providers": [
                    {
                        "name": "fake",
                        "kind": "openai",
                        "base_url": provider.base_url,
                        "api_key": "${TEST_API_KEY}",
                    }
                ],
                "models": {"chat": MODEL},
            }
        )
    )
    return path


async def test_an_answer_cut_by_a_killed_process_is_sent_with_a_note_after_restart(
    telegram, provider, config, start_bot, tmp_path
):
    config_file = write_config(
        tmp_path / "config.yaml", telegram, provider, Path(config.database.url.split("///")[1])
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--config",
        str(config_file),
        cwd=ROOT,
        env={**os.environ, "TEST_BOT_TOKEN": TOKEN, "TEST_API_KEY": API_KEY},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        provider.enqueue(Role(), Chunk("The beginning of a long answer"), Delay(60))
        await telegram.wait_until_polling(timeout=30)
        telegram.user_sends("Tell me a long story")
        await until(lambda: any("The beginning" in d.text for d in telegram.drafts()))
        # The checkpoint follows the visible update; give it a moment to commit.
        await asyncio.sleep(0.5)
    finally:
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
