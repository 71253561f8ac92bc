"""Every message-producing Telegram call goes through here, within the flood budget.

One chat's 429 holds that chat only; the rest of the bot keeps going (PTB's own
AIORateLimiter halts every request instead). Calls of one chat go out one at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from functools import partial
from typing import NamedTuple, TypeVar

from telegram.constants import FloodLimit
from telegram.error import RetryAfter
from telegram.warnings import PTBDeprecationWarning

from bot.streaming.cadence import ChatBudget, GlobalBudget
from bot.streaming.shared_budget import Grant, SharedBudget

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The longest we sit out one 429 before trying again; Telegram has asked for minutes.
MAX_HOLD_SECONDS = 300.0
# Past this many chats, idle ones are forgotten so a busy bot's memory stays flat.
PRUNE_ABOVE_CHATS = 5000


def retry_after_seconds(exc: RetryAfter) -> float:
    """The wait a ``RetryAfter`` asks for, in seconds, whichever type PTB hands out."""
    with warnings.catch_warnings():
        # PTB 22 warns on reading the int form; both forms are handled here.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    return min(max(seconds, 0.0), MAX_HOLD_SECONDS)


class NextSlots(NamedTuple):
    """When a chat's next progress call may go out, and how far apart its calls are."""

    until: float
    """Seconds from now: the chat's own budget, or when its waiting call goes."""
    spacing: float
    call_waiting: bool
    """Whether a call of the chat is already waiting for that moment (with its timer)."""


class Outbox:
    """Paces Telegram calls per chat and for the whole bot."""

    def __init__(
        self,
        *,
        private_interval: float,
        group_interval: float,
        global_per_second: float = FloodLimit.MESSAGES_PER_SECOND,
        final_burst: int = 0,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedBudget | None = None,
    ) -> None:
        self._private_interval = private_interval
        self._group_interval = group_interval
        # Calls per chat held back for must-deliver ones, so a final text never waits a
        # whole interval behind the last draft.
        self._final_burst = final_burst
        self._global = GlobalBudget(global_per_second)
        self._clock = clock
        # With several instances, the budget they share replaces the global one here.
        self._shared = shared
        self._budgets: dict[int, ChatBudget] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # Chat -> when its waiting call goes (its own budget's time, then the bot's slot),
        # so that the reader of its answer knows when the text is used.
        self._due: dict[int, float] = {}
        self.retry_afters = 0
        self.waiting = 0
        """Calls waiting for their chat's or the bot's budget now."""

    async def _wait_for_slot(
        self, chat_id: int, budget: ChatBudget, interval: float | None, *, must_deliver: bool
    ) -> Grant | None:
        """Sleep until the chat and the bot may spend a call; the shared grant, if any."""
        now = self._clock()
        delay = budget.delay(now, must_deliver=must_deliver)
        self._due[chat_id] = now + delay
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if self._shared is not None:
                spacing = budget.interval if interval is None else interval
                # Redis applies the same reserve, and empties it during a penalty itself.
                slack = budget.reserve * budget.interval if must_deliver else 0.0
                grant = await self._shared.turn(
                    chat_id, spacing, slack=slack, on_wait=partial(self._due_in, chat_id)
                )
                if grant is not None:
                    return grant
            slot = self._global.reserve(self._clock(), chat_id)
            self._due[chat_id] = slot
            try:
                await asyncio.sleep(slot - self._clock())
            except asyncio.CancelledError:
                self._global.release(slot, chat_id=chat_id, now=self._clock())
                raise
            return None
        finally:
            del self._due[chat_id]

    def _due_in(self, chat_id: int, seconds: float) -> None:
        """The waiting call of the chat goes in ``seconds`` at the soonest (Redis said so)."""
        self._due[chat_id] = self._clock() + seconds

    def next_slots(self, chat_id: int, interval: float | None = None) -> NextSlots:
        """When the chat's next progress call may go out, and whether one is waiting for it.

        That is the chat's own budget, or the bot's slot its waiting call already holds (with
        Redis, the soonest its shared slot may come).
        ``interval`` is the spacing the chat's calls use, if not the chat's own.
        """
        budget = self._budget(chat_id)
        now = self._clock()
        spacing = budget.spacing(now, interval)
        due = self._due.get(chat_id)
        if due is not None:
            return NextSlots(max(0.0, due - now), spacing, call_waiting=True)
        return NextSlots(budget.delay(now), spacing, call_waiting=False)

    def _budget(self, chat_id: int) -> ChatBudget:
        budget = self._budgets.get(chat_id)
        if budget is None:
            if len(self._budgets) >= PRUNE_ABOVE_CHATS:
                self._prune()
            # Positive ids are users (private chats); groups and channels are negative.
            interval = self._private_interval if chat_id > 0 else self._group_interval
            budget = self._budgets[chat_id] = ChatBudget(interval, self._final_burst)
        return budget

    def _prune(self) -> None:
        """Forget chats that are idle and owe nothing: no pending call, hold or penalty."""
        now = self._clock()
        for chat_id, budget in list(self._budgets.items()):
            lock = self._locks.get(chat_id)
            if budget.idle(now) and (lock is None or not lock.locked()):
                del self._budgets[chat_id]
                self._locks.pop(chat_id, None)

    async def call(
        self,
        chat_id: int,
        make_call: Callable[[], Awaitable[T | None]],
        *,
        must_deliver: bool,
        interval: float | None = None,
    ) -> T | None:
        """Run ``make_call`` in the chat's next free slot.

        ``make_call`` is invoked only once the slot is granted, so it sends the newest
        state; returning None means it had nothing to send. A 429 holds the chat; the call
        is then retried when ``must_deliver``, otherwise dropped (newer text follows).
        A must-deliver call may spend the chat's reserve and go before the usual spacing.
        ``interval`` replaces the chat's own spacing after this call (drafts animate faster).
        """
        budget = self._budget(chat_id)
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        # Counted as waiting from here until the slot is granted (and again after a 429).
        self.waiting += 1
        waiting = True
        try:
            async with lock:
                while True:
                    if not waiting:
                        self.waiting += 1
                        waiting = True
                    grant = await self._wait_for_slot(
                        chat_id, budget, interval, must_deliver=must_deliver
                    )
                    self.waiting -= 1
                    waiting = False
                    try:
                        result = await make_call()
                    except asyncio.CancelledError:
                        # Cut off in flight, the call may still reach Telegram (the editor
                        # lets its update land): it counts, or the next would come too soon.
                        budget.sent(self._clock(), interval)
                        raise
                    except RetryAfter as exc:
                        seconds = retry_after_seconds(exc)
                        self.retry_afters += 1
                        budget.retry_after(self._clock(), seconds)
                        logger.warning(
                            "429 from Telegram in chat %s: holding %.0fs", chat_id, seconds
                        )
                        if self._shared is not None:
                            await self._shared.hold(chat_id, seconds)
                        if must_deliver:
                            continue
                        return None
                    if result is not None:
                        budget.sent(self._clock(), interval)
                    elif grant is not None:
                        await grant.unused()
                    return result
        finally:
            if waiting:
                self.waiting -= 1
