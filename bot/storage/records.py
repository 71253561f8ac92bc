"""What the store takes and hands back, as plain values: statuses, messages, turns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row

from bot.storage.models import Message

USER = "user"
ASSISTANT = "assistant"


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


def telegram_ids_of(ids: list[int] | None, first: int | None) -> tuple[int, ...]:
    """The Telegram messages a stored message occupies, from its two columns."""
    if ids:
        return tuple(ids)
    return () if first is None else (first,)


def stored_message(row: Message | Row[Any]) -> StoredMessage:
    """A message as the rest of the bot sees it, from an ORM object or a Core row alike."""
    ids = telegram_ids_of(row.telegram_message_ids, row.telegram_message_id)
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
