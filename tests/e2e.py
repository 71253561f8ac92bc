"""What the end-to-end tests read from the fakes: waiting on them, the bot's texts, /metrics."""

from __future__ import annotations

import asyncio
import random
import socket
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
