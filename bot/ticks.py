"""One grid of ticks for the waits that may end a little late, so that they end together.

Reading a streamed answer and showing a chat's next draft or edit can each wait a moment
longer without anyone noticing; a wake-up of the process cannot be had for free (on a small
virtual machine each costs a few hundred microseconds of CPU, more than the work it wakes
for). Waits that end on the same tick share one timer and one wake-up: a stream's read and
its chat's next update, or the reads of every stream at once.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable

TICK_SECONDS = 0.25
"""The grid: a streamed body is read once a tick, and updates due between ticks wait for
the next one."""

EARLY_SECONDS = 0.01
"""How much before its moment a wait may end, when a tick falls that close before it: a
chat's update due 3 ms after a tick goes on that tick rather than a whole tick later."""


def tick_at(moment: float, period: float = TICK_SECONDS, early: float = EARLY_SECONDS) -> float:
    """The first tick at or after ``moment - early``: when a wait until ``moment`` ends."""
    return math.ceil((moment - early) / period) * period


def next_tick(now: float, period: float = TICK_SECONDS) -> float:
    """The first tick after ``now``."""
    return (math.floor(now / period) + 1) * period


class Ticker:
    """Wakes every waiter of one tick from one timer, on ``clock`` (``time.monotonic``)."""

    def __init__(
        self, period: float = TICK_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.period = period
        self._clock = clock
        self._waiters: dict[float, list[asyncio.Future[None]]] = {}

    @property
    def pending(self) -> int:
        """Ticks with waiters: one timer each, however many wait."""
        return len(self._waiters)

    async def until(self, moment: float) -> None:
        """Sleep until the tick that ends a wait until ``moment`` (see ``tick_at``)."""
        await self._wait(tick_at(moment, self.period))

    async def next(self) -> None:
        """Sleep until the next tick."""
        await self._wait(next_tick(self._clock(), self.period))

    async def _wait(self, tick: float) -> None:
        loop = asyncio.get_running_loop()
        waiters = self._waiters.get(tick)
        if waiters is None:
            waiters = self._waiters[tick] = []
            loop.call_later(max(0.0, tick - self._clock()), self._fire, tick)
        future: asyncio.Future[None] = loop.create_future()
        waiters.append(future)
        # A cancelled waiter's future is cancelled with it; the tick passes it over.
        await future

    def _fire(self, tick: float) -> None:
        for future in self._waiters.pop(tick, ()):
            if not future.done():
                future.set_result(None)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def ticker() -> Ticker:
    """The running loop's ticker, shared by everything that waits on it."""
    loop = asyncio.get_running_loop()
    found = _tickers.get(loop)
    if found is None:
        found = _tickers[loop] = Ticker()
    return found
