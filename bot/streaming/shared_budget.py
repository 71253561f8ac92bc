"""The flood budget shared by every instance of the bot through Redis.

Telegram counts a bot's calls wherever they come from, so instances behind one webhook must
share one budget. One Redis script grants a call atomically: when the chat's interval and
any 429 hold have passed, it books the next of the bot's evenly spaced global slots and the
chat's next slot after it. A must-deliver call may spend the chat's reserve there too, so the
bound of ``ChatBudget`` holds for the chat across all instances. Times are Redis' own clock,
the same for every instance.

When Redis cannot be reached the outbox falls back to its own budget (a warning is logged
once per outage) and Redis is tried again a few seconds later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.streaming.cadence import PENALTY_FACTOR, PENALTY_SECONDS

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

MICROS = 1_000_000
# Seconds without trying Redis after it failed.
RETRY_SECONDS = 5.0
# Seconds to wait for Redis before falling back: flood pacing must never stall the bot.
REDIS_TIMEOUT = 1.0
# The longest sleep between two asks for a chat's slot, so a hold lifted early is noticed.
MAX_WAIT_SECONDS = 5.0

# KEYS: global, chat. ARGV: global spacing, chat interval, the reserve a must-deliver call
# may spend (microseconds; 0 for progress calls), penalty factor. The chat's 'next' is when
# its next evenly spaced call may go; a must-deliver call may go up to the reserve sooner,
# except during a penalty (the same rule as ChatBudget).
# Returns {granted, wait, chat_next, global_next, chat_before} in microseconds, as strings:
# Lua prints numbers with 14 digits, fewer than a microsecond timestamp has.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local chat = redis.call('HMGET', KEYS[2], 'next', 'hold', 'penalty')
local spaced = tonumber(chat[1]) or 0
local penalty = tonumber(chat[3]) or 0
local slack = tonumber(ARGV[3])
if now < penalty then slack = 0 end
local ready = math.max(spaced - slack, tonumber(chat[2]) or 0)
if ready > now then
  return {'0', string.format('%.0f', ready - now), '0', '0', '0'}
end
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1])) or 0)
local global_next = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', global_next),
           'PX', math.ceil((global_next - now) / 1000) + 1000)
local interval = tonumber(ARGV[2])
if slot < penalty then interval = interval * tonumber(ARGV[4]) end
local chat_next = math.floor(math.max(slot, spaced) + interval)
redis.call('HSET', KEYS[2], 'next', string.format('%.0f', chat_next))
local keep = math.max(chat_next, tonumber(chat[2]) or 0, penalty) - now
redis.call('PEXPIRE', KEYS[2], math.ceil(keep / 1000) + 1000)
return {'1', string.format('%.0f', slot - now), string.format('%.0f', chat_next),
        string.format('%.0f', global_next), string.format('%.0f', spaced)}
"""

# KEYS: global, chat. ARGV: the grant's chat_next, global_next, global spacing, whether
# the global slot goes back too (it was not reached), and the chat's 'next' before the
# grant. Undoes what nobody has built on since.
_RELEASE = """
if redis.call('HGET', KEYS[2], 'next') == ARGV[1] then
  redis.call('HSET', KEYS[2], 'next', ARGV[5])
end
if ARGV[4] == '1' and redis.call('GET', KEYS[1]) == ARGV[2] then
  local back = tonumber(ARGV[2]) - tonumber(ARGV[3])
  redis.call('SET', KEYS[1], string.format('%.0f', back), 'KEEPTTL')
end
return 1
"""

# KEYS: chat. ARGV: hold, penalty (microseconds). A 429: nobody calls the chat for a while.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = math.max(tonumber(redis.call('HGET', KEYS[1], 'hold')) or 0, now + tonumber(ARGV[1]))
local penalty = hold + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'hold', string.format('%.0f', hold),
           'penalty', string.format('%.0f', penalty))
redis.call('PEXPIRE', KEYS[1], math.ceil((penalty - now) / 1000) + 1000)
return 1
"""


def namespace(prefix: str, token: str) -> str:
    """The key prefix of one bot: ``prefix`` and the bot's id (the token's public part).

    In braces, so a Redis cluster keeps all of a bot's keys in one slot, as its scripts need.
    """
    bot_id = token.split(":", 1)[0]
    return f"{{{prefix}:{bot_id}}}"


def global_key(space: str) -> str:
    """The key of the bot-wide budget."""
    return f"{space}:global"


def chat_key(space: str, chat_id: int) -> str:
    """The key of one chat's budget."""
    return f"{space}:chat:{chat_id}"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the acquire script said, in seconds and raw microsecond marks."""

    granted: bool
    wait: float
    chat_next: str
    global_next: str
    chat_before: str


def parse_answer(reply: list[Any]) -> Answer:
    """Decode the acquire script's reply (bytes or strings)."""
    granted, wait, chat_next, global_next, chat_before = (_text(item) for item in reply)
    return Answer(granted == "1", int(wait) / MICROS, chat_next, global_next, chat_before)


def _text(item: object) -> str:
    return item.decode() if isinstance(item, bytes) else str(item)


def _retrieve(call: asyncio.Future[Any]) -> BaseException | None:
    """The error a finished call ended with, marked as seen so asyncio does not report it."""
    return asyncio.CancelledError() if call.cancelled() else call.exception()


