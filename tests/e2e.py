"""What the end-to-end tests read from the fakes: waiting on them, the bot's texts, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.fakes.telegram import FakeTelegram

USER = 42


async def until(predicate: Callable[..., bool], timeout: float = 15.0) -> None:
    """Poll a cheap condition on state the test owns (the fakes' records) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def bot_texts(telegram: FakeTelegram, chat_id: int = USER) -> list[str]:
    """The final text of every message the bot sent in the chat, in order."""
    return [m.text for m in telegram.messages(chat_id) if m.from_bot]


def metric_samples(exposition: str) -> dict[str, float]:
    """``name{labels}`` -> value, from Prometheus' text format."""
    samples = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
