"""Legacy completions and edits through the pure decoders: every shape, split at every byte."""
# ruff: noqa: E501 - the recorded streams are kept on one line each, as providers send them

from __future__ import annotations

import json

import pytest

from bot.errors import ModelNotFound, StreamCut, Unavailable
from bot.providers.base import StreamEnd, TextDelta, Usage
from bot.providers.decoders import parse_completion, parse_edit
from bot.providers.wrapper_decoder import parse_chat_answer, parse_edit_answer
from tests.seeds import SEED_002_REDUCE_COMPLETION, SEED_BODIES, sse
from tests.streams import decode_sse, parse_openai, text_of

# A /v1/completions stream as OpenAI sends it: text on the choice, the finish reason on the
# last text chunk, then the usage-only chunk (stream_options.include_usage) and [DONE].
TEXT_COMPLETION_STREAM = sse(
    'data: {"id":"cmpl-78sY9YEf4NoN8J16dsZPfJibghPJt","object":"text_completion","created":1682350669,"choices":[{"text":"\\n\\n","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}',
    'data: {"id":"cmpl-78sY9YEf4NoN8J16dsZPfJibghPJt","object":"text_completion","created":1682350669,"choices":[{"text":"A rose by any other name","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}',
    'data: {"id":"cmpl-78sY9YEf4NoN8J16dsZPfJibghPJt","object":"text_completion","created":1682350669,"choices":[{"text":" 会一样芬芳","index":0,"logprobs":null,"finish_reason":"length"}],"model":"gpt-3.5-turbo-instruct"}',
    'data: {"id":"cmpl-78sY9YEf4NoN8J16dsZPfJibghPJt","object":"text_completion","created":1682350669,"choices":[],"model":"gpt-3.5-turbo-instruct","usage":{"prompt_tokens":8,"completion_tokens":16,"total_tokens":24}}',
    "data: [DONE]",
)
TEXT_COMPLETION_TEXT = "\n\nA rose by any other name 会一样芬芳"

# Seed 002 (AI小火箭), Reduce-Stream completions, as its document shows them.

# Seed 002's non-streamed completion answer, verbatim.
SEED_002_COMPLETION = {
    "id": "cmpl-78sY9YEf4NoN8J16dsZPfJibghPJt",
    "object": "text_completion",
    "created": 1682350669,
    "model": "text-curie-001",
    "choices": [
        {
            "text": "\n\nA rose by any other name would smell just as sweet\n\nBut",
            "index": 0,
            "logprobs": None,
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24},
}

# OpenAI's /v1/edits answer (seed 002 refers to it), for the example of seed 000.
EDIT_ANSWER = {
    "object": "edit",
    "created": 1589478378,
    "choices": [{"text": "What day of the week is it?", "index": 0}],
    "usage": {"prompt_tokens": 25, "completion_tokens": 32, "total_tokens": 57},
}

STREAMS = {"text-completion": TEXT_COMPLETION_STREAM, "seed002-reduce": SEED_002_REDUCE_COMPLETION}


@pytest.mark.parametrize("name", STREAMS)
def test_completion_streams_split_at_every_byte_offset_give_the_same_events(name: str) -> None:
    data = STREAMS[name]
    events = parse_openai(decode_sse([data]))
    assert events
    for offset in range(len(data) + 1):
        assert parse_openai(decode_sse([data[:offset], data[offset:]])) == events, (
            f"split at byte {offset}"
        )
    assert parse_openai(decode_sse(data[i : i + 1] for i in range(len(data)))) == events


def test_text_completion_stream_gives_text_usage_then_its_finish_reason() -> None:
    events = parse_openai(decode_sse([TEXT_COMPLETION_STREAM]))
    assert text_of(events) == TEXT_COMPLETION_TEXT
    assert events[-2:] == [Usage(prompt_tokens=8, completion_tokens=16), StreamEnd("length")]


def test_reduce_stream_completion_is_its_bare_strings_then_stop() -> None:
    events = parse_openai(decode_sse([SEED_002_REDUCE_COMPLETION]))
    assert events == [TextDelta("\n"), TextDelta("\n"), TextDelta("清"), StreamEnd("stop")]


def test_text_completion_cut_before_a_finish_reason_raises_stream_cut() -> None:
    cut = TEXT_COMPLETION_STREAM[: TEXT_COMPLETION_STREAM.index(b'finish_reason":"length')]
    with pytest.raises(StreamCut):
        parse_openai(decode_sse([cut]))


def test_text_completion_without_done_after_its_finish_reason_ends_normally() -> None:
    data = TEXT_COMPLETION_STREAM[: TEXT_COMPLETION_STREAM.index(b"data: [DONE]")]
    assert parse_openai(decode_sse([data]))[-1] == StreamEnd("length")


def test_chat_delta_wins_over_a_stray_text_field_on_the_same_choice() -> None:
    payload = '{"choices":[{"index":0,"delta":{"content":"chat"},"text":"legacy"}]}'
    events = parse_openai(decode_sse([sse(f"data: {payload}", "data: [DONE]")]))
    assert text_of(events) == "chat"


def test_seed_002_non_streamed_completion_parses_to_text_usage_and_length() -> None:
    events = parse_completion(SEED_002_COMPLETION)
    assert events == [
        TextDelta("\n\nA rose by any other name would smell just as sweet\n\nBut"),
        Usage(prompt_tokens=8, completion_tokens=16),
        StreamEnd("length"),
    ]


def test_edit_answer_gives_the_first_choice_text() -> None:
    assert parse_edit(EDIT_ANSWER) == "What day of the week is it?"


@pytest.mark.parametrize(("body", "error"), SEED_BODIES)
def test_edit_of_every_seed_error_body_raises_its_class(body: str, error: type) -> None:
    with pytest.raises(error):
        parse_edit(json.loads(body), status=200)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"error": {"message": "The model does not exist", "code": "model_not_found"}},
            ModelNotFound,
        ),
        ({"object": "edit", "choices": []}, Unavailable),
        ({"object": "edit", "choices": [{"index": 0}]}, Unavailable),
        ("<html>oops</html>", Unavailable),
    ],
)
def test_edit_answers_without_text_raise(body: object, error: type) -> None:
    with pytest.raises(error):
        parse_edit(body, status=200)


def test_wrapper_plain_completion_answer_is_its_data_pieces_joined() -> None:
    body = {"code": 0, "data": ["\n\nThis is indeed a test."], "message": "响应成功"}
    assert parse_chat_answer(body) == [TextDelta("\n\nThis is indeed a test."), StreamEnd("stop")]


@pytest.mark.parametrize(
    "body",
    [
        {"code": 0, "data": ["What day of the week is it?"], "message": "响应成功"},
        {"code": 0, "data": "What day of the week is it?", "message": "响应成功"},
        {"code": 0, "data": {"content": "What day of the week is it?"}, "message": "响应成功"},
        {"code": 0, "data": {"text": "What day of the week is it?"}, "message": "响应成功"},
        EDIT_ANSWER,
    ],
)
def test_wrapper_edit_answer_shapes_all_give_the_edited_text(body: object) -> None:
    assert parse_edit_answer(body) == "What day of the week is it?"


@pytest.mark.parametrize(
    "body",
    [
        {"code": 1, "data": "Request failed with status code 401", "message": "error"},
        {"code": 0, "data": None, "message": "响应成功"},
        {"code": 0, "data": [], "message": "响应成功"},
    ],
)
def test_wrapper_edit_errors_and_empty_answers_raise(body: object) -> None:
    with pytest.raises(Exception) as caught:
        parse_edit_answer(body, status=200)
    assert type(caught.value).__module__ == "bot.errors"
