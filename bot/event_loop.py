"""The event loop the bot runs on: uvloop where it is installed, asyncio's own otherwise.

uvloop runs the loop's machinery (scheduling, sockets, timers) in C on libuv; in pure
Python that machinery is the largest part of the bot's CPU per streamed answer.
``BOT_EVENT_LOOP=asyncio`` turns it off, to rule it out when hunting a problem.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

from bot.errors import ConfigError

LOOP_ENV = "BOT_EVENT_LOOP"
# "auto": uvloop if it is installed (it is a dependency except on Windows), else asyncio.
LOOP_CHOICES = ("auto", "uvloop", "asyncio")

LoopName = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def choose_loop(setting: str | None, uvloop_installed: bool) -> LoopName:
    """The loop ``BOT_EVENT_LOOP=setting`` asks for; ConfigError if it cannot be had."""
    choice = (setting or "auto").strip().lower()
    if choice not in LOOP_CHOICES:
        raise ConfigError(LOOP_ENV, f"must be one of {', '.join(LOOP_CHOICES)}, not {setting!r}")
    if choice == "asyncio" or (choice == "auto" and not uvloop_installed):
        return "asyncio"
    if not uvloop_installed:
        raise ConfigError(LOOP_ENV, "uvloop is not installed")
    return "uvloop"


def loop_from(env: Mapping[str, str]) -> LoopName:
    """The loop the environment asks for, given whether uvloop is installed here."""
    return choose_loop(env.get(LOOP_ENV), importlib.util.find_spec("uvloop") is not None)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """The package the running loop comes from: "uvloop" or "asyncio"."""
    return type(loop).__module__.split(".", 1)[0]


def run(main: Coroutine[Any, Any, T], loop: LoopName) -> T:
    """Run ``main`` to completion on a new loop of the kind named, as ``asyncio.run`` does."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
