"""What the end-to-end tests read: waiting on the fakes, the bot's texts, the stored answers,
/metrics."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable

from sqlalchemy import select

from bot.config import Config
from bot.handlers.context import SERVICES_KEY, BotApplication
from bot.storage.db import create_engine
from bot.storage.models import Message
from tests.fakes.provider import Chunk, Delay, FakeProvider, Role
from tests.fakes.telegram import FakeTelegram

USER = 42


async def until(predicate: Callable[..., bool], timeout: float = 15.0) -> None:
    """Poll a cheap condition on state the test owns (the fakes' records) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def turn_over(
    application: BotApplication, chat_id: int = USER, thread_id: int | None = None
) -> None:
    """Wait until no turn holds the conversation: the final text shows before the turn ends,
    and a message sent in between would be queued behind it, with a notice."""
    conversations = application.bot_data[SERVICES_KEY].conversations
    await until(lambda: not conversations.busy((chat_id, thread_id)))


def bot_texts(telegram: FakeTelegram, chat_id: int = USER) -> list[str]:
    """The final text of every message the bot sent in the chat, in order."""
    return [m.text for m in telegram.messages(chat_id) if m.from_bot]


async def stored_answers(database: Config | str) -> list[tuple[str, str]]:
    """``(content, status)`` of every stored answer in the bot's database (or the one at
    that URL), oldest first."""
    return await _stored(database, "assistant")


async def stored_questions(database: Config | str) -> list[tuple[str, str]]:
    """``(content, status)`` of every stored user's message, oldest first."""
    return await _stored(database, "user")


async def _stored(database: Config | str, role: str) -> list[tuple[str, str]]:
    engine = create_engine(database if isinstance(database, str) else database.database.url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(Message.content, Message.status)
                .where(Message.role == role)
                .order_by(Message.id)
            )
            return [(row.content, row.status) for row in rows]
    finally:
        await engine.dispose()


async def answers_once_stored(
    config: Config, count: int, timeout: float = 10.0
) -> list[tuple[str, str]]:
    """The stored answers, once ``count`` of them are no longer streaming."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answers = await stored_answers(config)
        if sum(status != "streaming" for _, status in answers) >= count:
            return answers
        assert asyncio.get_running_loop().time() < deadline, f"answers not stored: {answers}"
        await asyncio.sleep(0.05)


async def stored_messages(config: Config) -> list[tuple[str, str, str, str]]:
    """Every stored message as (kind, role, content, status), in order."""
    engine = create_engine(config.database.url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(Message.kind, Message.role, Message.content, Message.status).order_by(
                    Message.id
                )
            )
            return [(row.kind, row.role, row.content, row.status) for row in rows]
    finally:
        await engine.dispose()


async def stored_once_finished(
    config: Config, answers: int, timeout: float = 10.0
) -> list[tuple[str, str, str, str]]:
    """The stored messages once ``answers`` answers are no longer streaming."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await stored_messages(config)
        done = [r for r in rows if r[1] == "assistant" and r[3] != "streaming"]
        if len(done) >= answers:
            return rows
        assert asyncio.get_running_loop().time() < deadline, f"answers not stored: {rows}"
        await asyncio.sleep(0.05)


def stop_data(telegram: FakeTelegram, chat_id: int):
    """The callback data of the Stop button under the bot's newest message, if any."""
    for message in reversed(telegram.messages(chat_id)):
        markup = message.reply_markup
        if message.from_bot and markup:
            return markup["inline_keyboard"][0][0]["callback_data"], message.message_id
    return None


def metric_samples(exposition: str) -> dict[str, float]:
    """``name{labels}`` -> value, from Prometheus' text format."""
    samples = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


# Below Linux's ephemeral range (32768 and up): no outgoing connection of another test can
# take the port between the check here and the server binding it.
_LISTEN_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, for a server a test starts later."""
    while True:
        port = random.choice(_LISTEN_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def answer_held_open(
    telegram: FakeTelegram, provider: FakeProvider, question: str, shown: str
) -> None:
    """Ask ``question``; return once ``shown``, the start of an answer that does not end
    for a minute, is drafted in the chat."""
    provider.enqueue(Role(), Chunk(shown), Delay(60))
    telegram.user_sends(question)
    await until(lambda: any(shown in draft.text for draft in telegram.drafts()))
