"""Seed 000's line protocol and JSON answers, decoded by hand: every split, every error shape."""
# ruff: noqa: E501 - error lines are kept whole, one per line

from __future__ import annotations

import json

import pytest

from bot.errors import (
    AuthError,
    BadRequest,
    ContextTooLong,
    ProviderError,
    QuotaError,
    RateLimited,
    StreamCut,
    Unavailable,
)
from bot.providers.base import ModelInfo, ProviderSession, StreamEnd, StreamEvent, TextDelta
from bot.providers.classify import classify_error, is_wrapper_error
from bot.providers.wrapper_decoder import (
    WrapperLineDecoder,
    WrapperModels,
    WrapperStreamParser,
    parse_chat_answer,
    parse_send_answer,
    parse_wrapper_models,
)
from tests.fakes.wrapper import (
    SEED_000_CHAT_STREAM,
    SEED_000_CHAT_STREAM_TEXT,
    SEED_000_CHATCODE,
    SEED_000_COMPLETIONS_STREAM,
    SEED_000_MODELS,
)

SEED_000_EVENTS: list[StreamEvent] = [
    *(TextDelta(c) for c in SEED_000_CHAT_STREAM_TEXT),
    ProviderSession(SEED_000_CHATCODE),
    StreamEnd("stop"),
]


def decode(chunks: list[bytes]) -> list[StreamEvent]:
    """Feed ``chunks`` through the line decoder and the parser, then end the body."""
    decoder = WrapperLineDecoder()
    parser = WrapperStreamParser(provider="wrapper")
    events: list[StreamEvent] = []
    for chunk in chunks:
        for message in decoder.feed(chunk):
            events += parser.feed_message(message)
    for message in decoder.flush():
        events += parser.feed_message(message)
    return events + parser.close()


def decode_error(chunks: list[bytes]) -> tuple[list[StreamEvent], ProviderError]:
    decoder = WrapperLineDecoder()
    parser = WrapperStreamParser(provider="wrapper")
    events: list[StreamEvent] = []
    try:
        for chunk in chunks:
            for message in decoder.feed(chunk):
                events += parser.feed_message(message)
        for message in decoder.flush():
            events += parser.feed_message(message)
        parser.close()
    except ProviderError as exc:
        return events, exc
    raise AssertionError(f"no error; events: {events}")


def sse_framed(data: bytes) -> bytes:
    """The same lines as server-sent events, the way an /sse path would frame them."""
    lines = [line for line in data.decode().split("\n") if line]
    return "".join(f"data: {line}\n\n" for line in lines).encode()


# --- the document's streams --------------------------------------------------------------------


def test_seed_chat_stream_gives_text_then_the_chatcode_then_one_end() -> None:
    assert decode([SEED_000_CHAT_STREAM]) == SEED_000_EVENTS


def test_seed_completions_stream_gives_its_text_without_a_session() -> None:
    events = decode([SEED_000_COMPLETIONS_STREAM])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "\n\nThis is a test."
    assert events[-1] == StreamEnd("stop")
    assert not any(isinstance(e, ProviderSession) for e in events)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(SEED_000_CHAT_STREAM, id="lf"),
        pytest.param(SEED_000_CHAT_STREAM.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(SEED_000_CHAT_STREAM.replace(b"\n", b"\r"), id="cr"),
        pytest.param(sse_framed(SEED_000_CHAT_STREAM), id="sse-data"),
        pytest.param(sse_framed(SEED_000_CHAT_STREAM).replace(b"\n", b"\r\n"), id="sse-crlf"),
    ],
)
def test_split_at_every_byte_offset_gives_the_same_events(data: bytes) -> None:
    for offset in range(len(data) + 1):
        assert decode([data[:offset], data[offset:]]) == SEED_000_EVENTS, offset


def test_fed_one_byte_at_a_time_gives_the_same_events() -> None:
    data = SEED_000_CHAT_STREAM.replace(b"\n", b"\r\n")
    assert decode([data[i : i + 1] for i in range(len(data))]) == SEED_000_EVENTS


def test_blank_lines_whitespace_a_bom_and_no_final_newline_are_tolerated() -> None:
    lines = SEED_000_CHAT_STREAM.strip().split(b"\n")
    data = b"\xef\xbb\xbf\n\n" + b"\n  \n".join(lines)  # no newline after the end line
    assert decode([data]) == SEED_000_EVENTS


