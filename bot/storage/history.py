"""Reading conversations' usable history: the newest turns of many conversations at once."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.storage.models import CONVERSATIONS, MESSAGES
from bot.storage.records import (
    ASSISTANT,
    CONTEXT_STATUSES,
    USER,
    MessageKind,
    StoredMessage,
    stored_message,
)

# Conversations whose history one statement reads (each a bound parameter).
HISTORIES_PER_STATEMENT = 500


async def histories(
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
            parameters = {"conversation_ids": chunk, "skip": limit - 1, "upto": upto}
            rows = await connection.execute(_history_statement(upto is not None), parameters)
            for row in rows:
                histories.setdefault(row.conversation_id, []).append(stored_message(row))
    for conversation_id, history in histories.items():
        history.sort(key=_turn_position)
        del history[: -limits[conversation_id]]
    return histories


@cache
def _history_statement(bounded: bool) -> Select[Any]:
    """The newest turns' usable chat messages of the conversations ``conversation_ids``.

    From each conversation the newest ``skip`` + 1 turns, and with ``bounded`` only those up
    to the user's message ``upto``. Built once: building it anew cost more than running it.
    Its shape is the same however many conversations it reads (their ids are one expanding
    parameter), so it is compiled once, not once per burst size. Per conversation, a
    correlated subquery finds where the newest (``skip`` + 1)-th usable message sorts
    (``turn_order``); the messages from there on are one range scan of the order index.
    That may bring a few answers more of the oldest turn; ``histories`` trims them.
    """
    upto: BindParameter[int] = bindparam("upto")
    m, c = MESSAGES.c, CONVERSATIONS.c
    newer = MESSAGES.alias("newer")

    def anchor(messages: Any) -> ColumnElement[int]:
        return func.coalesce(messages.question_id, messages.id)

    def usable(messages: Any) -> ColumnElement[bool]:
        bound = or_(anchor(messages) < upto, messages.id == upto) if bounded else true()
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
        .offset(bindparam("skip"))
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
        .where(
            c.id.in_(bindparam("conversation_ids", expanding=True)),
            usable(m),
            anchor(m) >= func.coalesce(oldest, 0),
        )
    )


def _turn_position(message: StoredMessage) -> tuple[int, int]:
    """Where ``message`` sorts in its conversation: the key of ``turn_order``, in Python."""
    anchor = message.id if message.question_id is None else message.question_id
    return anchor, message.id
