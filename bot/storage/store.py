"""Every query the bot makes; each method is one short transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Update, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import PersonaConfig
from bot.providers.base import Usage
from bot.storage.models import Chat, Conversation, Message, Persona, utcnow

# Chats whose stored details are known to be current; past this many the memory is reset.
KNOWN_CHATS = 10_000

USER = "user"
ASSISTANT = "assistant"


class MessageStatus(StrEnum):
    """Where a message stands; only an answer is ever anything but complete."""

    STREAMING = "streaming"
    COMPLETE = "complete"
    CUT = "cut"
    ERROR = "error"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"


# Answers whose text may go back to the model as context: what the user saw, even if the
# answer did not run to its end. Errors and still-streaming rows are left out.
CONTEXT_STATUSES = (
    MessageStatus.COMPLETE,
    MessageStatus.CUT,
    MessageStatus.STOPPED,
    MessageStatus.INTERRUPTED,
)


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


class Store:
    """Chats, personas, conversations and messages, on one ``AsyncEngine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer at a time. Writers queued on its file lock poll and can
        # give up ("database is locked") under a burst; queued here they just wait their turn.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._known_chats: dict[int, tuple[str, str | None, str | None]] = {}

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, taken in turn on SQLite."""
        async with AsyncExitStack() as stack:
            if self._write_turn is not None:
                await stack.enter_async_context(self._write_turn)
            yield await stack.enter_async_context(self._sessions.begin())

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
    ) -> int:
        """Store the user's turn (before the answer is asked for) and return its id."""
        message = Message(
            conversation_id=conversation_id,
            role=USER,
            content=text,
            status=MessageStatus.COMPLETE,
            user_id=user_id,
            telegram_chat_id=telegram_chat_id,
            telegram_message_id=telegram_message_id,
            telegram_message_ids=None if telegram_message_id is None else [telegram_message_id],
        )
        return await self._insert(message)

    async def start_answer(
        self,
        conversation_id: int,
        *,
        telegram_chat_id: int,
        model: str,
        provider: str | None = None,
    ) -> int:
        """Create the empty, streaming answer row and return its id."""
        message = Message(
            conversation_id=conversation_id,
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
        async with self._writing() as session:
            # Only while streaming: a late checkpoint must not overwrite the final text.
            await session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == MessageStatus.STREAMING)
                .values(values)
            )

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
    ) -> None:
        """Store the answer's final text and status, with usage and what served it.

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
        async with self._writing() as session:
            await session.execute(update(Message).where(Message.id == message_id).values(values))
            if provider is not None and text and status in CONTEXT_STATUSES:
                await _drop_stale_session(session, message_id, provider)

    async def history(self, conversation_id: int, *, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` messages usable as context, oldest first."""
        if limit <= 0:
            return []
        usable = or_(
            Message.role == USER,
            and_(
                Message.role == ASSISTANT,
                Message.content != "",
                Message.status.in_(CONTEXT_STATUSES),
            ),
        )
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id, usable)
            .order_by(Message.id.desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [_stored(row) for row in reversed(rows)]

    async def unfinished_answers(self) -> list[StoredMessage]:
        """Answers still marked streaming: the bot stopped while writing them."""
        query = (
            select(Message)
            .where(Message.role == ASSISTANT, Message.status == MessageStatus.STREAMING)
            .order_by(Message.id)
        )
        async with self._sessions() as session:
            return [_stored(row) for row in await session.scalars(query)]

    async def conversation_key(self, conversation_id: int) -> tuple[int, int | None] | None:
        """The chat and forum topic of a conversation; None if there is no such conversation."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Conversation.chat_id, Conversation.thread_id).where(
                        Conversation.id == conversation_id
                    )
                )
            ).first()
        return None if row is None else (row.chat_id, row.thread_id)

    async def mark_interrupted(self, message_id: int) -> None:
        """Mark a streaming answer as interrupted; a finished one is left as it is."""
        async with self._writing() as session:
            await session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == MessageStatus.STREAMING)
                .values(status=MessageStatus.INTERRUPTED, updated_at=utcnow())
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


async def _drop_stale_session(session: AsyncSession, message_id: int, provider: str) -> None:
    """Clear the provider session of the answer's conversation unless ``provider`` owns it."""
    conversation_id = (
        select(Message.conversation_id).where(Message.id == message_id).scalar_subquery()
    )
    await session.execute(
        update(Conversation)
        .where(
            Conversation.id == conversation_id,
            Conversation.provider_session_owner.is_not(None),
            Conversation.provider_session_owner != provider,
        )
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


def _telegram_ids(ids: Sequence[int]) -> dict[str, object]:
    """Column values for the Telegram messages an answer occupies; nothing if none given."""
    if not ids:
        return {}
    return {"telegram_message_id": ids[0], "telegram_message_ids": list(ids)}


def _stored(row: Message) -> StoredMessage:
    if row.telegram_message_ids:
        ids = tuple(row.telegram_message_ids)
    elif row.telegram_message_id is not None:
        ids = (row.telegram_message_id,)
    else:
        ids = ()
    return StoredMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        content=row.content,
        status=MessageStatus(row.status),
        telegram_chat_id=row.telegram_chat_id,
        telegram_message_ids=ids,
        created_at=row.created_at,
    )
