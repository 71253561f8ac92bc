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
    """Shows a chat action ("typing" unless told otherwise) until stopped.

    Nothing is sent if it is stopped within ``delay`` seconds of the start.
    """

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        thread_id: int | None = None,
        action: str = ChatAction.TYPING,
        delay: float = FIRST_ACTION_DELAY,
    ) -> None:
        self._bot = bot
        self._delay = delay
        # upload_photo, say, while pictures rather than text are on their way.
        self._action = action
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
        await asyncio.sleep(self._delay)
        while True:
            try:
                await self._bot.send_chat_action(
                    self._chat_id, self._action, message_thread_id=self._thread_id
                )
            except TelegramError as exc:  # cosmetic: never let it disturb the answer
                logger.debug("typing action in chat %s failed: %s", self._chat_id, exc)
            await asyncio.sleep(RENEW_SECONDS)
