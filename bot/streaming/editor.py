"""Shows one growing answer in Telegram: send on the first text, then edit on a cadence.

The provider side only calls ``append`` with each new piece; a background task sends the
newest text whenever the outbox grants the chat a slot, so pending edits coalesce and a
slow Telegram never slows the provider stream. ``finish`` always delivers the final text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, MessageEntity, ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, TelegramError

from bot.streaming.outbox import Outbox
from bot.streaming.render import Rendered, append_note, render_markdown
from bot.streaming.split import split_rendered

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, tuple[int, ...]], Awaitable[None]]

# Network failures on the final text are retried this many times before giving up.
FINAL_ATTEMPTS = 4


class StreamEditor:
    """Delivers one answer into one chat, splitting it over several messages if long."""

    def __init__(
        self,
        bot: Bot,
        outbox: Outbox,
        chat_id: int,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
        on_progress: ProgressCallback | None = None,
        adopt_message_ids: Sequence[int] = (),
    ) -> None:
        self._bot = bot
        self._outbox = outbox
        self._chat_id = chat_id
        self._reply_to = reply_to
        self._thread_id = thread_id
        self._on_progress = on_progress
        # The answer's pieces, joined only when a slot comes (once a second, not per chunk).
        self._pieces: list[str] = []
        self._version = 0
        self._joined = ("", 0)
        self._note: str | None = None
        # Messages already in the chat (from before a restart) are reused, their text unknown.
        self._sent: list[tuple[int, Rendered]] = [(i, Rendered("")) for i in adopt_message_ids]
        # (version, note) that Telegram shows in full, and whether parts still differ.
        self._synced: tuple[int, str | None] = (0, None)
        self._more = False
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dead = False

    @property
    def chat_id(self) -> int:
        """The chat the answer goes to."""
        return self._chat_id

    @property
    def thread_id(self) -> int | None:
        """The forum topic the answer goes to, if any."""
        return self._thread_id

    @property
    def message_ids(self) -> tuple[int, ...]:
        """The Telegram messages the answer occupies so far."""
        return tuple(message_id for message_id, _ in self._sent)

    @property
    def text(self) -> str:
        """The answer so far, as Markdown."""
        text, version = self._joined
        if version != self._version:
            text = "".join(self._pieces)
            self._pieces[:] = [text]
            self._joined = (text, self._version)
        return text

    def append(self, piece: str) -> None:
        """Add a piece of the answer; it goes out at the chat's next slot."""
        self._pieces.append(piece)
        self._version += 1
        if self._dead:
            return
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.create_task(self._flush_loop(), name=f"editor-{self._chat_id}")

    async def finish(self, *, note: str | None = None, text: str | None = None) -> tuple[int, ...]:
        """Deliver the answer (``text`` if given), with an optional italic note; return its ids."""
        await self.aclose()
        if text is not None:
            self._pieces[:] = [text]
            self._version += 1
        self._note = note
        for attempt in range(FINAL_ATTEMPTS):
            try:
                while self._pending():
                    await self._outbox.call(self._chat_id, self._sync_next_part, must_deliver=True)
                break
            except NetworkError as exc:  # TimedOut included; a lost final must be retried
                logger.warning("final delivery to chat %s failed: %s", self._chat_id, exc)
                await asyncio.sleep(0.5 * 2**attempt)
        return self.message_ids

    async def aclose(self) -> None:
        """Stop the background flushing without delivering anything more."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self._pending():
                continue
            try:
                sent = await self._outbox.call(
                    self._chat_id, self._sync_next_part, must_deliver=False
                )
            except NetworkError as exc:
                # A failed intermediate edit is superseded by the next one.
                logger.info("edit in chat %s failed: %s", self._chat_id, exc)
                sent = None
            if self._pending():
                self._dirty.set()
            if sent and self._on_progress is not None:
                await self._on_progress(self.text, self.message_ids)

    def _pending(self) -> bool:
        """Whether Telegram shows something other than the newest text."""
        return not self._dead and (self._more or self._synced != (self._version, self._note))

    async def _sync_next_part(self) -> bool | None:
        """Send or edit the first part that differs from what Telegram shows; None if none."""
        state = (self._version, self._note)
        rendered = render_markdown(self.text)
        if self._note:
            rendered = append_note(rendered, self._note)
        parts = [part for part in split_rendered(rendered) if part.text.strip()]
        for index, part in enumerate(parts):
            if index < len(self._sent) and self._sent[index][1] == part:
                continue
            if index < len(self._sent):
                await self._edit(index, part)
            else:
                await self._send(part)
            # Only a call that went through counts; a 429 leaves the state pending.
            self._more = index < len(parts) - 1
            if not self._more:
                self._synced = state
            return True
        self._synced, self._more = state, False
        return None

    async def _send(self, part: Rendered) -> None:
        reply = None
        if not self._sent and self._reply_to is not None:
            reply = ReplyParameters(self._reply_to, allow_sending_without_reply=True)
        try:
            message = await self._bot.send_message(
                self._chat_id,
                part.text,
                entities=_entities(part),
                reply_parameters=reply,
                message_thread_id=self._thread_id,
            )
        except BadRequest as exc:
            if not _is_entity_error(exc):
                raise
            message = await self._bot.send_message(
                self._chat_id, part.text, reply_parameters=reply, message_thread_id=self._thread_id
            )
        except Forbidden as exc:
            self._give_up(exc)
            return
        self._sent.append((message.message_id, part))

    async def _edit(self, index: int, part: Rendered) -> None:
        message_id = self._sent[index][0]
        try:
            await self._bot.edit_message_text(
                part.text, chat_id=self._chat_id, message_id=message_id, entities=_entities(part)
            )
        except BadRequest as exc:
            reason = str(exc).lower()
            if "not modified" in reason:
                pass
            elif _is_entity_error(exc):
                await self._bot.edit_message_text(
                    part.text, chat_id=self._chat_id, message_id=message_id
                )
            elif "message to edit not found" in reason:
                # The user deleted it; the rest of the answer still deserves a home.
                del self._sent[index:]
                await self._send(part)
                return
            else:
                raise
        except Forbidden as exc:
            self._give_up(exc)
            return
        self._sent[index] = (message_id, part)

    def _give_up(self, exc: TelegramError) -> None:
        logger.warning("chat %s refuses messages (%s); answer kept in storage", self._chat_id, exc)
        self._dead = True


def _entities(part: Rendered) -> list[MessageEntity] | None:
    if not part.entities:
        return None
    return [
        MessageEntity(e.type, e.offset, e.length, url=e.url, language=e.language)
        for e in part.entities
    ]


def _is_entity_error(exc: BadRequest) -> bool:
    return "can't parse entities" in str(exc).lower()