def test_sse_comments_ids_and_event_names_are_not_lines() -> None:
    data = (
        b": keep-alive\n"
        b"id: 1\n"
        b"event: message\n"
        b'data: {"code":0,"data":"hi","message":"continue"}\n\n'
        b"retry: 1000\n"
        b'data:{"code":0,"data":"[DONE]","message":"end"}\n\n'
    )
    assert decode([data]) == [TextDelta("hi"), StreamEnd("stop")]


def test_unknown_kinds_missing_or_string_codes_and_empty_pieces_are_tolerated() -> None:
    data = (
        b'{"code":0,"data":"queued","message":"progress"}\n'
        b'{"data":"a","message":"continue"}\n'
        b'{"code":"0","data":"b","message":"continue"}\n'
        b'{"code":0,"data":"","message":"continue"}\n'
        b'{"code":0,"data":null,"message":"code"}\n'
        b'{"code":0,"data":"c","message":"code"}\n'
        b"not json at all\n"
        b'["a list"]\n'
        b'{"code":0,"data":"[DONE]","message":"end"}\n'
    )
    assert decode([data]) == [
        TextDelta("a"),
        TextDelta("b"),
        ProviderSession("c"),
        StreamEnd("stop"),
    ]


def test_done_data_or_a_bare_done_line_ends_the_stream_too() -> None:
    assert decode([b'{"code":0,"data":"x","message":"continue"}\n{"data":"[DONE]"}\n']) == [
        TextDelta("x"),
        StreamEnd("stop"),
    ]
    assert decode([b'{"code":0,"data":"x","message":"continue"}\ndata: [DONE]\n\n']) == [
        TextDelta("x"),
        StreamEnd("stop"),
    ]


def test_nothing_after_end_is_parsed() -> None:
    data = (
        b'{"code":0,"data":"a","message":"end"}\n'
        b'{"code":0,"data":"late","message":"continue"}\n'
        b'{"code":1,"data":"late error","message":"error"}\n'
    )
    assert decode([data]) == [StreamEnd("stop")]


# --- where the stream ends ---------------------------------------------------------------------


def test_body_ending_after_text_without_end_is_a_stream_cut() -> None:
    events, error = decode_error([b'{"code":0,"data":"half","message":"continue"}\n'])
    assert events == [TextDelta("half")]
    assert isinstance(error, StreamCut)


def test_body_ending_after_the_chatcode_without_end_is_a_stream_cut_after_the_session() -> None:
    data = SEED_000_CHAT_STREAM.rsplit(b'{"code":0,"data":"[DONE]"', 1)[0]
    events, error = decode_error([data])
    assert events == SEED_000_EVENTS[:-1]
    assert isinstance(error, StreamCut)


def test_empty_body_is_a_stream_cut() -> None:
    _, error = decode_error([b""])
    assert isinstance(error, StreamCut)


def test_a_pretty_printed_json_error_instead_of_a_stream_is_classified() -> None:
    body = json.dumps({"code": 401, "data": None, "message": "invalid key"}, indent=2).encode()
    events, error = decode_error([body])
    assert events == []
    assert isinstance(error, AuthError)


def test_a_plain_text_body_instead_of_a_stream_is_unavailable_with_its_text() -> None:
    _, error = decode_error([b"Internal Server Error\n"])
    assert isinstance(error, Unavailable)
    assert "Internal Server Error" in error.detail


# --- error lines -------------------------------------------------------------------------------