class Availability:
    """Whether to use Redis now, and when to say that it went away or came back."""

    def __init__(self, retry_seconds: float = RETRY_SECONDS) -> None:
        self.retry_seconds = retry_seconds
        self.down_since: float | None = None
        self._retry_at = 0.0

    def usable(self, now: float) -> bool:
        """Whether to try Redis at ``now``."""
        return now >= self._retry_at

    def failed(self, now: float) -> bool:
        """Record a failure; True if it starts an outage (the moment to warn)."""
        self._retry_at = now + self.retry_seconds
        if self.down_since is not None:
            return False
        self.down_since = now
        return True

    def succeeded(self) -> bool:
        """Record a success; True if it ends an outage."""
        recovered = self.down_since is not None
        self.down_since = None
        self._retry_at = 0.0
        return recovered


class Grant:
    """A slot the shared budget booked for one call."""

    def __init__(self, budget: SharedBudget, chat_id: int, answer: Answer) -> None:
        self._budget = budget
        self._chat_id = chat_id
        self._answer = answer

    async def unused(self) -> None:
        """Nothing was sent: give the chat's slot back."""
        await self._budget.release(self._chat_id, self._answer, global_slot=False)


class SharedBudget:
    """Per-chat intervals, 429 holds and the bot-wide rate, kept in Redis for all instances."""

    def __init__(
        self,
        client: Redis,
        space: str,
        *,
        global_per_second: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._space = space
        self._spacing = round(MICROS / global_per_second)
        self._clock = clock
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._hold = client.register_script(_HOLD)
        self.availability = Availability()
        # Commands and releases that outlive their callers; awaited before closing.
        self._background: set[asyncio.Future[Any]] = set()

    @classmethod
    def from_url(
        cls, url: str, space: str, *, global_per_second: float, timeout: float = REDIS_TIMEOUT
    ) -> SharedBudget:
        """A budget on the Redis at ``url``, failing fast when it does not answer."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # Failing over to the local budget beats retrying while calls queue up.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, space, global_per_second=global_per_second)

    async def aclose(self) -> None:
        """Let commands still running finish, then close the connections to Redis."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=REDIS_TIMEOUT)
        await self._client.aclose()

    async def turn(
        self,
        chat_id: int,
        interval: float,
        *,
        slack: float = 0.0,
        on_wait: Callable[[float], None] | None = None,
    ) -> Grant | None:
        """Wait for the chat's next shared slot; None if Redis is unusable (use the local budget).

        ``interval`` is the chat's spacing after this call; ``slack``, how much sooner than
        that spacing a must-deliver call may go (the chat's reserve), 0 for progress calls.
        ``on_wait`` hears each wait Redis sets, in seconds: when the call may go at the soonest.
        """
        keys = (global_key(self._space), chat_key(self._space, chat_id))
        while True:
            if not self.availability.usable(self._clock()):
                return None
            args = (
                self._spacing,
                round(interval * MICROS),
                round(slack * MICROS),
                PENALTY_FACTOR,
            )
            try:
                reply = await self._run(
                    self._acquire(keys=keys, args=args),
                    # A slot granted after the caller was cancelled is given back.
                    on_orphan=lambda done: self._give_back(chat_id, done),
                )
            except Exception as exc:  # redis, socket and timeout errors alike
                self._failed(exc)
                return None
            self._succeeded()
            answer = parse_answer(reply)
            if on_wait is not None:
                on_wait(answer.wait)
            if not answer.granted:
                await asyncio.sleep(min(answer.wait, MAX_WAIT_SECONDS))
                continue
            try:
                await asyncio.sleep(answer.wait)
            except asyncio.CancelledError:
                await asyncio.shield(self.release(chat_id, answer, global_slot=True))
                raise
            return Grant(self, chat_id, answer)

    async def hold(self, chat_id: int, seconds: float) -> None:
        """Hold the chat for ``seconds`` on every instance (Telegram answered 429)."""
        if not self.availability.usable(self._clock()):
            return
        try:
            await self._run(
                self._hold(
                    keys=(chat_key(self._space, chat_id),),
                    args=(round(seconds * MICROS), round(PENALTY_SECONDS * MICROS)),
                )
            )
        except Exception as exc:
            self._failed(exc)

    async def release(self, chat_id: int, answer: Answer, *, global_slot: bool) -> None:
        """Give back a grant's chat slot, and its global slot if ``global_slot``."""
        try:
            await self._run(
                self._release(
                    keys=(global_key(self._space), chat_key(self._space, chat_id)),
                    args=(
                        answer.chat_next,
                        answer.global_next,
                        self._spacing,
                        int(global_slot),
                        answer.chat_before,
                    ),
                )
            )
        except Exception as exc:
            self._failed(exc)

    async def _run(
        self,
        command: Awaitable[Any],
        on_orphan: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> Any:
        """Await a Redis command so that a cancelled caller is always told so.

        redis-py can hand a reply to a task that was cancelled meanwhile, swallowing the
        cancellation; an editor being closed would then never stop. The command runs apart
        and the caller waits through a shield, which always raises when cancelled.
        """
        call = asyncio.ensure_future(command)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            self._background.add(call)
            call.add_done_callback(self._background.discard)
            call.add_done_callback(on_orphan or _retrieve)
            raise

    def _give_back(self, chat_id: int, call: asyncio.Future[Any]) -> None:
        """Release the slot an acquire granted after its caller had gone."""
        if _retrieve(call) is not None:
            return
        answer = parse_answer(call.result())
        if answer.granted:
            task = asyncio.get_running_loop().create_task(
                self.release(chat_id, answer, global_slot=True)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _failed(self, exc: Exception) -> None:
        if self.availability.failed(self._clock()):
            logger.warning(
                "shared flood budget in Redis unreachable (%r); using this instance's own", exc
            )

    def _succeeded(self) -> None:
        if self.availability.succeeded():
            logger.info("shared flood budget in Redis reachable again")
