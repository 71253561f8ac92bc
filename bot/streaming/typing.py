"""Keeps Telegram's "typing…" indicator up while the provider has not answered yet."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import Bot
from telegram.constants import ChatAction
from telegram.error import TelegramError

logger = logging.getLogger(__name__)

# Telegram shows a chat action for about five seconds; renew it a little before that.
RENEW_SECONDS = 4.5
# An answer whose first text follows this soon needs no indicator: it would show for a
# blink, and under a burst of messages the calls compete with the providers' requests.
FIRST_ACTION_DELAY = 0.1


class TypingIndicator:
    """Shows "typing" in a chat until stopped, unless stopped within ``FIRST_ACTION_DELAY``."""

    def __init__(self, bot: Bot, chat_id: int, thread_id: int | None = None) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._thread_id = thread_id
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin showing the indicator."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"typing-{self._chat_id}")

    async def stop(self) -> None:
        """Stop renewing it; Telegram drops it when the answer arrives."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_ACTION_DELAY)
        while True:
            try:
                await self._bot.send_chat_action(
                    self._chat_id, ChatAction.TYPING, message_thread_id=self._thread_id
                )
            except TelegramError as exc:  # cosmetic: never let it disturb the answer
                logger.debug("typing action in chat %s failed: %s", self._chat_id, exc)
            await asyncio.sleep(RENEW_SECONDS)
