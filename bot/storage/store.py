"""Every query the bot makes; each method is one short transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    Insert,
    Row,
    Select,
    Table,
    Update,
    and_,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import PersonaConfig
from bot.providers.base import Usage
from bot.storage.models import (
    Chat,
    Conversation,
    Message,
    ModelDefault,
    Persona,
    turn_order,
    utcnow,
)

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Chats whose stored details are known to be current; past this many the memory is reset.
KNOWN_CHATS = 10_000

USER = "user"
ASSISTANT = "assistant"

# Chats the start-up warm-up writes to and rolls back: Telegram gives no chat id 0, and its
# ids stay far above -2**62 (supergroups' are about -10**12).
WARM_UP_CHATS = (0, -(2**62))


class MessageStatus(StrEnum):
    """Where a message stands.

    A user's message is complete, or one of the last three: left unanswered by a restart.
    """

    STREAMING = "streaming"
    COMPLETE = "complete"
    CUT = "cut"
    ERROR = "error"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    # A regenerated answer (/retry) took its place; kept, but never context again.
    REPLACED = "replaced"
    # A user's message a restart left unanswered, to be answered after it.
    PENDING = "pending"
    # Answered after a restart: never again, whatever happens to that answer.
    RESUMED = "resumed"
    # Left unanswered by a restart and too old to answer after it.
    EXPIRED = "expired"


class MessageKind(StrEnum):
    """What a turn was: only chat turns are a conversation's context."""

    CHAT = "chat"
    COMPLETION = "completion"
    EDIT = "edit"
    IMAGE = "image"
    IMAGE_EDIT = "image_edit"


# Answers whose text may go back to the model as context: what the user saw, even if the
# answer did not run to its end. Errors and still-streaming rows are left out.
CONTEXT_STATUSES = (
    MessageStatus.COMPLETE,
    MessageStatus.CUT,
    MessageStatus.STOPPED,
    MessageStatus.INTERRUPTED,
)


# The tables themselves, for Core statements on the hot path (no ORM objects).
CHATS = cast(Table, Chat.__table__)
PERSONAS = cast(Table, Persona.__table__)
CONVERSATIONS = cast(Table, Conversation.__table__)
MESSAGES = cast(Table, Message.__table__)
MODEL_DEFAULTS = cast(Table, ModelDefault.__table__)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as read back from the database."""

    id: int
    conversation_id: int
    role: str
    content: str
    status: MessageStatus
    telegram_chat_id: int
    telegram_message_ids: tuple[int, ...]
    created_at: datetime
    kind: MessageKind = MessageKind.CHAT
    user_id: int | None = None
    # On an answer, the user's message it answers.
    question_id: int | None = None


@dataclass(frozen=True, slots=True)
class TurnStart:
    """A user's message that asks for an answer, with the chat it came from."""

    chat_id: int
    chat_type: str
    text: str
    history_limit: int
    title: str | None = None
    language: str | None = None
    thread_id: int | None = None
    user_id: int | None = None
    telegram_message_id: int | None = None
    # Set for a conversation of its own per user; None for the chat's (or topic's) one.
    conversation_user_id: int | None = None


@dataclass(frozen=True, slots=True)
class PendingTurn:
    """A user's message a restart left unanswered, with the chat and conversation it is in."""

    message: StoredMessage
    chat_type: str
    title: str | None
    language: str | None
    thread_id: int | None
    # The member whose own conversation it is in; None for the chat's (or topic's) one.
    member_id: int | None


class _Unchanged(Exception):
    """A conditional write found its row changed already; its transaction is rolled back."""


class DuplicateMessage(Exception):
    """The user's message is stored already: Telegram delivered it again."""


@dataclass(frozen=True, slots=True)
class ChatChoices:
    """What a chat chose, as stored: a persona (and its stored prompt) and a model."""

    persona: str | None
    persona_prompt: str | None
    model: str | None
    # The bot admins' default chat model, over the configuration's.
    default_model: str | None = None


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """The persona and model a turn is answered with, decided from the chat's choices."""

    persona: str
    prompt: str
    model: str


@dataclass(frozen=True, slots=True)
class BegunTurn:
    """Everything the answer needs once the user's message is stored."""

    plan: TurnPlan
    conversation_id: int
    user_message_id: int
    answer_id: int
    # Usable context, oldest first, ending with the user's new message.
    history: tuple[StoredMessage, ...]
    # The conversation's provider session by provider name (at most one entry).
    provider_sessions: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _BatchItem(Generic[T]):
    """One queued write: the work to run in a transaction, and the caller waiting for it."""

    work: Callable[[AsyncConnection], Awaitable[T]]
    done: asyncio.Future[T]


@dataclass(frozen=True, slots=True)
class _PendingTurn:
    """A ``begin_turn`` waiting for the next shared transaction."""

    start: TurnStart
    plan: Callable[[ChatChoices], TurnPlan]
    # False when the chat's details are known to be stored already.
    record_chat: bool
    done: asyncio.Future[BegunTurn]


