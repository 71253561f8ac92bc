"""Stop presses that reach another instance than the one streaming the answer.

Instances sharing one PostgreSQL database talk over ``LISTEN``/``NOTIFY`` on one channel.
An instance that does not stream the answer named by a Stop press asks the others; the one
streaming it stops it (if the presser may) and says how it went. No answer within a few
seconds means no instance streams it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from bot.inflight import StopOutcome, StopSignals
from bot.storage.kept_connection import KeptConnection

logger = logging.getLogger(__name__)

CHANNEL = "tg_llm_bot_stop"
# How long an instance waits for the one streaming the answer to say what it did.
REPLY_SECONDS = 3.0
# Pause before listening again after the connection was lost.
RECONNECT_SECONDS = 1.0
# How often a quiet connection is checked: a lost one would silently drop every stop.
CHECK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class StopAsk:
    """ "Stop answer ``answer_id`` if you stream it": sent by ``sender`` as ``ask_id``."""

    sender: str
    ask_id: str
    answer_id: int
    user_id: int | None
    privileged: bool


@dataclass(frozen=True, slots=True)
class StopReply:
    """What the instance streaming the answer did about ask ``ask_id`` of ``to``."""

    to: str
    ask_id: str
    outcome: StopOutcome


def encode(message: StopAsk | StopReply) -> str:
    """The NOTIFY payload of ``message``."""
    if isinstance(message, StopAsk):
        return json.dumps(
            {
                "ask": message.ask_id,
                "from": message.sender,
                "answer": message.answer_id,
                "user": message.user_id,
                "privileged": message.privileged,
            }
        )
    return json.dumps({"reply": message.ask_id, "to": message.to, "outcome": message.outcome.value})


def decode(payload: str) -> StopAsk | StopReply | None:
    """The message in a NOTIFY payload; None for anything malformed."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if "ask" in data:
        return _decode_ask(data)
    if "reply" in data:
        return _decode_reply(data)
    return None


def _decode_ask(data: dict[str, Any]) -> StopAsk | None:
    ask_id, sender, answer_id = data.get("ask"), data.get("from"), data.get("answer")
    user_id, privileged = data.get("user"), data.get("privileged")
    if not (isinstance(ask_id, str) and isinstance(sender, str)):
        return None
    if not isinstance(answer_id, int) or not isinstance(privileged, bool):
        return None
    if not (user_id is None or _is_int(user_id)) or isinstance(answer_id, bool):
        return None
    return StopAsk(sender, ask_id, answer_id, user_id, privileged)


def _decode_reply(data: dict[str, Any]) -> StopReply | None:
    ask_id, to, outcome = data.get("reply"), data.get("to"), data.get("outcome")
    if not (isinstance(ask_id, str) and isinstance(to, str) and isinstance(outcome, str)):
        return None
    try:
        return StopReply(to, ask_id, StopOutcome(outcome))
    except ValueError:
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def request_stop(
    signals: StopSignals,
    relay: StopRelay | None,
    answer_id: int,
    user_id: int | None,
    *,
    privileged: bool,
) -> StopOutcome:
    """Stop ``answer_id`` here if it streams here, else on whichever instance streams it."""
    outcome = signals.request(answer_id, user_id, privileged=privileged)
    if outcome is StopOutcome.FINISHED and relay is not None:
        outcome = await relay.request(answer_id, user_id, privileged=privileged)
    return outcome


class StopRelay:
    """Carries Stop presses between instances over PostgreSQL ``LISTEN``/``NOTIFY``."""

    def __init__(self, url: str, signals: StopSignals) -> None:
        self._kept = KeptConnection(
            url,
            "stop relay",
            self._connected,
            reconnect_seconds=RECONNECT_SECONDS,
            check_seconds=CHECK_SECONDS,
        )
        self._signals = signals
        self._instance = uuid.uuid4().hex
        self._waiting: dict[str, asyncio.Future[StopOutcome]] = {}
        self._replies: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen in the background; return once listening (or after the first failure)."""
        self._kept.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLY_SECONDS):
                await self._kept.wait_open()

    async def aclose(self) -> None:
        """Stop listening and close the connection."""
        replies = list(self._replies)
        for task in replies:
            task.cancel()
        await self._kept.aclose()
        for task in replies:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def request(
        self, answer_id: int, user_id: int | None, *, privileged: bool
    ) -> StopOutcome:
        """Ask the other instances to stop ``answer_id``; FINISHED if none streams it."""
        if not self._kept.is_open:
            return StopOutcome.FINISHED
        ask = StopAsk(self._instance, uuid.uuid4().hex, answer_id, user_id, privileged)
        reply: asyncio.Future[StopOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[ask.ask_id] = reply
        try:
            await self._notify(encode(ask))
            async with asyncio.timeout(REPLY_SECONDS):
                return await reply
        except TimeoutError:
            return StopOutcome.FINISHED
        finally:
            del self._waiting[ask.ask_id]

    async def _notify(self, payload: str) -> None:
        try:
            await self._execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        except Exception as exc:  # the driver's errors share no base class
            logger.warning("could not relay a stop to the other instances: %r", exc)

    async def _execute(self, query: str, *args: object) -> None:
        """Run ``query`` on the listening connection, if it is open."""
        if self._kept.is_open:
            await self._kept.fetchval(query, *args)

    async def _connected(self, driver: Any) -> None:
        """Listen on a connection just opened."""
        await driver.add_listener(CHANNEL, self._received)

    def _received(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        message = decode(payload)
        if isinstance(message, StopReply):
            waiting = self._waiting.get(message.ask_id)
            if message.to == self._instance and waiting is not None and not waiting.done():
                waiting.set_result(message.outcome)
        elif isinstance(message, StopAsk) and message.sender != self._instance:
            outcome = self._signals.request(
                message.answer_id, message.user_id, privileged=message.privileged
            )
            # Only the instance streaming the answer speaks; the others stay silent.
            if outcome is not StopOutcome.FINISHED:
                reply = encode(StopReply(message.sender, message.ask_id, outcome))
                task = asyncio.get_running_loop().create_task(self._notify(reply))
                self._replies.add(task)
                task.add_done_callback(self._replies.discard)
