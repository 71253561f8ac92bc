"""Beginning turns together: ``Store.begin_turn``'s statements for many turns at once.

Messages arriving in a burst are stored in one transaction: each statement covers every
turn of a wave (turns of one conversation go in separate waves, in order), so a burst of a
hundred costs about as many statements as one message does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    Column,
    Insert,
    Select,
    Table,
    and_,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert

from bot.storage.history import histories
from bot.storage.models import CHATS, CONVERSATIONS, MESSAGES, MODEL_DEFAULTS, PERSONAS, utcnow
from bot.storage.records import (
    ASSISTANT,
    USER,
    BegunTurn,
    ChatChoices,
    DuplicateMessage,
    MessageStatus,
    StoredMessage,
    TurnPlan,
    TurnStart,
    telegram_ids_of,
)


@dataclass(frozen=True, slots=True)
class PendingBegin:
    """A ``begin_turn`` waiting for the next shared transaction."""

    start: TurnStart
    plan: Callable[[ChatChoices], TurnPlan]
    # False when the chat's details are known to be stored already.
    record_chat: bool
    done: asyncio.Future[BegunTurn]


ConversationKey = tuple[int, int | None, int | None]


def _key_of(start: TurnStart) -> ConversationKey:
    return (start.chat_id, start.thread_id, start.conversation_user_id)


@dataclass(frozen=True, slots=True)
class _OpenConversation:
    id: int
    persona: str
    session_owner: str | None
    session: str | None


async def begin_turns(
    connection: AsyncConnection, turns: Sequence[PendingBegin]
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


def _waves(turns: Sequence[PendingBegin]) -> list[list[int]]:
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
    connection: AsyncConnection, turns: Sequence[PendingBegin]
) -> list[BegunTurn | Exception]:
    now = utcnow()
    chat_ids = {turn.start.chat_id for turn in turns}
    recorded = {turn.start.chat_id: turn.start for turn in turns if turn.record_chat}
    if recorded:
        # Takes the chats' row locks (PostgreSQL) for the rest of the transaction.
        rows = [_chat_row(start, now) for start in recorded.values()]
        await connection.execute(_upsert_chats(connection.dialect.name), rows)
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
    prior = await histories(
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
            telegram_message_ids=telegram_ids_of(None, start.telegram_message_id),
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
    turns: Sequence[PendingBegin], choices: Mapping[int, ChatChoices]
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
    turns: Sequence[PendingBegin],
    plans: dict[int, TurnPlan],
    outcomes: list[BegunTurn | Exception],
) -> None:
    """Take turns whose message is stored already out of ``plans``, failing them."""
    starts = [turns[index].start for index in plans]
    stored = await stored_user_messages(
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


async def stored_user_messages(
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


@cache
def _upsert_chats(dialect_name: str) -> Insert:
    """Insert a chat, or update its type, title and language (None keeps the stored one)."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
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
    rows = await connection.execute(
        _chat_states_statement(),
        {
            "chat_ids": list(chat_ids),
            "message_ids": list({message for _, message in wanted}),
            "wanted": list(wanted),
        },
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


@cache
def _chat_states_statement() -> Select[Any]:
    """``_chat_states``' statement, built once, for the chats ``chat_ids``.

    It counts the Telegram messages ``wanted`` (chat, message id; ``message_ids`` their
    message ids alone) stored as users' turns.
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
            stored.c.chat_id.in_(bindparam("chat_ids", expanding=True)),
            m.telegram_message_id.in_(bindparam("message_ids", expanding=True)),
            tuple_(stored.c.chat_id, m.telegram_message_id).in_(
                bindparam("wanted", expanding=True)
            ),
            m.role == USER,
        )
        .scalar_subquery()
        .label("stored")
    )
    return (
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
        .where(CHATS.c.id.in_(bindparam("chat_ids", expanding=True)))
        .order_by(c.id)
    )


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
    result = await connection.execute(_insert_returning(table, tuple(c.name for c in key)), rows)
    return {tuple(row[1:]): int(row[0]) for row in result}


@cache
def _insert_returning(table: Table, key: tuple[str, ...]) -> ReturningInsert[Any]:
    """An insert into ``table`` returning each new row's id and the columns ``key``, built
    once."""
    return insert(table).returning(table.c.id, *(table.c[name] for name in key))
