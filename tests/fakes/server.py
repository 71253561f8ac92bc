"""The lifecycle every fake HTTP server shares: an aiohttp app on a free 127.0.0.1 port."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from aiohttp import web

LISTEN_BACKLOG = 1024
"""Connections the kernel queues for the fake before refusing more. aiohttp's default, 128,
overflows when hundreds of chats connect at once (the stream bench's 300): the dropped
connection attempts are retried a second later, which then shows as the bot's overhead,
where a real provider's front end would have taken them."""


class LoopbackServer(ABC):
    """Serves the routes ``add_routes`` declares for the length of an ``async with``."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port = 0

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Declare the server's routes."""

    async def __aenter__(self) -> Self:
        app = web.Application()
        self.add_routes(app)
        # Cancel handlers whose client went away, so a scripted delay cannot hold shutdown.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=LISTEN_BACKLOG)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The port the server listens on (0 before ``async with``)."""
        return self._port