# message "error": "错误返回，此时文字可能丢失". The document gives no example, so these are the
# shapes a Node service passes on: axios's and openai-node's messages, or OpenAI's error object.
ERROR_LINES = [
    pytest.param(
        {"code": 1, "data": "Request failed with status code 429", "message": "error"},
        RateLimited,
        id="axios-429",
    ),
    pytest.param(
        {"code": 1, "data": "Request failed with status code 401", "message": "error"},
        AuthError,
        id="axios-401",
    ),
    pytest.param(
        {"code": -1, "data": "Request failed with status code 503", "message": "error"},
        Unavailable,
        id="axios-503",
    ),
    pytest.param(
        {
            "code": 1,
            "data": "400 This model's maximum context length is 4097 tokens",
            "message": "error",
        },
        ContextTooLong,
        id="openai-node-context",
    ),
    pytest.param(
        {"code": 1, "data": "429 You exceeded your current quota", "message": "error"},
        QuotaError,
        id="openai-node-quota",
    ),
    pytest.param(
        {
            "code": 1,
            "data": {
                "error": {
                    "message": "bad key",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            "message": "error",
        },
        AuthError,
        id="openai-error-object",
    ),
    pytest.param(
        {
            "code": 1,
            "data": '{"error":{"message":"This model\'s maximum context length is 4097 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}',
            "message": "error",
        },
        ContextTooLong,
        id="openai-error-as-json-text",
    ),
    pytest.param(
        {"code": 401, "data": "invalid key", "message": "error"}, AuthError, id="status-as-code"
    ),
    pytest.param(
        {"code": 1, "data": "socket hang up", "message": "error"}, Unavailable, id="no-status"
    ),
    pytest.param({"code": 0, "data": None, "message": "error"}, Unavailable, id="no-reason"),
    pytest.param(
        {"code": 500, "data": None, "message": "服务器内部错误"}, Unavailable, id="non-zero-code"
    ),
    pytest.param(
        {"code": "400", "message": "参数错误"}, BadRequest, id="non-zero-string-code-no-data"
    ),
]


@pytest.mark.parametrize(("line", "expected"), ERROR_LINES)
def test_error_lines_raise_their_classified_error(
    line: dict[str, object], expected: type[ProviderError]
) -> None:
    data = b'{"code":0,"data":"so far","message":"continue"}\n' + json.dumps(line).encode() + b"\n"
    events, error = decode_error([data])
    assert events == [TextDelta("so far")]
    assert type(error) is expected
    assert error.provider == "wrapper"


@pytest.mark.parametrize(("line", "expected"), ERROR_LINES)
def test_classify_error_reads_the_wrapper_error_shapes(
    line: dict[str, object], expected: type[ProviderError]
) -> None:
    assert type(classify_error(200, line)) is expected
    assert type(classify_error(None, json.dumps(line))) is expected


def test_an_sse_error_event_raises_its_classified_error() -> None:
    data = b'event: error\ndata: {"code":0,"data":"Request failed with status code 429"}\n\n'
    _, error = decode_error([data])
    assert isinstance(error, RateLimited)


def test_error_details_keep_the_reason_and_blank_the_key() -> None:
    line = {
        "code": 1,
        "data": "401 Incorrect API key provided: sk-abcdef123456",
        "message": "error",
    }
    error = classify_error(None, line, secrets=("sk-abcdef123456",))
    assert isinstance(error, AuthError)
    assert "Incorrect API key provided" in error.detail
    assert "sk-abcdef123456" not in error.detail


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"code": 0, "data": "x", "message": "continue"}, False),
        ({"code": 0, "data": "x", "message": "code"}, False),
        ({"code": 0, "data": "[DONE]", "message": "end"}, False),
        ({"code": 0, "data": {}, "message": "响应成功"}, False),
        ({"code": 7, "data": "x", "message": "continue"}, False),
        ({"data": "x", "message": "error"}, True),
        ({"code": 500, "data": None, "message": "服务器错误"}, True),
        ({"code": "1", "message": "失败"}, True),
        ({"code": "ok", "message": "fine"}, False),
        ({"object": "list", "data": []}, False),
        (["a"], False),
    ],
)
def test_is_wrapper_error(obj: object, expected: bool) -> None:
    assert is_wrapper_error(obj) is expected


# --- non-streamed answers ----------------------------------------------------------------------

# POST /openai/chat, the document's "成功响应示例".
SEED_000_CHAT_ANSWER = {
    "code": 0,
    "data": {
        "chatcode": "MjAyMy0wNS0zMCAxMTowOTo1NQ==",
        "role": "assistant",
        "content": "你第一句话是：“你是什么喵~”",
    },
    "message": "响应成功",
}

# POST /send (Steamship), the document's "成功响应示例".
SEED_000_SEND_ANSWER = {"text": "我是GPT-4,很高兴认识你", "fileId": "xxx"}


