"""Calls made at the same moment, run together: a batch at a time, each caller awaiting its
own outcome.

A burst of messages makes a burst of identical writes (quota reservations, settlements).
One transaction for all of them costs about what one costs, where one each would queue
them behind SQLite's single writer and pay a commit apiece.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

logger = logging.getLogger(__name__)


class Batches(Generic[A, R]):
    """Items handed in while a batch runs wait for the next; ``run`` takes a batch (at most
    ``most`` items) in one go and returns an outcome per item, in order.

    If ``run`` raises, each item of the batch is run alone, so that an error reaches only
    the caller it belongs to. An item whose caller stopped waiting before its batch ran is
    left out; one whose caller left while it ran is handed to ``orphaned``.
    """

    def __init__(
        self,
        run: Callable[[Sequence[A]], Awaitable[Sequence[R]]],
        *,
        most: int,
        name: str,
        orphaned: Callable[[R], Awaitable[None]] | None = None,
    ) -> None:
        self._run = run
        self._most = most
        self._name = name
        self._orphaned = orphaned
        self._waiting: list[tuple[A, asyncio.Future[R]]] = []
        self._running: list[tuple[A, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: A) -> R:
        """``item``'s outcome, once its batch has run."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run_waiting(), name=self._name)
            self._runner.add_done_callback(self._ended)
        return await done

    async def _run_waiting(self) -> None:
        """Run the waiting items, a batch at a time, until none wait."""
        while self._waiting:
            self._running = self._waiting[: self._most]
            del self._waiting[: self._most]
            await self._run_batch([entry for entry in self._running if not entry[1].done()])
        # In the same step as the check above: a call from now on starts a runner of its own.
        self._running = []
        self._runner = None

    def _ended(self, runner: asyncio.Task[None]) -> None:
        if self._runner is not runner:
            return  # it ran out of work and let go
        # Cancelled (the loop is closing), perhaps before it began: nobody may wait forever.
        self._runner = None
        for _, done in (*self._running, *self._waiting):
            done.cancel()
        self._running, self._waiting = [], []

    async def _run_batch(self, batch: Sequence[tuple[A, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        outcomes: Sequence[R | Exception]
        try:
            outcomes = await self._run([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                for entry in batch:
                    await self._run_batch([entry])
                return
            outcomes = [exc]
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if not done.done():
                if isinstance(outcome, Exception):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
            elif self._orphaned is not None and not isinstance(outcome, Exception):
                try:
                    await self._orphaned(outcome)
                except Exception:
                    logger.exception("%s: could not undo an outcome nobody waited for", self._name)
