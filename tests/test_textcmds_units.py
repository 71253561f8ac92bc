"""The pure parts of /edit, /complete and /retry, without sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bot.errors import InputError
from bot.handlers.complete import continued
from bot.handlers.edit import REWRITE_PROMPT, EditTask, edit_task, rewrite_request
from bot.handlers.retry import answer_to_replace
from bot.providers.base import StreamEnd, StreamEvent, StreamStart, TextDelta, Usage
from bot.storage.records import MessageStatus, StoredMessage


def test_a_reply_to_a_text_takes_the_whole_argument_as_the_instruction() -> None:
    task = edit_task("fix the spelling\nand keep it short", "What day of the wek is it?")
    assert task == EditTask("fix the spelling\nand keep it short", "What day of the wek is it?")


def test_without_a_reply_the_first_line_instructs_and_the_rest_is_the_text() -> None:
    task = edit_task("translate to French\nGood morning.\n\nSee you.", None)
    assert task == EditTask("translate to French", "Good morning.\n\nSee you.")


@pytest.mark.parametrize(
    ("argument", "replied", "key"),
    [
        ("", None, "input.edit_no_instruction"),
        ("", "some text", "input.edit_no_instruction"),
        ("   \n", "some text", "input.edit_no_instruction"),
        ("\nonly text", None, "input.edit_no_instruction"),
        ("fix it", None, "input.edit_no_text"),
        ("fix it\n   \n", None, "input.edit_no_text"),
        # A reply to a photo (no text) is not this handler's to edit: no text here.
        ("make it blue", None, "input.edit_no_text"),
        ("make it blue", "   ", "input.edit_no_text"),
    ],
)
def test_missing_instruction_or_text_is_an_input_error(
    argument: str, replied: str | None, key: str
) -> None:
    with pytest.raises(InputError) as caught:
        edit_task(argument, replied)
    assert caught.value.key == key


def test_rewrite_request_gives_the_chat_model_the_instruction_and_the_text() -> None:
    request = rewrite_request(EditTask("shorter", "A long text."), "gpt-test", "user-1")
    assert request.model == "gpt-test"
    assert request.user == "user-1"
    system, user = request.messages
    assert (system.role, system.content) == ("system", REWRITE_PROMPT)
    assert user.role == "user"
    assert user.content == "Instruction: shorter\n\nText:\nA long text."


async def _events(*events: StreamEvent) -> AsyncIterator[StreamEvent]:
    for event in events:
        yield event


async def test_the_prompt_joins_the_first_piece_of_a_completion_only() -> None:
    source = _events(
        StreamStart("fake", "m"), TextDelta(" there"), TextDelta(" was"), Usage(1, 2), StreamEnd()
    )
    events = [e async for e in continued("Once upon a time", source)]
    assert events == [
        StreamStart("fake", "m"),
        TextDelta("Once upon a time there"),
        TextDelta(" was"),
        Usage(1, 2),
        StreamEnd(),
    ]


async def test_a_completion_without_text_shows_no_prompt() -> None:
    events = [e async for e in continued("Once", _events(StreamStart("fake", "m"), StreamEnd()))]
    assert events == [StreamStart("fake", "m"), StreamEnd()]


def _answer(
    message_id: int, content: str, status: MessageStatus, ids: tuple[int, ...]
) -> StoredMessage:
    return StoredMessage(
        id=message_id,
        conversation_id=1,
        role="assistant",
        content=content,
        status=status,
        telegram_chat_id=1,
        telegram_message_ids=ids,
        created_at=datetime.now(UTC),
    )


def test_retry_takes_over_the_answer_the_user_saw_rather_than_a_later_failure() -> None:
    seen = _answer(1, "An answer.", MessageStatus.COMPLETE, (10, 11))
    failed = _answer(2, "", MessageStatus.ERROR, (12,))
    assert answer_to_replace([seen, failed]) == seen


def test_retry_takes_over_the_newest_error_when_no_answer_was_seen() -> None:
    first = _answer(1, "", MessageStatus.ERROR, (10,))
    second = _answer(2, "", MessageStatus.ERROR, (12,))
    assert answer_to_replace([first, second]) == second


def test_retry_has_nothing_to_take_over_when_no_answer_was_shown() -> None:
    assert answer_to_replace([_answer(1, "lost", MessageStatus.INTERRUPTED, ())]) is None
    assert answer_to_replace([]) is None
