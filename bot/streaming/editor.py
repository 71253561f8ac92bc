"""Shows one growing answer in Telegram, as a native draft or by editing a message.

The provider side only calls ``append`` with each new piece; a background task shows the
newest text whenever the outbox grants the chat a slot, so pending updates coalesce and a
slow Telegram never slows the provider stream. ``finish`` always delivers the final text.

In private chats the growing tail is streamed with ``sendMessageDraft`` (an ephemeral,
animated preview) and sent as a real message at the end; any error from that method turns
drafts off for the chat and the answer continues with send-then-edit, as in groups.

An answer may take over messages already in the chat (``adopt_message_ids``: one cut short
by a restart, or one being regenerated); those the final text no longer needs are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardMarkup, MessageEntity, ReplyParameters
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.streaming.outbox import NextSlots, Outbox
from bot.streaming.render import Rendered, append_note, render_markdown
from bot.streaming.split import split_rendered

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, tuple[int, ...]], Awaitable[None]]

# Network failures on the final text are retried this many times before giving up.
FINAL_ATTEMPTS = 4
# A draft lives 30 seconds in the client; renew it before then while the model is silent.
DRAFT_KEEPALIVE_SECONDS = 25.0


class DraftSupport:
    """Which chats stream as native drafts; a chat whose draft failed once uses edits."""

    def __init__(self, *, enabled: bool, interval: float) -> None:
        self.enabled = enabled
        self.interval = interval
        self._refused: set[int] = set()

    def allowed(self, chat_id: int) -> bool:
        """Drafts exist for private chats only (positive ids are users)."""
        return self.enabled and chat_id > 0 and chat_id not in self._refused

    def refuse(self, chat_id: int) -> None:
        """Stop using drafts in ``chat_id``."""
        self._refused.add(chat_id)


@dataclass(frozen=True, slots=True)
class _Shown:
    """What one Telegram message of the answer shows."""

    message_id: int
    part: Rendered
    with_stop: bool = False


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
        drafts: DraftSupport | None = None,
        draft_id: int = 1,
        stop_button: InlineKeyboardMarkup | None = None,
    ) -> None:
        self._bot = bot
        self._outbox = outbox
        self._chat_id = chat_id
        self._reply_to = reply_to
        self._thread_id = thread_id
        self._on_progress = on_progress
        self._drafts = drafts
        self._draft_id = draft_id
        self._stop_button = stop_button
        # The answer's pieces, joined only when a slot comes (about once a second).
        self._pieces: list[str] = []
        self._version = 0
        self._joined = ("", 0)
        self._has_text = False
        self._note: str | None = None
        self._final = False
        # Messages already in the chat (from before a restart) are reused, their text unknown.
        self._sent = [_Shown(i, Rendered("")) for i in adopt_message_ids]
        self._draft: Rendered | None = None
        # What Telegram shows in full: (version, note, final); and whether parts still differ.
        self._synced: tuple[int, str | None, bool] = (0, None, False)
        self._more = False
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # The background update being sent now; stopping lets it land rather than cut it.
        self._in_flight: asyncio.Future[bool | None] | None = None
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
        return tuple(shown.message_id for shown in self._sent)

    @property
    def text(self) -> str:
        """The answer so far, as Markdown."""
        text, version = self._joined
        if version != self._version:
            text = "".join(self._pieces)
            self._pieces[:] = [text]
            self._joined = (text, self._version)
        return text

    @property
    def has_text(self) -> bool:
        """Whether the answer has any text yet; cheap, unlike ``text``, which joins it."""
        return self._has_text

    def next_updates(self) -> NextSlots:
        """When new text can next be shown, how often, and whether an update waits for it."""
        return self._outbox.next_slots(self._chat_id, self._update_interval())

    def append(self, piece: str) -> None:
        """Add a piece of the answer; it goes out at the chat's next slot."""
        self._pieces.append(piece)
        self._has_text = self._has_text or bool(piece)
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
            self._has_text = bool(text)
        self._note = note
        self._final = True
        for attempt in range(FINAL_ATTEMPTS):
            try:
                while self._pending():
                    await self._outbox.call(self._chat_id, self._sync_next_part, must_deliver=True)
                break
            except NetworkError as exc:  # TimedOut included; a lost final must be retried
                logger.warning("final delivery to chat %s failed: %s", self._chat_id, exc)
                await asyncio.sleep(0.5 * 2**attempt)
        await self._drop_surplus()
        return self.message_ids

    async def aclose(self) -> None:
        """Stop the background updates without delivering anything more.

        An update already on its way to Telegram is waited for: cut off, its message could
        exist without the editor knowing, and the answer would then show twice.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._in_flight is not None:
            # Its failure is the next delivery's business, as in the background loop.
            with contextlib.suppress(Exception):
                await self._in_flight
            self._in_flight = None

    def _update_interval(self) -> float | None:
        """The spacing of background updates: the drafts' own, or (None) the chat's."""
        return self._drafts.interval if self._drafts and self._drafting() else None

    def _drafting(self) -> bool:
        return not self._final and self._drafts is not None and self._drafts.allowed(self._chat_id)

    async def _flush_loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(DRAFT_KEEPALIVE_SECONDS):
                    await self._dirty.wait()
            except TimeoutError:
                if not (self._drafting() and self._draft is not None):
                    continue
                self._draft = None  # shown again, so the client keeps it past 30 seconds
                self._more = True
            self._dirty.clear()
            if not self._pending():
                continue
            interval = self._update_interval()
            try:
                sent = await self._outbox.call(
                    self._chat_id, self._sync_in_background, must_deliver=False, interval=interval
                )
            except NetworkError as exc:
                # A failed intermediate update is superseded by the next one.
                logger.info("update in chat %s failed: %s", self._chat_id, exc)
                sent = None
            if self._pending():
                self._dirty.set()
            if sent and self._on_progress is not None:
                try:
                    await self._on_progress(self.text, self.message_ids)
                except Exception:  # a missed checkpoint must not cost the answer itself
                    logger.exception("checkpoint of chat %s failed", self._chat_id)

    async def _sync_in_background(self) -> bool | None:
        """``_sync_next_part`` for the background loop: cancelling the loop leaves it running."""
        self._in_flight = asyncio.ensure_future(self._sync_next_part())
        return await asyncio.shield(self._in_flight)

    async def _drop_surplus(self) -> None:
        """Delete adopted messages beyond the final text's parts (it came out shorter)."""
        needed = len(self._parts())
        if self._dead or needed == 0 or len(self._sent) <= needed:
            return
        surplus = self._sent[needed:]
        del self._sent[needed:]
        for shown in surplus:
            try:
                await self._bot.delete_message(self._chat_id, shown.message_id)
            except TelegramError as exc:
                # Too old to delete, or already gone: it only shows stale text.
                logger.info("could not delete message %s: %s", shown.message_id, exc)

    def _parts(self) -> list[Rendered]:
        """The newest text (and note) cut into the parts Telegram shows, empty ones left out."""
        rendered = render_markdown(self.text)
        if self._note:
            rendered = append_note(rendered, self._note)
        return [part for part in split_rendered(rendered) if part.text.strip()]

    def _pending(self) -> bool:
        """Whether Telegram shows something other than the newest text."""
        state = (self._version, self._note, self._final)
        return not self._dead and (self._more or self._synced != state)

    async def _sync_next_part(self) -> bool | None:
        """Make the first part that differs show what it should; None if none differs."""
        state = (self._version, self._note, self._final)
        parts = self._parts()
        drafting = self._drafting()
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if drafting and last:
                if self._draft == part:
                    continue
                if not await self._show_draft(part):
                    self._more = True  # drafts are off now; the next slot sends a message
                    return True
            else:
                with_stop = last and not self._final and self._stop_button is not None
                if index < len(self._sent):
                    shown = self._sent[index]
                    if shown.part == part and shown.with_stop == with_stop:
                        continue
                    await self._edit(index, part, with_stop=with_stop)
                else:
                    await self._send(part, with_stop=with_stop)
            # Only a call that went through counts; a 429 leaves the state pending.
            self._more = not last
            if last:
                self._synced = state
            return True
        self._synced, self._more = state, False
        return None

    async def _show_draft(self, part: Rendered) -> bool:
        """Show ``part`` as the chat's draft; False if the chat refuses drafts."""
        assert self._drafts is not None
        extra = {"can_stop": True} if self._stop_button is not None else None
        try:
            await self._bot.send_message_draft(
                self._chat_id,
                self._draft_id,
                part.text,
                entities=_entities(part),
                message_thread_id=self._thread_id,
                api_kwargs=extra,
            )
        except RetryAfter:
            raise
        except TelegramError as exc:
            logger.info("drafts unavailable in chat %s (%s); using edits", self._chat_id, exc)
            self._drafts.refuse(self._chat_id)
            return False
        self._draft = part
        return True

    async def _send(self, part: Rendered, *, with_stop: bool) -> None:
        reply = None
        if not self._sent and self._reply_to is not None:
            reply = ReplyParameters(self._reply_to, allow_sending_without_reply=True)
        markup = self._stop_button if with_stop else None
        try:
            try:
                message = await self._bot.send_message(
                    self._chat_id,
                    part.text,
                    entities=_entities(part),
                    reply_parameters=reply,
                    message_thread_id=self._thread_id,
                    reply_markup=markup,
                )
            except BadRequest as exc:
                if not _is_entity_error(exc):
                    raise
                message = await self._bot.send_message(
                    self._chat_id,
                    part.text,
                    reply_parameters=reply,
                    message_thread_id=self._thread_id,
                    reply_markup=markup,
                )
        except Forbidden as exc:
            self._give_up(exc)
            return
        self._sent.append(_Shown(message.message_id, part, with_stop))

    async def _edit(self, index: int, part: Rendered, *, with_stop: bool) -> None:
        message_id = self._sent[index].message_id
        markup = self._stop_button if with_stop else None
        try:
            try:
                await self._bot.edit_message_text(
                    part.text,
                    chat_id=self._chat_id,
                    message_id=message_id,
                    entities=_entities(part),
                    reply_markup=markup,
                )
            except BadRequest as exc:
                reason = str(exc).lower()
                if _is_entity_error(exc):
                    await self._bot.edit_message_text(
                        part.text, chat_id=self._chat_id, message_id=message_id, reply_markup=markup
                    )
                elif "message to edit not found" in reason:
                    # The user deleted it; the rest of the answer still deserves a home.
                    del self._sent[index:]
                    await self._send(part, with_stop=with_stop)
                    return
                # "Not modified" means Telegram already shows this part: nothing to do.
                elif "not modified" not in reason:
                    raise
        except Forbidden as exc:
            self._give_up(exc)
            return
        self._sent[index] = _Shown(message_id, part, with_stop)

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
