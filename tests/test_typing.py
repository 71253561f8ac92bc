"""The typing indicator, driven by the real ``Bot`` against the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from telegram import Bot

from bot.streaming.typing import FIRST_ACTION_DELAY, TypingIndicator
from tests.fakes.telegram import DEFAULT_TOKEN, FakeTelegram

USER = 42


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=DEFAULT_TOKEN) as fake:
        yield fake


@pytest.fixture
async def ptb(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(DEFAULT_TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        yield bot


async def test_an_answer_that_starts_at_once_sends_no_chat_action(
    tg: FakeTelegram, ptb: Bot
) -> None:
    typing = TypingIndicator(ptb, USER)
    typing.start()
    await asyncio.sleep(0)

    await typing.stop()

    await asyncio.sleep(FIRST_ACTION_DELAY * 2)
    assert tg.calls_to("sendChatAction") == []


async def test_a_slow_answer_shows_typing_in_its_chat_and_topic(tg: FakeTelegram, ptb: Bot) -> None:
    typing = TypingIndicator(ptb, USER, thread_id=7)
    typing.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not tg.calls_to("sendChatAction"):
            assert asyncio.get_running_loop().time() < deadline, "no chat action was sent"
            await asyncio.sleep(0.02)
    finally:
        await typing.stop()

    [call] = tg.calls_to("sendChatAction")
    assert call.params == {"chat_id": USER, "action": "typing", "message_thread_id": 7}
