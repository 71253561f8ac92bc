"""Every query the bot makes; each method is one short transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Update,
    and_,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import PersonaConfig
from bot.providers.base import Usage
from bot.storage.history import histories
from bot.storage.models import (
    CHATS,
    CONVERSATIONS,
    MESSAGES,
    MODEL_DEFAULTS,
    PERSONAS,
    Chat,
    Conversation,
    Message,
    ModelDefault,
    Persona,
    turn_order,
    utcnow,
)
from bot.storage.records import (
    ASSISTANT,
    CONTEXT_STATUSES,
    USER,
    BegunTurn,
    ChatChoices,
    DuplicateMessage,
    MessageKind,
    MessageStatus,
    PendingTurn,
    StoredMessage,
    TurnPlan,
    TurnStart,
    stored_message,
)
from bot.storage.turn_begin import PendingBegin, begin_turns, stored_user_messages

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Chats whose stored details are known to be current; past this many the memory is reset.
KNOWN_CHATS = 10_000

# Chats the start-up warm-up writes to and rolls back: Telegram gives no chat id 0, and its
# ids stay far above -2**62 (supergroups' are about -10**12).
WARM_UP_CHATS = (0, -(2**62))


class _Unchanged(Exception):
    """A conditional write found its row changed already; its transaction is rolled back."""


@dataclass(frozen=True, slots=True)
class _BatchItem(Generic[T]):
    """One queued write: the work to run in a transaction, and the caller waiting for it."""

    work: Callable[[AsyncConnection], Awaitable[T]]
    done: asyncio.Future[T]


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
        self._turns: list[PendingBegin] = []
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
        turns: list[PendingBegin] = []
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
        self, turns: Sequence[PendingBegin], works: Sequence[_BatchItem[Any]]
    ) -> bool:
        """Run every queued write in one transaction; False (nothing kept) if it failed."""
        try:
            async with self._core_writing() as connection:
                outcomes = await begin_turns(connection, turns) if turns else []
                results = [await item.work(connection) for item in works]
        except Exception:  # each write is retried alone and fails on its own
            logger.debug("a shared write transaction failed; retrying its writes alone")
            return False
        for turn, outcome in zip(turns, outcomes, strict=True):
            _settle(turn.done, outcome)
        for item, result in zip(works, results, strict=True):
            _settle(item.done, result)
        return True

    async def _begin_alone(self, turn: PendingBegin) -> None:
        try:
            async with self._core_writing() as connection:
                [outcome] = await begin_turns(connection, [turn])
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
        self._turns.append(PendingBegin(start, plan, not known, future))
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
            PendingBegin(
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
        async with self.rehearsal() as connection:
            outcomes = await begin_turns(connection, turns)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        # Ids start at 1: these match no row. Drafts checkpoint without message ids, edits
        # with them; a chat answer's final write names its messages, usage and provider
        # (the columns it sets are part of the compiled statement, so exactly these).
        await self.checkpoint_answer(0, "")
        await self.checkpoint_answer(0, "", [0])
        await self.finish_answer(
            0,
            text="-",
            status=MessageStatus.COMPLETE,
            telegram_message_ids=[0],
            usage=Usage(0, 0),
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
                if await stored_user_messages(connection, wanted):
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
        values["answer_id"] = message_id

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(_STREAMING_ANSWER, values)

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
        values["answer_id"] = message_id

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(_ANSWER, values)
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
            found = await histories(connection, {conversation_id: limit}, upto=upto)
        return found.get(conversation_id, [])

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
            return stored_message(question), [stored_message(row) for row in answers]

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
            return [stored_message(row) for row in await session.scalars(query)]

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
                message=stored_message(row),
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
            question = replace(stored_message(row), status=MessageStatus.RESUMED)
            conversation_id = question.conversation_id
            history: list[StoredMessage] = []
            if history_limit > 0:
                # Up to this question: later pending messages are answered after it.
                found = await histories(
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
            return None if row is None else stored_message(row)

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

    @asynccontextmanager
    async def rehearsal(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, taken in turn, that is always rolled back: for running
        statements once at start-up so that they are compiled before they are needed."""
        async with AsyncExitStack() as stack:
            if self._write_turn is not None:
                await stack.enter_async_context(self._write_turn)
            connection = await stack.enter_async_context(self._engine.connect())
            transaction = await connection.begin()
            try:
                yield connection
            finally:
                await transaction.rollback()


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
    await connection.execute(_DROP_STALE_SESSION, {"answer_id": message_id, "provider": provider})


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


# Statements of every answer, built once: building one anew costs more than running it.
# Each takes the answer's id as ``answer_id`` and the columns to set as parameters.
_ANSWER = update(MESSAGES).where(MESSAGES.c.id == bindparam("answer_id"))
# Only while streaming: a late checkpoint must not overwrite the final text.
_STREAMING_ANSWER = _ANSWER.where(MESSAGES.c.status == MessageStatus.STREAMING)

# Completions and edits are not part of the conversation a provider keeps.
_ANSWER_CONVERSATION = (
    select(MESSAGES.c.conversation_id)
    .where(MESSAGES.c.id == bindparam("answer_id"), MESSAGES.c.kind == MessageKind.CHAT)
    .scalar_subquery()
)
_DROP_STALE_SESSION = (
    update(CONVERSATIONS)
    .where(
        CONVERSATIONS.c.id == _ANSWER_CONVERSATION,
        CONVERSATIONS.c.provider_session_owner.is_not(None),
        CONVERSATIONS.c.provider_session_owner != bindparam("provider"),
    )
    .values(provider_session=None, provider_session_owner=None)
)
"""Clears the session of the conversation of the answer ``answer_id`` unless ``provider``
owns it."""


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
