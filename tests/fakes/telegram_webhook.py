"""Webhook delivery for the fake Bot API: POST each update to the URL given in setWebhook.

Telegram delivers an update by POSTing its JSON to the webhook URL with the header
``X-Telegram-Bot-Api-Secret-Token`` when a secret was set, keeps it until an answer with a
2xx status, and retries it otherwise. Several updates are in flight at once, up to the
webhook's ``max_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

# Seconds before a failed delivery is tried again (Telegram waits longer; tests need speed).
RETRY_SECONDS = 0.2


@dataclass
class WebhookAttempt:
    """One POST of an update to the webhook, and how the bot answered it."""

    update_id: int
    at: float
    status: int | None
    error: str | None = None


@dataclass
class Webhook:
    """What setWebhook registered."""

    url: str
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    attempts: list[WebhookAttempt] = field(default_factory=list)


class WebhookDeliverer:
    """Delivers queued updates to one webhook until they are acknowledged."""

    def __init__(
        self,
        webhook: Webhook,
        take: Callable[[], list[dict[str, Any]]],
        acknowledged: Callable[[int, float], None],
    ) -> None:
        self.webhook = webhook
        self._take = take
        self._acknowledged = acknowledged
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Begin delivering in the background."""
        self._session = aiohttp.ClientSession()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fake-webhook")

    def notify(self) -> None:
        """New updates are queued."""
        self._wake.set()

    async def close(self) -> None:
        """Stop delivering; updates not acknowledged stay queued."""
        tasks = [t for t in (self._task, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.webhook.max_connections)
        while True:
            self._wake.clear()
            for update in self._take():
                update_id = int(update["update_id"])
                if update_id in self._in_flight:
                    continue
                self._in_flight.add(update_id)
                await slots.acquire()
                task = asyncio.get_running_loop().create_task(self._deliver(update, slots))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
            await self._wake.wait()

    async def _deliver(self, update: dict[str, Any], slots: asyncio.Semaphore) -> None:
        update_id = int(update["update_id"])
        headers = {SECRET_HEADER: self.webhook.secret_token} if self.webhook.secret_token else {}
        assert self._session is not None
        try:
            while True:
                at = time.monotonic()
                try:
                    async with self._session.post(
                        self.webhook.url, json=update, headers=headers
                    ) as response:
                        status = response.status
                    self.webhook.attempts.append(WebhookAttempt(update_id, at, status))
                    if 200 <= status < 300:
                        self._acknowledged(update_id, time.monotonic())
                        return
                except aiohttp.ClientError as exc:
                    self.webhook.attempts.append(WebhookAttempt(update_id, at, None, str(exc)))
                await asyncio.sleep(RETRY_SECONDS)
        finally:
            self._in_flight.discard(update_id)
            slots.release()
