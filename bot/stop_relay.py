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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.pool import NullPool

from bot.inflight import StopOutcome, StopSignals
from bot.storage.db import create_engine

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


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    """A callback that sets ``event``, whatever it is called with."""

    def set_event(_source: object) -> None:
        event.set()

    return set_event


class StopRelay:
    """Carries Stop presses between instances over PostgreSQL ``LISTEN``/``NOTIFY``."""

    def __init__(self, url: str, signals: StopSignals) -> None:
        # Its own connection, opened and closed with the listener: a pooled one would go
        # back to a pool with the listener still attached.
        self._engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._signals = signals
        self._instance = uuid.uuid4().hex
        self._connection: Any = None
        self._lost = asyncio.Event()
        self._using = asyncio.Lock()
        self._listening = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[StopOutcome]] = {}
        self._replies: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen in the background; return once listening (or after the first failure)."""
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="stop-relay")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLY_SECONDS):
                await self._listening.wait()

    async def aclose(self) -> None:
        """Stop listening and close the connection."""
        tasks = [t for t in (self._task, *self._replies) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._engine.dispose()

    async def request(
        self, answer_id: int, user_id: int | None, *, privileged: bool
    ) -> StopOutcome:
        """Ask the other instances to stop ``answer_id``; FINISHED if none streams it."""
        if self._connection is None:
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
        """Run ``query`` on the listening connection; a failure means it is lost."""
        connection, lost = self._connection, self._lost
        if connection is None:
            return
        # One connection runs one statement at a time; replies and asks may meet here.
        async with self._using:
            try:
                await connection.execute(query, *args)
            except Exception:
                lost.set()
                raise

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

    async def _listen(self) -> None:
        """Keep one connection listening; reconnect when it is lost."""
        warned = False
        while True:
            try:
                async with self._engine.connect() as connection:
                    raw = await connection.get_raw_connection()
                    driver: Any = raw.driver_connection
                    self._lost = lost = asyncio.Event()
                    driver.add_termination_listener(_setter(lost))
                    await driver.add_listener(CHANNEL, self._received)
                    self._connection = driver
                    self._listening.set()
                    if warned:
                        logger.info("relaying stops between instances again")
                    warned = False
                    try:
                        await self._watch(lost)
                    finally:
                        self._connection = None
                        self._listening.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure here means: try again later
                if not warned:
                    logger.warning("stop relay lost its database connection: %r", exc)
                warned = True
            else:
                if not warned:
                    logger.warning("stop relay lost its database connection")
                warned = True
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _watch(self, lost: asyncio.Event) -> None:
        """Return when the connection is lost; a quiet one is checked now and then."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_SECONDS):
                    await lost.wait()
            if lost.is_set():
                return
            with contextlib.suppress(Exception):  # a failure sets ``lost``
                await self._execute("SELECT 1")