def test_plain_chat_answer_gives_its_text_its_chatcode_and_an_end() -> None:
    assert parse_chat_answer(SEED_000_CHAT_ANSWER) == [
        TextDelta("你第一句话是：“你是什么喵~”"),
        ProviderSession("MjAyMy0wNS0zMCAxMTowOTo1NQ=="),
        StreamEnd("stop"),
    ]


def test_plain_answer_of_text_pieces_is_joined() -> None:
    body = {"code": 0, "data": ["\n\nThis is indeed a test."], "message": "响应成功"}
    assert parse_chat_answer(body) == [TextDelta("\n\nThis is indeed a test."), StreamEnd("stop")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"code": 1, "data": "Request failed with status code 429", "message": "error"},
            RateLimited,
        ),
        ({"code": 500, "data": None, "message": "服务器错误"}, Unavailable),
        ({"code": 0, "data": None, "message": "响应成功"}, Unavailable),
        ({"error": {"message": "bad key", "code": "invalid_api_key"}}, AuthError),
        ("not an object", Unavailable),
    ],
)
def test_plain_chat_error_bodies_are_classified(
    body: object, expected: type[ProviderError]
) -> None:
    with pytest.raises(expected):
        parse_chat_answer(body, status=200)


def test_send_answer_gives_its_text_and_the_file_id_as_the_session() -> None:
    assert parse_send_answer(SEED_000_SEND_ANSWER) == [
        TextDelta("我是GPT-4,很高兴认识你"),
        ProviderSession("xxx"),
        StreamEnd("stop"),
    ]


def test_send_answer_without_a_file_id_has_no_session() -> None:
    assert parse_send_answer({"text": "hi"}) == [TextDelta("hi"), StreamEnd("stop")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"fileId": "xxx"}, Unavailable),
        ({"code": 1, "data": "Request failed with status code 401", "message": "error"}, AuthError),
        ({"error": "rate limit exceeded"}, RateLimited),
    ],
)
def test_send_error_bodies_are_classified(body: object, expected: type[ProviderError]) -> None:
    with pytest.raises(expected):
        parse_send_answer(body, status=200)


# --- models ------------------------------------------------------------------------------------


def test_seed_models_give_the_reported_then_the_suggested_models_and_the_suggestions() -> None:
    parsed = parse_wrapper_models(SEED_000_MODELS)
    assert parsed.suggest == {
        "chat": ("gpt-4",),
        "completions": ("text-davinci-003",),
        "edits": ("text-davinci-edit-001",),
        "audio.transcriptions": ("whisper-1",),
        "audio.translations": ("whisper-1",),
        "finetunes": ("davinci",),
        "embeddings": ("text-embedding-ada-002",),
        "moderations": ("text-moderation-stable",),
    }
    assert [m.id for m in parsed.models] == [
        "whisper-1",
        "gpt-4",
        "text-davinci-003",
        "text-davinci-edit-001",
        "davinci",
        "text-embedding-ada-002",
        "text-moderation-stable",
    ]
    whisper, gpt4 = parsed.models[:2]
    assert whisper.extra == {"suggested_for": ("audio.transcriptions", "audio.translations")}
    assert gpt4.extra == {"suggested_for": ("chat",), "listed": False}


def test_model_objects_and_duplicates_are_read() -> None:
    body = {
        "code": 0,
        "data": {
            "models": [{"id": "gpt-4", "owned_by": "openai", "created": 1}, "gpt-4", "", 3],
            "suggest": {"chat": ["gpt-4", 5]},
        },
        "message": "响应成功",
    }
    (model,) = parse_wrapper_models(body).models
    assert model == ModelInfo("gpt-4", "openai")
    assert model.extra == {"created": 1, "suggested_for": ("chat",)}


@pytest.mark.parametrize(
    "body",
    [{"code": 0, "message": "响应成功"}, {"code": 0, "data": "?"}, [], "text"],
)
def test_models_body_without_data_gives_nothing(body: object) -> None:
    assert parse_wrapper_models(body) == WrapperModels()


def test_models_error_body_raises() -> None:
    with pytest.raises(Unavailable):
        parse_wrapper_models({"code": 500, "data": None, "message": "查询失败"})
