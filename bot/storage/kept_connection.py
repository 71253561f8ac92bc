"""One PostgreSQL connection kept open in the background, opened again whenever it is lost.

For what lives only as long as a session (advisory locks, ``LISTEN``): the owner is told
each time a connection opens, to set that up again on it. A lost connection is noticed at
once through the driver's termination callback, or at the next periodic check of a quiet
one; it is then opened again after a short pause, warning once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.pool import NullPool

from bot.storage.db import create_engine

logger = logging.getLogger(__name__)

# Given the raw driver connection just opened, before anyone else may use it.
Connected = Callable[[Any], Awaitable[None]]


class ConnectionLost(Exception):
    """The kept connection is not open (it is being opened again)."""


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    """A callback that sets ``event``, whatever it is called with."""

    def set_event(_source: object) -> None:
        event.set()

    return set_event


class KeptConnection:
    """A dedicated connection of its own, reopened when lost; ``connected`` runs on each."""

    def __init__(
        self,
        url: str,
        name: str,
        connected: Connected,
        *,
        reconnect_seconds: float,
        check_seconds: float,
    ) -> None:
        # Not pooled: a pooled connection would go back to a pool with its session state
        # (locks, listeners) still attached.
        self._engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.name = name
        self._connected = connected
        self._reconnect_seconds = reconnect_seconds
        self._check_seconds = check_seconds
        self._driver: Any = None
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        # One statement at a time on a connection.
        self._using = asyncio.Lock()
        self.losses = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection is open and set up now."""
        return self._ready.is_set()

    async def wait_open(self) -> None:
        """Return once the connection is open and set up."""
        await self._ready.wait()

    def start(self) -> None:
        """Open the connection, and keep it open, in the background."""
        self._task = asyncio.get_running_loop().create_task(self._keep(), name=self.name)

    async def aclose(self) -> None:
        """Stop keeping the connection and close it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._engine.dispose()

    async def fetchval(self, query: str, *args: object) -> Any:
        """Run ``query`` on the open connection; a failure means it is lost."""
        async with self._using:
            driver, lost = self._driver, self._lost
            if driver is None:
                raise ConnectionLost(self.name)
            try:
                return await driver.fetchval(query, *args)
            except Exception:
                lost.set()
                raise

    async def _keep(self) -> None:
        """Keep the connection open and set up, and notice at once when it is lost."""
        warned = False
        while True:
            try:
                async with self._engine.connect() as connection:
                    raw = await connection.get_raw_connection()
                    driver: Any = raw.driver_connection
                    self._lost = lost = asyncio.Event()
                    driver.add_termination_listener(_setter(lost))
                    await self._connected(driver)
                    self._driver = driver
                    self._ready.set()
                    if warned:
                        logger.info("%s is back", self.name)
                    warned = False
                    try:
                        await self._watch(lost)
                    finally:
                        self._ready.clear()
                        self._driver = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure here means: try again shortly
                if not warned:
                    logger.warning("%s lost its database connection: %r", self.name, exc)
                warned = True
            else:
                if not warned:
                    logger.warning("%s lost its database connection", self.name)
                warned = True
            self.losses += 1
            await asyncio.sleep(self._reconnect_seconds)

    async def _watch(self, lost: asyncio.Event) -> None:
        """Return when the connection is lost; a quiet one is checked now and then."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_seconds):
                    await lost.wait()
            if lost.is_set():
                return
            with contextlib.suppress(Exception):  # a failure sets ``lost``
                await self.fetchval("SELECT 1")
