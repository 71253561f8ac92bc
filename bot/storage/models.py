"""The tables, as SQLAlchemy declarative models; ``migrations/`` must create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so that batch migrations on SQLite (which rebuild tables) can find them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database.

    SQLite has no time zones and drops the offset, so values are converted to UTC before
    they are stored and read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - the signature TypeDecorator calls
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(
        self,
        value: Any,
        dialect: Dialect,  # noqa: ARG002 - the signature TypeDecorator calls
    ) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Chat(Base):
    """A Telegram chat the bot has seen."""

    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String)
    language: Mapped[str | None] = mapped_column(String(16))
    persona: Mapped[str | None] = mapped_column(String(64))
    # The chat model this chat chose; None follows the default.
    model: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ModelDefault(Base):
    """A bot admin's choice of the default model for one capability, over the config's."""

    __tablename__ = "model_defaults"

    capability: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String)
    set_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Persona(Base):
    """A named system prompt, mirrored from the configuration."""

    __tablename__ = "personas"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    prompt: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Conversation(Base):
    """A run of messages that share context; open while ``ended_at`` is NULL."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_key", "chat_id", "thread_id", "user_id", "ended_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("chats.id", ondelete="CASCADE"))
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    persona: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The id a provider that keeps the context itself gave this conversation (a wrapper's
    # chatcode), and the name of that provider: it is sent to no other.
    provider_session: Mapped[str | None] = mapped_column(Text)
    provider_session_owner: Mapped[str | None] = mapped_column(String(64))


class Message(Base):
    """One turn: a user's message or an assistant's answer (possibly still streaming)."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    # On an answer, the user's message it answers. Answers made after a restart are stored
    # after every message that waited for it, so ids alone do not give the conversation's
    # order; ``turn_order`` does. None on users' messages.
    question_id: Mapped[int | None] = mapped_column(Integer)
    # "chat" turns form the conversation's context; others (a /complete, an /edit, an
    # /image) are kept for the record and left out of it.
    kind: Mapped[str] = mapped_column(String(16), default="chat", server_default="chat")
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    telegram_chat_id: Mapped[int] = mapped_column(BigInteger)
    # The user's message, or the first message of an answer.
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Every Telegram message an answer occupies, in order; a JSON list of ints.
    telegram_message_ids: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True))
    model: Mapped[str | None] = mapped_column(String)
    provider: Mapped[str | None] = mapped_column(String)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    error_kind: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def turn_order() -> tuple[Any, Any]:
    """Conversation order: each question, then its answers, then the next question.

    A question sorts by its own id, an answer by its question's id and then its own; the
    index ``ix_messages_conversation_order`` holds exactly these expressions.
    """
    return func.coalesce(Message.question_id, Message.id), Message.id


# A conversation's messages in its order: its newest turns are read with no sort. It serves
# every look-up by conversation too (in place of an index on conversation_id and id).
Index("ix_messages_conversation_order", Message.conversation_id, *turn_order())


class QuotaUsage(Base):
    """One quota counter: a user's or a group's requests and tokens in a UTC day or month."""

    __tablename__ = "quota_usage"
    __table_args__ = (Index("ix_quota_usage_period_scope", "period", "scope"),)

    # "user" or "chat"; the user's or chat's id.
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # "2026-11-30" for a day, "2026-11" for a month.
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Tokens held for answers in flight, until they settle with what they used.
    reserved: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class QuotaHold(Base):
    """Tokens one answer in flight holds on its counters; dropped when it settles or expires."""

    __tablename__ = "quota_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    # The counters held, as [scope, subject, period] lists.
    counters: Mapped[list[list[Any]]] = mapped_column(JSON)
    # A hold its answer never settled (the process died) is released after this.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# The tables themselves, for Core statements on the hot path (no ORM objects).
CHATS = cast(Table, Chat.__table__)
PERSONAS = cast(Table, Persona.__table__)
CONVERSATIONS = cast(Table, Conversation.__table__)
MESSAGES = cast(Table, Message.__table__)
MODEL_DEFAULTS = cast(Table, ModelDefault.__table__)
QUOTA_USAGE = cast(Table, QuotaUsage.__table__)
QUOTA_HOLDS = cast(Table, QuotaHold.__table__)