class Store:
    """Chats, personas, conversations and messages, on one ``AsyncEngine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers queued on its file lock poll and can
        # give up ("database is locked") under a burst; queued here they just wait their turn.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._engine = engine
        self._known_chats: dict[int, tuple[str, str | None, str | None]] = {}
        # Writes waiting for the next shared transaction, and the task committing them.
        self._batch: list[_BatchItem[Any]] = []
        self._turns: list[_PendingTurn] = []
        self._batch_writer: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, taken in turn on SQLite."""
        async with AsyncExitStack() as stack:
            if self._write_turn is not None:
                await stack.enter_async_context(self._write_turn)
            yield await stack.enter_async_context(self._sessions.begin())

    async def _write_batched(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in a transaction shared with the writes queued alongside it."""
        item: _BatchItem[T] = _BatchItem(work, asyncio.get_running_loop().create_future())
        self._batch.append(item)
        self._wake_writer()
        return await item.done

    def _wake_writer(self) -> None:
        if self._batch_writer is None:
            self._batch_writer = asyncio.create_task(self._write_batches(), name="store-batch")

    async def _write_batches(self) -> None:
        """Commit queued writes, a batch at a time, until none are left.

        Messages arriving together (one getUpdates batch) then cost a few statements and one
        commit between them, and the last does not wait behind the others' commits. If the
        shared transaction fails, each write is retried alone, so an error belongs to its
        own write.
        """
        turns: list[_PendingTurn] = []
        works: list[_BatchItem[Any]] = []
        try:
            while self._turns or self._batch:
                turns, self._turns = self._turns, []
                works, self._batch = self._batch, []
                if len(turns) + len(works) > 1 and await self._run_together(turns, works):
                    continue
                for turn in turns:
                    await self._begin_alone(turn)
                for item in works:
                    await self._run_alone(item)
        except BaseException:
            # Cancelled (the loop is closing): nobody may wait forever for a write.
            for turn in (*turns, *self._turns):
                turn.done.cancel()
            for item in (*works, *self._batch):
                item.done.cancel()
            self._turns, self._batch = [], []
            raise
        finally:
            self._batch_writer = None

    async def _run_together(
        self, turns: Sequence[_PendingTurn], works: Sequence[_BatchItem[Any]]
    ) -> bool:
        """Run every queued write in one transaction; False (nothing kept) if it failed."""
        try:
            async with self._core_writing() as connection:
                outcomes = await _begin_turns(connection, turns) if turns else []
                results = [await item.work(connection) for item in works]
        except Exception:  # each write is retried alone and fails on its own
            logger.debug("a shared write transaction failed; retrying its writes alone")
            return False
        for turn, outcome in zip(turns, outcomes, strict=True):
            _settle(turn.done, outcome)
        for item, result in zip(works, results, strict=True):
            _settle(item.done, result)
        return True

    async def _begin_alone(self, turn: _PendingTurn) -> None:
        try:
            async with self._core_writing() as connection:
                [outcome] = await _begin_turns(connection, [turn])
        except Exception as exc:  # handed to the caller waiting for it
            outcome = exc
        _settle(turn.done, outcome)

    async def _run_alone(self, item: _BatchItem[Any]) -> None:
        try:
            async with self._core_writing() as connection:
                result = await item.work(connection)
        except Exception as exc:  # handed to the caller waiting for it
            result = exc
        _settle(item.done, result)

    @asynccontextmanager
    async def _core_writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction on a plain connection (Core statements), taken in turn."""
        async with AsyncExitStack() as stack:
            if self._write_turn is not None:
                await stack.enter_async_context(self._write_turn)
            yield await stack.enter_async_context(self._engine.begin())

    async def begin_turn(
        self, start: TurnStart, plan: Callable[[ChatChoices], TurnPlan]
    ) -> BegunTurn:
        """Record the chat, store the user's message and the empty answer, in one transaction.

        ``plan`` decides the persona and model from what the chat chose (it is called inside
        the transaction, so it must not block). The conversation is the open one for the
        chat (and topic) if it has the planned persona, else a new one. The user's message
        is committed when this returns, before any provider is asked.
        """
        details = (start.chat_type, start.title, start.language)
        known = self._known_chats.get(start.chat_id) == details
        future: asyncio.Future[BegunTurn] = asyncio.get_running_loop().create_future()
        self._turns.append(_PendingTurn(start, plan, not known, future))
        self._wake_writer()
        turn = await future
        if not known:
            if len(self._known_chats) >= KNOWN_CHATS:
                self._known_chats.clear()
            self._known_chats[start.chat_id] = details
        return turn

    async def warm_up(self) -> None:
        """Run ``begin_turn``'s statements once, in a transaction that is rolled back, and
        an answer's checkpoints and final write on a message id that does not exist.

        SQLAlchemy compiles each statement the first time it runs (a few milliseconds in
        all); paid here at start-up, it is not added to the first messages' wait.
        """
        loop = asyncio.get_running_loop()

        def plan(persona: str) -> Callable[[ChatChoices], TurnPlan]:
            return lambda _chat: TurnPlan(persona, "", "")

        first, second = WARM_UP_CHATS
        # Statements of one row and of many compile apart. Two new chats; one of them again
        # (its details written anew; history); then under another persona (a new one).
        steps = ((first, "a", True), (second, "a", True), (first, "a", True), (first, "b", False))
        turns = [
            _PendingTurn(
                TurnStart(
                    chat_id=chat_id,
                    chat_type="private",
                    text="",
                    history_limit=2,
                    telegram_message_id=number,
                ),
                plan(persona),
                record_chat=record_chat,
                done=loop.create_future(),
            )
            for number, (chat_id, persona, record_chat) in enumerate(steps, start=1)
        ]
        async with AsyncExitStack() as stack:
            if self._write_turn is not None:
                await stack.enter_async_context(self._write_turn)
            connection = await stack.enter_async_context(self._engine.connect())
            transaction = await connection.begin()
            try:
                outcomes = await _begin_turns(connection, turns)
            finally:
                await transaction.rollback()
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        # Ids start at 1: these match no row. Drafts checkpoint without message ids, edits
        # with them; a final write names its messages, usage, model and provider.
        await self.checkpoint_answer(0, "")
        await self.checkpoint_answer(0, "", [0])
        await self.finish_answer(
            0,
            text="-",
            status=MessageStatus.COMPLETE,
            telegram_message_ids=[0],
            usage=Usage(0, 0),
            model="-",
            provider="-",
        )

    async def sync_personas(self, personas: Sequence[PersonaConfig]) -> None:
        """Insert or update the configured personas by name; others are left as they are."""
        try:
            await self._sync_personas(personas)
        except IntegrityError:
            # Another instance starting at the same moment inserted one first: update it.
            await self._sync_personas(personas)

    async def _sync_personas(self, personas: Sequence[PersonaConfig]) -> None:
        async with self._writing() as session:
            for persona in personas:
                await _upsert_persona(session, persona.name, persona.prompt, persona.description)

    async def save_persona(self, name: str, prompt: str, *, description: str = "") -> None:
        """Insert or update one persona (a chat's custom prompt, say)."""
        async with self._writing() as session:
            await _upsert_persona(session, name, prompt, description)

    async def persona_prompt(self, name: str) -> str | None:
        """The stored prompt of persona ``name``, if there is one."""
        async with self._sessions() as session:
            prompt: str | None = await session.scalar(
                select(Persona.prompt).where(Persona.name == name)
            )
            return prompt

    async def ensure_chat(
        self,
        chat_id: int,
        chat_type: str,
        title: str | None = None,
        language: str | None = None,
    ) -> None:
        """Record the chat, or update its type, title and language (None keeps the stored one)."""
        # Every message calls this; a chat whose details did not change costs no query.
        details = (chat_type, title, language)
        if self._known_chats.get(chat_id) == details:
            return
        if len(self._known_chats) >= KNOWN_CHATS:
            self._known_chats.clear()
        if await self._update_chat(chat_id, chat_type, title, language):
            self._known_chats[chat_id] = details
            return
        try:
            async with self._writing() as session:
                session.add(Chat(id=chat_id, type=chat_type, title=title, language=language))
        except IntegrityError:
            # Another task inserted the same new chat between our look-up and our insert.
            await self._update_chat(chat_id, chat_type, title, language)
        self._known_chats[chat_id] = details

    async def _update_chat(
        self, chat_id: int, chat_type: str, title: str | None, language: str | None
    ) -> bool:
        """Update a known chat (writing only if something changed); False if it is unknown."""
        async with self._writing() as session:
            chat = await session.get(Chat, chat_id)
            if chat is None:
                return False
            chat.type = chat_type
            if title is not None:
                chat.title = title
            if language is not None:
                chat.language = language
            return True

    async def chat_persona(self, chat_id: int) -> str | None:
        """The persona the chat chose, or None for the default."""
        async with self._sessions() as session:
            persona: str | None = await session.scalar(
                select(Chat.persona).where(Chat.id == chat_id)
            )
            return persona

    async def chat_language(self, chat_id: int) -> str | None:
        """The chat's language as last recorded by ``ensure_chat``, or None."""
        async with self._sessions() as session:
            language: str | None = await session.scalar(
                select(Chat.language).where(Chat.id == chat_id)
            )
            return language

    async def set_chat_persona(self, chat_id: int, persona: str | None) -> None:
        """Choose the chat's persona; None goes back to the default."""
        async with self._writing() as session:
            matched = await _update(
                session, update(Chat).where(Chat.id == chat_id).values(persona=persona)
            )
            if matched == 0:
                raise LookupError(f"unknown chat {chat_id}; call ensure_chat first")

    async def active_conversation(
        self,
        chat_id: int,
        *,
        persona: str,
        thread_id: int | None = None,
        user_id: int | None = None,
    ) -> int:
        """The open conversation for this key and persona; a new one if there is none.

        An open conversation under another persona (the chat switched, say in another
        topic) is ended: its history was written for a different system prompt.
        """
        key = _conversation_key(chat_id, thread_id, user_id)
        async with self._sessions() as session:
            found = await _open_conversation(session, key)
        if found is not None and found[1] == persona:
            return found[0]
        async with self._writing() as session:
            await _lock_chat(session, chat_id)
            # Checked again under the lock: a concurrent call may have created it meanwhile.
            found = await _open_conversation(session, key)
            if found is not None and found[1] == persona:
                return found[0]
            if found is not None:
                await session.execute(
                    update(Conversation)
                    .where(Conversation.id == found[0])
                    .values(ended_at=utcnow())
                )
            return await _add_conversation(session, chat_id, persona, thread_id, user_id)

    async def new_conversation(
        self,
        chat_id: int,
        *,
        persona: str,
        thread_id: int | None = None,
        user_id: int | None = None,
    ) -> int:
        """End the open conversation for this key, if any, and start a new one."""
        key = _conversation_key(chat_id, thread_id, user_id)
        async with self._writing() as session:
            await _lock_chat(session, chat_id)
            await session.execute(
                update(Conversation)
                .where(key, Conversation.ended_at.is_(None))
                .values(ended_at=utcnow())
            )
            return await _add_conversation(session, chat_id, persona, thread_id, user_id)

    async def provider_session(self, conversation_id: int, provider: str) -> str | None:
        """The session ``provider`` gave this conversation; None if it has none.

        A session stored for another provider is never returned.
        """
        async with self._sessions() as session:
            value: str | None = await session.scalar(
                select(Conversation.provider_session).where(
                    Conversation.id == conversation_id,
                    Conversation.provider_session_owner == provider,
                )
            )
            return value

    async def provider_sessions(self, conversation_id: int) -> dict[str, str]:
        """The conversation's stored session by provider name, for ``ProviderService``.

        At most one entry: a conversation keeps the session of one provider at a time.
        """
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        Conversation.provider_session_owner, Conversation.provider_session
                    ).where(Conversation.id == conversation_id)
                )
            ).first()
        if row is None or row[0] is None or row[1] is None:
            return {}
        return {row[0]: row[1]}

    async def set_provider_session(self, conversation_id: int, provider: str, value: str) -> None:
        """Store the session ``provider`` gave this conversation, replacing any other one."""
        async with self._writing() as session:
            matched = await _update(
                session,
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(provider_session=value, provider_session_owner=provider),
            )
            if matched == 0:
                raise LookupError(f"unknown conversation {conversation_id}")

    async def clear_provider_session(self, conversation_id: int) -> None:
        """Forget the conversation's provider session: its next turn starts a new one."""
        async with self._writing() as session:
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(provider_session=None, provider_session_owner=None)
            )

    async def add_user_message(
        self,
        conversation_id: int,
        *,
        text: str,
        user_id: int | None,
        telegram_chat_id: int,
        telegram_message_id: int | None,
        kind: MessageKind = MessageKind.CHAT,
        status: MessageStatus = MessageStatus.COMPLETE,
    ) -> int:
        """Store the user's turn (before the answer is asked for) and return its id.

        ``status`` is pending for a message a stopping bot answers after its restart. Raises
        ``DuplicateMessage`` if that Telegram message is stored already (delivered again
        after a restart).
        """
        message = Message(
            conversation_id=conversation_id,
            kind=kind,
            role=USER,
            content=text,
            status=status,
            user_id=user_id,
            telegram_chat_id=telegram_chat_id,
            telegram_message_id=telegram_message_id,
            telegram_message_ids=None if telegram_message_id is None else [telegram_message_id],
        )
        async with self._writing() as session:
            if telegram_message_id is not None:
                wanted = {(telegram_chat_id, telegram_message_id)}
                connection = await session.connection()
                if await _stored_user_messages(connection, wanted):
                    raise DuplicateMessage(
                        f"message {telegram_message_id} of chat {telegram_chat_id}"
                    )
            session.add(message)
            await session.flush()
            return message.id

    async def start_answer(
        self,
        conversation_id: int,
        *,
        question_id: int,
        telegram_chat_id: int,
        model: str,
        provider: str | None = None,
        kind: MessageKind = MessageKind.CHAT,
    ) -> int:
        """Create the empty, streaming answer to the user's message ``question_id``; its id."""
        message = Message(
            conversation_id=conversation_id,
            question_id=question_id,
            kind=kind,
            role=ASSISTANT,
            content="",
            status=MessageStatus.STREAMING,
            telegram_chat_id=telegram_chat_id,
            model=model,
            provider=provider,
        )
        return await self._insert(message)

    async def checkpoint_answer(
        self, message_id: int, text: str, telegram_message_ids: Sequence[int] = ()
    ) -> None:
        """Save the text streamed so far (and the Telegram messages it occupies, if given)."""
        values: dict[str, object] = {"content": text, "updated_at": utcnow()}
        values.update(_telegram_ids(telegram_message_ids))
        # Only while streaming: a late checkpoint must not overwrite the final text.
        statement = (
            update(MESSAGES)
            .where(MESSAGES.c.id == message_id, MESSAGES.c.status == MessageStatus.STREAMING)
            .values(values)
        )

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(statement)

        await self._write_batched(work)

    async def finish_answer(
        self,
        message_id: int,
        *,
        text: str,
        status: MessageStatus,
        telegram_message_ids: Sequence[int] = (),
        usage: Usage | None = None,
        model: str | None = None,
        provider: str | None = None,
        error_kind: str | None = None,
        replaces: Sequence[int] = (),
    ) -> None:
        """Store the answer's final text and status, with usage and what served it.

        ``replaces`` are earlier answers this one regenerated: marked replaced in the same
        transaction.

        An answer that joins the context (text, a context status) and was served by another
        provider than the one holding the conversation's provider session makes that session
        stale (its owner never saw this turn): it is cleared in the same transaction, and the
        owner's next turn starts afresh with the whole history.
        """
        if status is MessageStatus.STREAMING:
            raise ValueError("a finished answer cannot be streaming")
        values: dict[str, object] = {
            "content": text,
            "status": status,
            "error_kind": error_kind,
            "updated_at": utcnow(),
        }
        values.update(_telegram_ids(telegram_message_ids))
        if usage is not None:
            values["prompt_tokens"] = usage.prompt_tokens
            values["completion_tokens"] = usage.completion_tokens
            values["usage_estimated"] = usage.estimated
        # The model and provider may change when the service fails over mid-request.
        if model is not None:
            values["model"] = model
        if provider is not None:
            values["provider"] = provider
        statement = update(MESSAGES).where(MESSAGES.c.id == message_id).values(values)

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(statement)
            if replaces:
                await connection.execute(_replacing(replaces))
            if provider is not None and text and status in CONTEXT_STATUSES:
                await _drop_stale_session(connection, message_id, provider)

        await self._write_batched(work)

    async def history(
        self, conversation_id: int, *, limit: int, upto: int | None = None
    ) -> list[StoredMessage]:
        """The newest ``limit`` chat messages usable as context, in conversation order.

        With ``upto``, only the user's message of that id and what came before it (a turn
        being answered again): not its answers, nor later turns.
        """
        if limit <= 0:
            return []
        async with self._engine.connect() as connection:
            histories = await _histories(connection, {conversation_id: limit}, upto=upto)
        return histories.get(conversation_id, [])

    async def last_exchange(
        self, conversation_id: int
    ) -> tuple[StoredMessage, list[StoredMessage]] | None:
        """The conversation's last chat question and its answers (oldest first) not replaced.

        Usually one answer; more when a regeneration failed before it showed anything.
        None when the conversation has no chat question.
        """
        async with self._sessions() as session:
            question = await session.scalar(
                select(Message)
                .where(
                    Message.conversation_id == conversation_id,
                    Message.kind == MessageKind.CHAT,
                    Message.role == USER,
                )
                # The newest by id; in this order its index reads it without a sort.
                .order_by(*(key.desc() for key in turn_order()))
                .limit(1)
            )
            if question is None:
                return None
            answers = await session.scalars(
                select(Message)
                .where(
                    Message.conversation_id == conversation_id,
                    Message.question_id == question.id,
                    # Always true (an answer follows its question); keeps the index scan short.
                    Message.id > question.id,
                    Message.kind == MessageKind.CHAT,
                    Message.role == ASSISTANT,
                    Message.status != MessageStatus.REPLACED,
                )
                .order_by(Message.id)
            )
            return _stored(question), [_stored(row) for row in answers]

    async def replace_answers(self, message_ids: Sequence[int]) -> None:
        """Mark answers as replaced by a regenerated one: kept, but no longer context."""
        if message_ids:
            statement = _replacing(message_ids)

            async def work(connection: AsyncConnection) -> None:
                await connection.execute(statement)

            await self._write_batched(work)

    async def unfinished_answers(self) -> list[StoredMessage]:
        """Answers still marked streaming: the bot stopped while writing them."""
        query = (
            select(Message)
            .where(Message.role == ASSISTANT, Message.status == MessageStatus.STREAMING)
            .order_by(Message.id)
        )
        async with self._sessions() as session:
            return [_stored(row) for row in await session.scalars(query)]

    async def conversation_key(
        self, conversation_id: int
    ) -> tuple[int, int | None] | tuple[int, int | None, int] | None:
        """The chat and forum topic of a conversation, and its member if it is one member's;
        None if there is no such conversation."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        Conversation.chat_id, Conversation.thread_id, Conversation.user_id
                    ).where(Conversation.id == conversation_id)
                )
            ).first()
        if row is None:
            return None
        if row.user_id is None:
            return (row.chat_id, row.thread_id)
        return (row.chat_id, row.thread_id, row.user_id)

    async def mark_interrupted(self, message_id: int) -> None:
        """Mark a streaming answer as interrupted; a finished one is left as it is."""
        async with self._writing() as session:
            await session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == MessageStatus.STREAMING)
                .values(status=MessageStatus.INTERRUPTED, updated_at=utcnow())
            )

    async def pending_turns(self) -> list[PendingTurn]:
        """Users' messages a restart left unanswered, oldest first, with where they were sent."""
        query = (
            select(MESSAGES, CONVERSATIONS.c.thread_id, CONVERSATIONS.c.user_id.label("member"))
            .add_columns(CHATS.c.type.label("chat_type"), CHATS.c.title, CHATS.c.language)
            .select_from(
                MESSAGES.join(CONVERSATIONS, MESSAGES.c.conversation_id == CONVERSATIONS.c.id).join(
                    CHATS, CONVERSATIONS.c.chat_id == CHATS.c.id
                )
            )
            .where(
                MESSAGES.c.role == USER,
                MESSAGES.c.status == MessageStatus.PENDING,
                MESSAGES.c.kind == MessageKind.CHAT,
            )
            .order_by(MESSAGES.c.id)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            PendingTurn(
                message=_stored(row),
                chat_type=row.chat_type,
                title=row.title,
                language=row.language,
                thread_id=row.thread_id,
                member_id=row.member,
            )
            for row in rows
        ]

    async def question_of(self, answer: StoredMessage) -> StoredMessage | None:
        """The user's message ``answer`` answers; None if it has none (or is no answer)."""
        if answer.question_id is None:
            return None
        return await self.get_message(answer.question_id)

    async def requeue_unstarted(self, answer_id: int, question_id: int) -> bool:
        """Drop an answer that never showed anything and mark its question pending again.

        Only a streaming, empty answer to a complete question that no other answer shows
        text for is requeued; whether it was.
        """
        m = MESSAGES.c
        now = utcnow()
        other = MESSAGES.alias("other")
        answered = (
            select(other.c.id)
            .where(
                # The conversation (of the question being updated) narrows it to its index.
                other.c.conversation_id == m.conversation_id,
                other.c.question_id == question_id,
                other.c.id != answer_id,
                other.c.content != "",
                other.c.status.in_(CONTEXT_STATUSES),
            )
            .exists()
        )
        try:
            async with self._core_writing() as connection:
                for statement in (
                    update(MESSAGES)
                    .where(m.id == answer_id, m.status == MessageStatus.STREAMING, m.content == "")
                    .values(status=MessageStatus.INTERRUPTED, updated_at=now),
                    update(MESSAGES)
                    .where(
                        m.id == question_id,
                        m.role == USER,
                        m.status == MessageStatus.COMPLETE,
                        ~answered,
                    )
                    .values(status=MessageStatus.PENDING, updated_at=now),
                ):
                    if (await connection.execute(statement)).rowcount != 1:
                        raise _Unchanged  # noqa: TRY301 - rolls back this transaction
        except _Unchanged:  # rolled back: both or neither
            return False
        return True

    async def expire_turn(self, question_id: int) -> bool:
        """Mark a pending message too old to answer; whether it was still pending."""
        m = MESSAGES.c
        async with self._core_writing() as connection:
            result = await connection.execute(
                update(MESSAGES)
                .where(m.id == question_id, m.status == MessageStatus.PENDING)
                .values(status=MessageStatus.EXPIRED, updated_at=utcnow())
            )
        return bool(result.rowcount == 1)

    async def resume_turn(
        self, question_id: int, plan: Callable[[ChatChoices], TurnPlan], history_limit: int
    ) -> BegunTurn:
        """Start the answer to a pending message in its conversation, in one transaction.

        The message is marked resumed with it, so no later restart answers it again. Raises
        ``DuplicateMessage`` if it is no longer pending (another instance took it).
        """
        m, c = MESSAGES.c, CONVERSATIONS.c
        now = utcnow()
        async with self._core_writing() as connection:
            claimed = await connection.execute(
                update(MESSAGES)
                .where(m.id == question_id, m.role == USER, m.status == MessageStatus.PENDING)
                .values(status=MessageStatus.RESUMED, updated_at=now)
            )
            if claimed.rowcount != 1:
                raise DuplicateMessage(f"pending message {question_id}")
            row = (
                await connection.execute(
                    select(
                        MESSAGES,
                        c.persona.label("conversation_persona"),
                        c.provider_session_owner,
                        c.provider_session,
                        CHATS.c.model.label("chat_model"),
                        PERSONAS.c.prompt.label("persona_prompt"),
                        select(MODEL_DEFAULTS.c.model)
                        .where(MODEL_DEFAULTS.c.capability == "chat")
                        .scalar_subquery()
                        .label("default_model"),
                    )
                    .select_from(
                        MESSAGES.join(CONVERSATIONS, m.conversation_id == c.id)
                        .join(CHATS, c.chat_id == CHATS.c.id)
                        .outerjoin(PERSONAS, PERSONAS.c.name == c.persona)
                    )
                    .where(m.id == question_id)
                )
            ).one()
            turn_plan = plan(
                ChatChoices(
                    persona=row.conversation_persona,
                    persona_prompt=row.persona_prompt,
                    model=row.chat_model,
                    default_model=row.default_model,
                )
            )
            question = replace(_stored(row), status=MessageStatus.RESUMED)
            conversation_id = question.conversation_id
            history: list[StoredMessage] = []
            if history_limit > 0:
                # Up to this question: later pending messages are answered after it.
                found = await _histories(
                    connection, {conversation_id: history_limit}, upto=question.id
                )
                history = found.get(conversation_id, [])
            answer_id = await connection.scalar(
                insert(MESSAGES)
                .values(
                    conversation_id=conversation_id,
                    question_id=question.id,
                    kind=MessageKind.CHAT,
                    role=ASSISTANT,
                    content="",
                    status=MessageStatus.STREAMING,
                    telegram_chat_id=question.telegram_chat_id,
                    model=turn_plan.model,
                    created_at=now,
                    updated_at=now,
                )
                .returning(m.id)
            )
        owner, session = row.provider_session_owner, row.provider_session
        return BegunTurn(
            plan=turn_plan,
            conversation_id=conversation_id,
            user_message_id=question.id,
            answer_id=int(answer_id),
            history=tuple(history),
            provider_sessions={} if owner is None or session is None else {owner: session},
        )

    async def get_message(self, message_id: int) -> StoredMessage | None:
        """The message with this id, or None."""
        async with self._sessions() as session:
            row = await session.get(Message, message_id)
            return None if row is None else _stored(row)

    async def _insert(self, message: Message) -> int:
        async with self._writing() as session:
            session.add(message)
            await session.flush()
            return message.id

    async def chat_model(self, chat_id: int) -> str | None:
        """The chat model the chat chose, or None for the default."""
        async with self._sessions() as session:
            model: str | None = await session.scalar(select(Chat.model).where(Chat.id == chat_id))
            return model

    async def set_chat_model(self, chat_id: int, model: str | None) -> None:
        """Choose the chat's chat model; None goes back to the default."""
        async with self._writing() as session:
            matched = await _update(
                session, update(Chat).where(Chat.id == chat_id).values(model=model)
            )
            if matched == 0:
                raise LookupError(f"unknown chat {chat_id}; call ensure_chat first")

    async def model_choices(self, chat_id: int, capability: str) -> tuple[str | None, str | None]:
        """The chat's own chat model and the admins' default for ``capability``, in one query."""
        query = select(
            select(Chat.model).where(Chat.id == chat_id).scalar_subquery(),
            select(ModelDefault.model)
            .where(ModelDefault.capability == capability)
            .scalar_subquery(),
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).one()
        return row[0], row[1]

    async def model_defaults(self) -> dict[str, str]:
        """The admins' default model by capability (only those they set)."""
        query = select(ModelDefault.capability, ModelDefault.model)
        async with self._sessions() as session:
            return {row.capability: row.model for row in await session.execute(query)}

    async def set_model_default(self, capability: str, model: str, *, set_by: int | None) -> None:
        """Set the default model of ``capability``, over the configured one."""
        values = {"model": model, "set_by": set_by, "updated_at": utcnow()}
        change = update(ModelDefault).where(ModelDefault.capability == capability).values(values)
        try:
            async with self._writing() as session:
                if await _update(session, change) == 0:
                    session.add(ModelDefault(capability=capability, model=model, set_by=set_by))
        except IntegrityError:
            # Another admin inserted the same capability meanwhile: the later choice wins.
            async with self._writing() as session:
                await session.execute(change)

    async def reset_model_default(self, capability: str) -> bool:
        """Drop the admins' default of ``capability``; False if there was none."""
        async with self._writing() as session:
            row = await session.get(ModelDefault, capability)
            if row is None:
                return False
            await session.delete(row)
            return True

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction for queries kept in other modules, in turn with this Store's."""
        return self._core_writing()

    def reader(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads kept in other modules."""
        return self._engine.connect()


def _conversation_key(
    chat_id: int, thread_id: int | None, user_id: int | None
) -> ColumnElement[bool]:
    """Match a conversation's key, where a missing thread or user matches only NULL."""
    return and_(
        Conversation.chat_id == chat_id,
        Conversation.thread_id.is_(None)
        if thread_id is None
        else Conversation.thread_id == thread_id,
        Conversation.user_id.is_(None) if user_id is None else Conversation.user_id == user_id,
    )


async def _open_conversation(
    session: AsyncSession, key: ColumnElement[bool]
) -> tuple[int, str] | None:
    """The id and persona of the open conversation matching ``key``, if there is one."""
    row = (
        await session.execute(
            select(Conversation.id, Conversation.persona)
            .where(key, Conversation.ended_at.is_(None))
            .order_by(Conversation.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (row.id, row.persona)


async def _upsert_persona(session: AsyncSession, name: str, prompt: str, description: str) -> None:
    row = await session.get(Persona, name)
    if row is None:
        session.add(Persona(name=name, description=description, prompt=prompt))
    else:
        row.description = description
        row.prompt = prompt


async def _update(session: AsyncSession, statement: Update) -> int:
    """Run an UPDATE and return how many rows it matched."""
    result = cast("CursorResult[Any]", await session.execute(statement))
    return result.rowcount


async def _drop_stale_session(connection: AsyncConnection, message_id: int, provider: str) -> None:
    """Clear the provider session of the answer's conversation unless ``provider`` owns it."""
    # Completions and edits are not part of the conversation a provider keeps.
    conversation_id = (
        select(MESSAGES.c.conversation_id)
        .where(MESSAGES.c.id == message_id, MESSAGES.c.kind == MessageKind.CHAT)
        .scalar_subquery()
    )
    owner = CONVERSATIONS.c.provider_session_owner
    await connection.execute(
        update(CONVERSATIONS)
        .where(CONVERSATIONS.c.id == conversation_id, owner.is_not(None), owner != provider)
        .values(provider_session=None, provider_session_owner=None)
    )


async def _lock_chat(session: AsyncSession, chat_id: int) -> None:
    """Serialise conversation changes of one chat until the transaction ends.

    An UPDATE takes the chat's row lock on PostgreSQL and the write lock on SQLite, so two
    messages arriving together cannot both open a conversation for the same key.
    """
    matched = await _update(
        session, update(Chat).where(Chat.id == chat_id).values(updated_at=utcnow())
    )
    if matched == 0:
        raise LookupError(f"unknown chat {chat_id}; call ensure_chat first")


async def _add_conversation(
    session: AsyncSession,
    chat_id: int,
    persona: str,
    thread_id: int | None,
    user_id: int | None,
) -> int:
    conversation = Conversation(
        chat_id=chat_id, thread_id=thread_id, user_id=user_id, persona=persona
    )
    session.add(conversation)
    await session.flush()
    return conversation.id


def _settle(future: asyncio.Future[Any], outcome: object) -> None:
    """Hand a write's result (or its exception) to its caller, unless it stopped waiting."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


ConversationKey = tuple[int, int | None, int | None]


def _key_of(start: TurnStart) -> ConversationKey:
    return (start.chat_id, start.thread_id, start.conversation_user_id)


@dataclass(frozen=True, slots=True)
class _OpenConversation:
    id: int
    persona: str
    session_owner: str | None
    session: str | None


async def _begin_turns(
    connection: AsyncConnection, turns: Sequence[_PendingTurn]
) -> list[BegunTurn | Exception]:
    """The statements of ``Store.begin_turn`` for many turns, in the caller's transaction.

    Turns of one conversation go in separate waves, in order, so the later one sees the
    earlier one's messages; each wave costs a handful of statements however many it holds.
    """
    outcomes: list[BegunTurn | Exception] = [LookupError("not begun")] * len(turns)
    for wave in _waves(turns):
        begun = await _begin_wave(connection, [turns[index] for index in wave])
        for index, outcome in zip(wave, begun, strict=True):
            outcomes[index] = outcome
    return outcomes


def _waves(turns: Sequence[_PendingTurn]) -> list[list[int]]:
    """Indexes of ``turns`` in groups where no conversation key appears twice."""
    waves: list[tuple[set[ConversationKey], list[int]]] = []
    for index, turn in enumerate(turns):
        key = _key_of(turn.start)
        # After the last wave holding this key, so that its turns keep their order.
        first = max((n + 1 for n, (keys, _) in enumerate(waves) if key in keys), default=0)
        if first == len(waves):
            waves.append((set(), []))
        keys, members = waves[first]
        keys.add(key)
        members.append(index)
    return [members for _, members in waves]


async def _begin_wave(
    connection: AsyncConnection, turns: Sequence[_PendingTurn]
) -> list[BegunTurn | Exception]:
    now = utcnow()
    chat_ids = {turn.start.chat_id for turn in turns}
    recorded = {turn.start.chat_id: turn.start for turn in turns if turn.record_chat}
    if recorded:
        # Takes the chats' row locks (PostgreSQL) for the rest of the transaction.
        rows = [_chat_row(start, now) for start in recorded.values()]
        await connection.execute(_upsert_chats(connection), rows)
    wanted = {
        (turn.start.chat_id, turn.start.telegram_message_id)
        for turn in turns
        if turn.start.telegram_message_id is not None
    }
    state = await _chat_states(connection, chat_ids, wanted)
    plans, outcomes = _plan_turns(turns, state.choices)
    if state.maybe_stored:
        await _drop_duplicates(connection, turns, plans, outcomes)
    if not plans:
        return outcomes

    def stale(index: int, found: dict[ConversationKey, _OpenConversation]) -> bool:
        conversation = found.get(_key_of(turns[index].start))
        return conversation is None or conversation.persona != plans[index].persona

    found = state.conversations
    to_lock = {
        turns[i].start.chat_id for i in plans if stale(i, found) and not turns[i].record_chat
    }
    if to_lock:
        await connection.execute(
            update(CHATS).where(CHATS.c.id.in_(to_lock)).values(updated_at=now)
        )
        # Looked up again under the locks: a concurrent /new may have opened one meanwhile.
        found = await _open_conversations(connection, chat_ids)
    fresh = [index for index in plans if stale(index, found)]
    starts = {index: turns[index].start for index in fresh}
    ended = [found[key].id for key in map(_key_of, starts.values()) if key in found]
    personas = {index: plans[index].persona for index in fresh}
    conversation_of = await _start_conversations(connection, starts, personas, ended, now)
    sessions: dict[int, dict[str, str]] = {}
    for index in plans:
        if index in conversation_of:
            continue
        conversation = found[_key_of(turns[index].start)]
        conversation_of[index] = conversation.id
        owner, session = conversation.session_owner, conversation.session
        sessions[index] = {} if owner is None or session is None else {owner: session}
    prior = await _histories(
        connection,
        {
            conversation_of[i]: turns[i].start.history_limit - 1
            for i in plans
            if i not in fresh and turns[i].start.history_limit > 1
        },
    )
    message_ids = await _insert_turns(
        connection,
        [
            _message_rows(turns[index].start, conversation_of[index], plan.model, now)
            for index, plan in plans.items()
        ],
    )
    for index, plan in plans.items():
        start = turns[index].start
        conversation_id = conversation_of[index]
        user_message_id, answer_id = message_ids[conversation_id]
        user_message = StoredMessage(
            id=user_message_id,
            conversation_id=conversation_id,
            role=USER,
            content=start.text,
            status=MessageStatus.COMPLETE,
            telegram_chat_id=start.chat_id,
            telegram_message_ids=_message_ids(None, start.telegram_message_id),
            created_at=now,
            user_id=start.user_id,
        )
        history = prior.get(conversation_id, [])
        outcomes[index] = BegunTurn(
            plan=plan,
            conversation_id=conversation_id,
            user_message_id=user_message_id,
            answer_id=answer_id,
            history=(*history, user_message) if start.history_limit > 0 else (),
            provider_sessions=sessions.get(index, {}),
        )
    return outcomes


def _plan_turns(
    turns: Sequence[_PendingTurn], choices: Mapping[int, ChatChoices]
) -> tuple[dict[int, TurnPlan], list[BegunTurn | Exception]]:
    """Each turn's plan by index, from its chat's choices; the outcomes of those that failed."""
    outcomes: list[BegunTurn | Exception] = []
    plans: dict[int, TurnPlan] = {}
    for index, turn in enumerate(turns):
        chat = choices.get(turn.start.chat_id)
        outcomes.append(LookupError(f"unknown chat {turn.start.chat_id}"))
        if chat is None:
            continue
        try:
            plans[index] = turn.plan(chat)
        except Exception as exc:  # this turn fails alone
            outcomes[index] = exc
    return plans, outcomes


async def _drop_duplicates(
    connection: AsyncConnection,
    turns: Sequence[_PendingTurn],
    plans: dict[int, TurnPlan],
    outcomes: list[BegunTurn | Exception],
) -> None:
    """Take turns whose message is stored already out of ``plans``, failing them."""
    starts = [turns[index].start for index in plans]
    stored = await _stored_user_messages(
        connection,
        {
            (start.chat_id, start.telegram_message_id)
            for start in starts
            if start.telegram_message_id is not None
        },
    )
    for index in list(plans):
        start = turns[index].start
        if (start.chat_id, start.telegram_message_id) in stored:
            del plans[index]
            outcomes[index] = DuplicateMessage(
                f"message {start.telegram_message_id} of chat {start.chat_id}"
            )


async def _stored_user_messages(
    connection: AsyncConnection, wanted: set[tuple[int, int]]
) -> set[tuple[int, int]]:
    """Which of these Telegram messages (chat, message id) are stored as users' turns."""
    if not wanted:
        return set()
    m, c = MESSAGES.c, CONVERSATIONS.c
    # Through the chat's conversations, whose index keeps this to one chat's messages.
    rows = await connection.execute(
        select(c.chat_id, m.telegram_message_id)
        .select_from(MESSAGES.join(CONVERSATIONS, m.conversation_id == c.id))
        .where(
            c.chat_id.in_({chat for chat, _ in wanted}),
            m.telegram_message_id.in_({message for _, message in wanted}),
            m.role == USER,
        )
    )
    return {(row.chat_id, row.telegram_message_id) for row in rows} & wanted


async def _start_conversations(
    connection: AsyncConnection,
    starts: Mapping[int, TurnStart],
    personas: Mapping[int, str],
    ended: Sequence[int],
    now: datetime,
) -> dict[int, int]:
    """End the conversations ``ended`` and open one for each turn in ``starts``, by index."""
    if ended:
        await connection.execute(
            update(CONVERSATIONS).where(CONVERSATIONS.c.id.in_(ended)).values(ended_at=now)
        )
    if not starts:
        return {}
    rows = [
        {
            "chat_id": start.chat_id,
            "thread_id": start.thread_id,
            "user_id": start.conversation_user_id,
            "persona": personas[index],
            "started_at": now,
        }
        for index, start in starts.items()
    ]
    c = CONVERSATIONS.c
    new_ids = await _insert_ids(connection, CONVERSATIONS, rows, c.chat_id, c.thread_id, c.user_id)
    return {index: new_ids[_key_of(start)] for index, start in starts.items()}


def _message_rows(
    start: TurnStart, conversation_id: int, model: str, now: datetime
) -> tuple[dict[str, object], dict[str, object]]:
    """The user's message and the empty answer, as rows."""
    ids = None if start.telegram_message_id is None else [start.telegram_message_id]
    common: dict[str, object] = {
        "conversation_id": conversation_id,
        "telegram_chat_id": start.chat_id,
        "created_at": now,
        "updated_at": now,
    }
    user = common | {
        "role": USER,
        "content": start.text,
        "status": MessageStatus.COMPLETE,
        "user_id": start.user_id,
        "telegram_message_id": start.telegram_message_id,
        "telegram_message_ids": ids,
        "model": None,
    }
    answer = common | {
        "role": ASSISTANT,
        "content": "",
        "status": MessageStatus.STREAMING,
        "user_id": None,
        "telegram_message_id": None,
        "telegram_message_ids": None,
        "model": model,
    }
    return user, answer


async def _insert_turns(
    connection: AsyncConnection, rows: Sequence[tuple[dict[str, object], dict[str, object]]]
) -> dict[int, tuple[int, int]]:
    """Insert users' messages and their answers (one pair per conversation); their ids.

    The users' messages first: each answer is stored with the id its question got.
    """
    m = MESSAGES.c
    questions = await _insert_ids(
        connection, MESSAGES, [user for user, _ in rows], m.conversation_id
    )
    answers = await _insert_ids(
        connection,
        MESSAGES,
        [answer | {"question_id": questions[answer["conversation_id"],]} for _, answer in rows],
        m.conversation_id,
    )
    return {key[0]: (question, answers[key]) for key, question in questions.items()}


def _upsert_chats(connection: AsyncConnection) -> Insert:
    """Insert a chat, or update its type, title and language (None keeps the stored one)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(CHATS)
    excluded = statement.excluded
    upsert = statement.on_conflict_do_update(
        index_elements=[CHATS.c.id],
        set_={
            "type": excluded.type,
            "title": func.coalesce(excluded.title, CHATS.c.title),
            "language": func.coalesce(excluded.language, CHATS.c.language),
            "updated_at": excluded.updated_at,
        },
    )
    return cast("Insert", upsert)


def _chat_row(start: TurnStart, now: datetime) -> dict[str, object]:
    return {
        "id": start.chat_id,
        "type": start.chat_type,
        "title": start.title,
        "language": start.language,
        "created_at": now,
        "updated_at": now,
    }


async def _open_conversations(
    connection: AsyncConnection, chat_ids: set[int]
) -> dict[ConversationKey, _OpenConversation]:
    """The open conversation of every key in these chats (the newest, should there be two)."""
    c = CONVERSATIONS.c
    rows = await connection.execute(
        select(
            c.id,
            c.chat_id,
            c.thread_id,
            c.user_id,
            c.persona,
            c.provider_session_owner,
            c.provider_session,
        )
        .where(c.chat_id.in_(chat_ids), c.ended_at.is_(None))
        .order_by(c.id)
    )
    return {
        (row.chat_id, row.thread_id, row.user_id): _OpenConversation(
            row.id, row.persona, row.provider_session_owner, row.provider_session
        )
        for row in rows
    }


@dataclass(frozen=True, slots=True)
class _ChatStates:
    """What one look-up tells of the chats of a wave of turns."""

    choices: dict[int, ChatChoices]
    conversations: dict[ConversationKey, _OpenConversation]
    # Some of the wave's Telegram messages may be stored already (delivered again).
    maybe_stored: bool


async def _chat_states(
    connection: AsyncConnection, chat_ids: set[int], wanted: set[tuple[int, int]]
) -> _ChatStates:
    """The chats' choices, their open conversations and a duplicate check, in one statement.

    The check counts the ``wanted`` Telegram messages (chat, message id) stored as users'
    turns; only when there is one does ``_drop_duplicates`` find out which.
    """
    c, m = CONVERSATIONS.c, MESSAGES.c
    stored = CONVERSATIONS.alias("stored_in")
    default_model = (
        select(MODEL_DEFAULTS.c.model)
        .where(MODEL_DEFAULTS.c.capability == "chat")
        .scalar_subquery()
        .label("default_model")
    )
    # Not correlated with the rows around it, so run once (not once per conversation row);
    # through the chats' conversations, whose index keeps it to these chats' messages.
    stored_count = (
        select(func.count())
        .select_from(MESSAGES.join(stored, m.conversation_id == stored.c.id))
        .where(
            stored.c.chat_id.in_(chat_ids),
            m.telegram_message_id.in_({message for _, message in wanted}),
            tuple_(stored.c.chat_id, m.telegram_message_id).in_(wanted),
            m.role == USER,
        )
        .scalar_subquery()
        .label("stored")
    )
    rows = await connection.execute(
        select(
            CHATS.c.id,
            CHATS.c.persona,
            PERSONAS.c.prompt,
            CHATS.c.model,
            default_model,
            stored_count,
            c.id.label("conversation_id"),
            c.thread_id,
            c.user_id,
            c.persona.label("conversation_persona"),
            c.provider_session_owner,
            c.provider_session,
        )
        .select_from(
            CHATS.outerjoin(PERSONAS, PERSONAS.c.name == CHATS.c.persona).outerjoin(
                CONVERSATIONS, and_(c.chat_id == CHATS.c.id, c.ended_at.is_(None))
            )
        )
        .where(CHATS.c.id.in_(chat_ids))
        .order_by(c.id)
    )
    choices: dict[int, ChatChoices] = {}
    conversations: dict[ConversationKey, _OpenConversation] = {}
    maybe_stored = False
    for row in rows:
        choices[row.id] = ChatChoices(
            persona=row.persona,
            persona_prompt=row.prompt,
            model=row.model,
            default_model=row.default_model,
        )
        maybe_stored = maybe_stored or bool(row.stored)
        if row.conversation_id is not None:
            # In id order: the newest open conversation of a key wins, should there be two.
            conversations[row.id, row.thread_id, row.user_id] = _OpenConversation(
                row.conversation_id,
                row.conversation_persona,
                row.provider_session_owner,
                row.provider_session,
            )
    return _ChatStates(choices, conversations, maybe_stored)


# Conversations whose history one statement reads (each a bound parameter).
HISTORIES_PER_STATEMENT = 500


async def _histories(
    connection: AsyncConnection, limits: Mapping[int, int], *, upto: int | None = None
) -> dict[int, list[StoredMessage]]:
    """The newest usable chat messages of each conversation (up to its limit), in order.

    The order is the conversation's (``turn_order``): each question followed by its answers,
    even where an answer was stored after later questions. With ``upto``, only the user's
    message of that id and what comes before it (a turn being answered, or answered again).
    """
    by_limit: dict[int, list[int]] = {}
    for conversation_id, limit in limits.items():
        if limit > 0:
            by_limit.setdefault(limit, []).append(conversation_id)
    histories: dict[int, list[StoredMessage]] = {}
    for limit, conversation_ids in by_limit.items():
        for first in range(0, len(conversation_ids), HISTORIES_PER_STATEMENT):
            chunk = conversation_ids[first : first + HISTORIES_PER_STATEMENT]
            statement = _history_statement(chunk, limit, upto)
            for row in await connection.execute(statement):
                histories.setdefault(row.conversation_id, []).append(_stored(row))
    for conversation_id, history in histories.items():
        history.sort(key=_turn_position)
        del history[: -limits[conversation_id]]
    return histories


def _history_statement(
    conversation_ids: Sequence[int], limit: int, upto: int | None
) -> Select[Any]:
    """The newest ``limit`` turns' usable chat messages of each of these conversations.

    Its shape is the same however many conversations it reads (their ids are one expanding
    parameter), so it is compiled once, not once per burst size. Per conversation, a
    correlated subquery finds where the ``limit``-th newest usable message sorts
    (``turn_order``); the messages from there on are one range scan of the order index.
    That may bring a few answers more of the oldest turn; ``_histories`` trims them.
    """
    m, c = MESSAGES.c, CONVERSATIONS.c
    newer = MESSAGES.alias("newer")

    def anchor(messages: Any) -> ColumnElement[int]:
        return func.coalesce(messages.question_id, messages.id)

    def usable(messages: Any) -> ColumnElement[bool]:
        bound = or_(anchor(messages) < upto, messages.id == upto) if upto is not None else true()
        return and_(
            messages.kind == MessageKind.CHAT,
            or_(
                messages.role == USER,
                and_(
                    messages.role == ASSISTANT,
                    messages.content != "",
                    messages.status.in_(CONTEXT_STATUSES),
                ),
            ),
            bound,
        )

    oldest = (
        select(anchor(newer.c))
        .where(newer.c.conversation_id == c.id, usable(newer.c))
        .order_by(anchor(newer.c).desc(), newer.c.id.desc())
        .limit(1)
        .offset(limit - 1)
        .scalar_subquery()
    )
    return (
        select(
            m.id,
            m.conversation_id,
            m.role,
            m.content,
            m.status,
            m.telegram_chat_id,
            m.telegram_message_id,
            m.telegram_message_ids,
            m.created_at,
            m.kind,
            m.user_id,
            m.question_id,
        )
        .select_from(CONVERSATIONS.join(MESSAGES, m.conversation_id == c.id))
        .where(c.id.in_(conversation_ids), usable(m), anchor(m) >= func.coalesce(oldest, 0))
    )


def _turn_position(message: StoredMessage) -> tuple[int, int]:
    """Where ``message`` sorts in its conversation: the key of ``turn_order``, in Python."""
    anchor = message.id if message.question_id is None else message.question_id
    return anchor, message.id


async def _insert_ids(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, object]],
    *key: Column[Any],
) -> dict[tuple[Any, ...], int]:
    """Insert ``rows`` (all with the same columns) and return their new ids by ``key``.

    The key columns must tell the rows apart. Matching by key, not by position, lets every
    database take the rows in one statement: SQLite does not promise RETURNING's order,
    and SQLAlchemy would insert row by row to keep it.
    """
    result = await connection.execute(insert(table).returning(table.c.id, *key), rows)
    return {tuple(row[1:]): int(row[0]) for row in result}


def _message_ids(ids: list[int] | None, first: int | None) -> tuple[int, ...]:
    """The Telegram messages a stored message occupies, from its two columns."""
    if ids:
        return tuple(ids)
    return () if first is None else (first,)


def _telegram_ids(ids: Sequence[int]) -> dict[str, object]:
    """Column values for the Telegram messages an answer occupies; nothing if none given."""
    if not ids:
        return {}
    return {"telegram_message_id": ids[0], "telegram_message_ids": list(ids)}


def _replacing(message_ids: Sequence[int]) -> Update:
    """The statement marking answers replaced by a regenerated one."""
    return (
        update(MESSAGES)
        .where(MESSAGES.c.id.in_(message_ids), MESSAGES.c.role == ASSISTANT)
        .values(status=MessageStatus.REPLACED, updated_at=utcnow())
    )


def _stored(row: Message | Row[Any]) -> StoredMessage:
    """A message as the rest of the bot sees it, from an ORM object or a Core row alike."""
    ids = _message_ids(row.telegram_message_ids, row.telegram_message_id)
    return StoredMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        content=row.content,
        status=MessageStatus(row.status),
        telegram_chat_id=row.telegram_chat_id,
        telegram_message_ids=ids,
        created_at=row.created_at,
        kind=MessageKind(row.kind),
        user_id=row.user_id,
        question_id=row.question_id,
    )
