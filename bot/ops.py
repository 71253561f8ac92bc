"""The operator's HTTP endpoints: ``/healthz`` for load balancers and ``/metrics``.

``/healthz`` answers 200 once the bot is receiving updates and 503 while it starts or stops,
so a load balancer sends webhook traffic only to instances that will handle it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from bot.metrics import CONTENT_TYPE, Metrics

logger = logging.getLogger(__name__)


@dataclass
class Readiness:
    """Whether this instance takes updates now, and what to say about it."""

    ready: bool = False
    mode: str = "polling"
    username: str | None = None
    # Where /healthz and /metrics are served, once they are.
    ops_port: int | None = None


class OpsServer:
    """A small aiohttp server for ``/healthz`` and ``/metrics``."""

    def __init__(self, readiness: Readiness, metrics: Metrics) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self, listen: str, port: int) -> int:
        """Listen on ``listen:port`` (0 picks a free port); return the bound port."""
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, listen, port)
        await site.start()
        bound = int(self._runner.addresses[0][1])
        logger.info("health and metrics on http://%s:%d/healthz and /metrics", listen, bound)
        return bound

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _request: web.Request) -> web.Response:
        readiness = self.readiness
        body = {
            "status": "ready" if readiness.ready else "not ready",
            "mode": readiness.mode,
            "bot": readiness.username,
        }
        return web.json_response(body, status=200 if readiness.ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
