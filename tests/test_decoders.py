"""SSEDecoder and OpenAIStreamParser against recorded streams split at every byte offset."""

from __future__ import annotations

import json

import pytest

from bot.errors import AuthError, ContentRejected, RateLimited, StreamCut, Unavailable
from bot.providers.base import StreamEnd, TextDelta, ToolCallDelta, Usage
from bot.providers.decoders import (
    OpenAIStreamParser,
    SSEDecoder,
    SSEMessage,
    parse_completion,
    parse_json,
)
from tests.seeds import (
    SEED_002_REDUCE_CHAT,
    SEED_002_REDUCE_COMPLETION,
    SEED_003_STREAM,
    SEED_004_TOOL_STREAM,
    SEED_004_VISION_STREAM,
)
from tests.streams import decode_sse, parse_openai, text_of

# Every awkward shape at once: CRLF, comments, id/retry/event lines, "data:" without a space,
# a keep-alive payload, no blank lines between some events, and multi-byte UTF-8.
MIXED_STREAM = (
    ": OPENROUTER PROCESSING\r\n\r\n"
    "id: 1\r\nretry: 3000\r\n"
    'data:{"choices":[{"index":0,"delta":{"role":"assistant"}}]}\r\n\r\n'
    "data: keep-alive\r\n\r\n"
    'data: {"choices":[{"index":0,"delta":{"content":"你好，"}}]}\r\n'
    'data: {"choices":[{"index":0,"delta":{"content":"世界 🌍👩‍💻"}}]}\r\n\r\n'
    ": PING\r\n"
    "event: message\r\n"
    'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\r\n\r\n'
    'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\r\n\r\n'
    "data: [DONE]\r\n\r\n"
).encode()

RECORDED = {
    "seed003": SEED_003_STREAM,
    "seed004-tools": SEED_004_TOOL_STREAM,
    "seed004-vision": SEED_004_VISION_STREAM,
    "seed002-reduce-chat": SEED_002_REDUCE_CHAT,
    "seed002-reduce-completion": SEED_002_REDUCE_COMPLETION,
    "mixed": MIXED_STREAM,
}


# --- recorded streams ------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDED)
def test_every_split_offset_gives_the_same_events(name: str) -> None:
    data = RECORDED[name]
    whole = decode_sse([data])
    events = parse_openai(whole)
    for offset in range(len(data) + 1):
        messages = decode_sse([data[:offset], data[offset:]])
        assert messages == whole, f"split at byte {offset}"
        assert parse_openai(messages) == events, f"split at byte {offset}"


@pytest.mark.parametrize("name", RECORDED)
def test_one_byte_feeds_give_the_same_events(name: str) -> None:
    data = RECORDED[name]
    whole = decode_sse([data])
    assert decode_sse(data[i : i + 1] for i in range(len(data))) == whole


@pytest.mark.parametrize("name", ["seed003", "seed004-tools", "seed004-vision", "mixed"])
def test_lone_cr_and_crlf_line_endings_decode_like_lf(name: str) -> None:
    lf = RECORDED[name].replace(b"\r\n", b"\n")
    expected = decode_sse([lf])
    for newline in (b"\r\n", b"\r"):
        data = lf.replace(b"\n", newline)
        assert decode_sse([data]) == expected
        for offset in range(len(data) + 1):
            assert decode_sse([data[:offset], data[offset:]]) == expected, (
                f"{newline!r} at {offset}"
            )


def test_seed_003_stream_is_the_text_then_stop() -> None:
    events = parse_openai(decode_sse([SEED_003_STREAM]))
    assert events == [
        TextDelta("1"),
        TextDelta("+"),
        TextDelta("1"),
        TextDelta("="),
        TextDelta("2"),
        TextDelta("。"),
        StreamEnd("stop"),
    ]


def test_seed_004_tool_stream_gives_text_tool_fragments_usage_then_end() -> None:
    events = parse_openai(decode_sse([SEED_004_TOOL_STREAM]))
    assert text_of(events) == (
        "I'll help you find out the current weather in Boston. "
        "I'll retrieve the current weather information for you."
    )
    assert events[-2:] == [Usage(prompt_tokens=376, completion_tokens=100), StreamEnd("tool_calls")]
    fragments = [e for e in events if isinstance(e, ToolCallDelta)]
    assert fragments[0] == ToolCallDelta(
        index=0, id="toolu_01RdBwK8GsN7sm6dyDteDc3e", name="get_current_weather", arguments=""
    )
    assert all(f.id is None and f.name is None for f in fragments[1:])


def test_tool_call_fragments_accumulate_by_index_into_valid_json() -> None:
    calls: dict[int, dict[str, str]] = {}
    for event in parse_openai(decode_sse([SEED_004_TOOL_STREAM])):
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = event.id or call["id"]
            call["name"] = event.name or call["name"]
            call["arguments"] += event.arguments
    assert list(calls) == [0]
    assert calls[0]["id"] == "toolu_01RdBwK8GsN7sm6dyDteDc3e"
    assert calls[0]["name"] == "get_current_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Boston, MA", "unit": "fahrenheit"}


def test_seed_004_vision_stream_without_finish_reason_ends_at_done() -> None:
    events = parse_openai(decode_sse([SEED_004_VISION_STREAM]))
    assert (
        text_of(events)
        == " 这是五个不同角色的表情包。他们分别是:\n- 胡桃\n- 宵宫\n- 早柚\n- 刻晴\n- 珊瑚宫心海"
    )
    assert events[-1] == StreamEnd("stop")


def test_reduce_stream_chat_shapes_decode_to_text() -> None:
    events = parse_openai(decode_sse([SEED_002_REDUCE_CHAT]))
    assert events == [*(TextDelta(c) for c in "闪光的夜晚，"), StreamEnd("stop")]


def test_reduce_stream_completion_shapes_decode_to_text() -> None:
    events = parse_openai(decode_sse([SEED_002_REDUCE_COMPLETION]))
    assert events == [TextDelta("\n"), TextDelta("\n"), TextDelta("清"), StreamEnd("stop")]


def test_mixed_stream_skips_comments_keepalives_and_role_and_keeps_utf8() -> None:
    events = parse_openai(decode_sse([MIXED_STREAM]))
    assert events == [
        TextDelta("你好，"),
        TextDelta("世界 🌍👩‍💻"),
        TextDelta("ok"),
        Usage(prompt_tokens=7, completion_tokens=3),
        StreamEnd("stop"),
    ]


# --- SSEDecoder ------------------------------------------------------------------------------


def test_data_with_and_without_space_after_the_colon() -> None:
    assert decode_sse([b"data: a\ndata:b\ndata:  c\n"]) == [
        SSEMessage("a"),
        SSEMessage("b"),
        SSEMessage(" c"),
    ]


def test_comments_id_and_retry_lines_are_ignored() -> None:
    assert decode_sse([b": hi\nid: 7\nretry: 10\n:\ndata: x\n\n"]) == [SSEMessage("x")]


def test_event_name_applies_to_the_next_data_line_only() -> None:
    data = b"event: error\ndata: a\ndata: b\n\nevent: ping\n\ndata: c\n"
    assert decode_sse([data]) == [SSEMessage("a", "error"), SSEMessage("b"), SSEMessage("c")]


def test_every_data_line_is_its_own_message_even_without_blank_lines() -> None:
    assert decode_sse([b"data: 1\ndata: 2\ndata: 3\n"]) == [
        SSEMessage("1"),
        SSEMessage("2"),
        SSEMessage("3"),
    ]


def test_cr_at_end_of_one_feed_and_lf_at_start_of_next_is_one_line_break() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == [SSEMessage("a")]
    assert decoder.feed(b"\ndata: b\r") == [SSEMessage("b")]
    assert decoder.feed(b"\r") == []  # a blank line, not a lost break
    assert decoder.feed(b"data: c\n") == [SSEMessage("c")]
    assert decoder.flush() == []


def test_cr_then_a_feed_that_decodes_to_nothing_then_lf_is_one_line_break() -> None:
    decoder = SSEDecoder()
    emoji = "🌍".encode()
    assert decoder.feed(b"data: a\r") == [SSEMessage("a")]
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\ndata: " + emoji[:2]) == []
    assert decoder.feed(emoji[2:] + b"\n") == [SSEMessage("🌍")]


def test_multibyte_character_split_across_feeds_survives() -> None:
    data = "data: 中文😀\n".encode()
    for offset in range(len(data) + 1):
        assert decode_sse([data[:offset], data[offset:]]) == [SSEMessage("中文😀")]


def test_unterminated_last_line_is_returned_by_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\ndata: [DONE]") == [SSEMessage("1")]
    assert decoder.flush() == [SSEMessage("[DONE]")]


def test_invalid_utf8_becomes_replacement_characters_not_an_error() -> None:
    assert decode_sse([b"data: a\xff\xfeb\n"]) == [SSEMessage("a\ufffd\ufffdb")]


def test_leading_byte_order_mark_is_dropped() -> None:
    assert decode_sse([b"\xef\xbb", b"\xbfdata: x\n"]) == [SSEMessage("x")]


def test_unicode_line_separators_inside_data_do_not_split_lines() -> None:
    payload = '{"choices":[{"delta":{"content":"a\u2028b\x85c\x0cd"}}]}'
    assert decode_sse([f"data: {payload}\n".encode()]) == [SSEMessage(payload)]


def test_data_field_without_colon_is_an_empty_message() -> None:
    assert decode_sse([b"data\n"]) == [SSEMessage("")]


def test_a_five_megabyte_line_fed_in_kilobyte_pieces_decodes_whole() -> None:
    content = "x" * (5 * 1024 * 1024)
    chunk = {"choices": [{"index": 0, "delta": {"content": content}}]}
    data = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    # 1 KiB feeds: a decoder that re-scanned its buffer on each feed would do ~13 GB of work
    # here and take minutes; bench/chunk_bench.py times the decoders.
    messages = decode_sse(data[i : i + 1024] for i in range(0, len(data), 1024))
    assert [len(m.data) for m in messages] == [len(data) - len(b"data: \n\ndata: [DONE]\n\n"), 6]
    assert parse_openai(messages) == [TextDelta(content), StreamEnd("stop")]


# --- OpenAIStreamParser ----------------------------------------------------------------------


def chunk(*choices: dict[str, object], **extra: object) -> str:
    return json.dumps({"object": "chat.completion.chunk", "choices": list(choices), **extra})


def test_role_only_first_delta_and_empty_content_give_nothing() -> None:
    parser = OpenAIStreamParser()
    assert parser.feed(chunk({"index": 0, "delta": {"role": "assistant"}})) == []
    assert parser.feed(chunk({"index": 0, "delta": {"role": "assistant", "content": ""}})) == []
    assert parser.feed(chunk({"index": 0, "delta": {"content": None}})) == []
    assert not parser.started


def test_only_choice_zero_is_shown_when_several_are_sent() -> None:
    parser = OpenAIStreamParser()
    events = parser.feed(
        chunk(
            {"index": 1, "delta": {"content": "B"}, "finish_reason": "length"},
            {"index": 0, "delta": {"content": "A"}, "finish_reason": None},
        )
    )
    assert events == [TextDelta("A")]
    assert parser.finish_reason is None


def test_usage_on_a_normal_chunk_follows_its_text() -> None:
    parser = OpenAIStreamParser()
    events = parser.feed(
        chunk(
            {"index": 0, "delta": {"content": "end"}, "finish_reason": "stop"},
            usage={"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        )
    )
    assert events == [TextDelta("end"), Usage(prompt_tokens=5, completion_tokens=1)]
    assert parser.finish_reason == "stop"


def test_usage_only_chunk_with_empty_choices_gives_usage() -> None:
    parser = OpenAIStreamParser()
    events = parser.feed(chunk(usage={"prompt_tokens": 9, "completion_tokens": 4}))
    assert events == [Usage(prompt_tokens=9, completion_tokens=4)]


def test_non_json_payloads_are_ignored() -> None:
    parser = OpenAIStreamParser()
    for payload in ("keep-alive", "", "{", "PING", "42", "null"):
        assert parser.feed(payload) == []
    assert not parser.done


def test_done_emits_one_stream_end_with_the_last_finish_reason_and_nothing_after() -> None:
    parser = OpenAIStreamParser()
    parser.feed(chunk({"index": 0, "delta": {}, "finish_reason": "length"}))
    assert parser.feed("[DONE]") == [StreamEnd("length")]
    assert parser.done
    assert parser.feed(chunk({"index": 0, "delta": {"content": "late"}})) == []
    assert parser.feed("[DONE]") == []
    assert parser.close() == []


def test_close_after_finish_reason_without_done_ends_normally() -> None:
    parser = OpenAIStreamParser()
    parser.feed(chunk({"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}))
    assert parser.close() == [StreamEnd("stop")]
    assert parser.done
    assert parser.close() == []


def test_close_without_done_or_finish_reason_raises_stream_cut() -> None:
    parser = OpenAIStreamParser(provider="p1")
    assert parser.feed(chunk({"index": 0, "delta": {"content": "partial"}})) == [
        TextDelta("partial")
    ]
    assert parser.started
    with pytest.raises(StreamCut) as info:
        parser.close()
    assert info.value.provider == "p1"


def test_error_object_inside_a_200_stream_raises_the_classified_error() -> None:
    parser = OpenAIStreamParser(provider="p1")
    assert parser.feed(chunk({"index": 0, "delta": {"content": "so far"}})) == [TextDelta("so far")]
    payload = json.dumps(
        {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }
    )
    with pytest.raises(RateLimited) as info:
        parser.feed(payload)
    assert info.value.provider == "p1"
    assert "rate_limit_exceeded" in info.value.detail


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ('{"error":{"message":"Upstream died","type":"server_error","code":null}}', Unavailable),
        (
            '{"error":{"code":502,"message":"Bad gateway.","param":null,"type":"cf_bad_gateway"}}',
            Unavailable,
        ),
        (
            '{"codes":900,"mess":"密钥错误或已过期，请通过微信访问yewu.bcwhkj.cn个人中心获取","data":"token"}',
            AuthError,
        ),
        ('{"error":{"message":"flagged","type":null,"code":"content_filter"}}', ContentRejected),
        ('{"error":{"message":"overloaded","code":503}}', Unavailable),
    ],
)
def test_error_shapes_inside_a_stream_raise(payload: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        OpenAIStreamParser().feed(payload)


def test_tool_call_without_index_takes_its_position() -> None:
    parser = OpenAIStreamParser()
    events = parser.feed(
        chunk(
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {"id": "a", "function": {"name": "f", "arguments": "{}"}},
                        {"id": "b", "function": {"name": "g", "arguments": ""}},
                    ]
                },
            }
        )
    )
    assert events == [
        ToolCallDelta(index=0, id="a", name="f", arguments="{}"),
        ToolCallDelta(index=1, id="b", name="g", arguments=""),
    ]
    assert parser.started


def test_parse_completion_of_a_full_answer() -> None:
    body = {
        "id": "chatcmpl-7MCqEj6w5C4fUuLcTrsDH2e6ExYkv",
        "object": "chat.completion",
        "created": 1685526934,
        "model": "gpt-3.5-turbo-1106",
        "usage": {"prompt_tokens": 41, "completion_tokens": 6, "total_tokens": 47},
        "choices": [
            {
                "message": {"role": "assistant", "content": "1+1=2。"},
                "finish_reason": "stop",
                "index": 0,
            }
        ],
        "system_fingerprint": "fp_eeff13170a",
    }
    assert parse_completion(body) == [
        TextDelta("1+1=2。"),
        Usage(prompt_tokens=41, completion_tokens=6),
        StreamEnd("stop"),
    ]


def test_parse_completion_with_tool_call_and_text_choices_both_at_index_zero() -> None:
    # Seed 004's Claude answer: the tool call and the text come as two choices, both index 0.
    body = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01HB4BABmfcNDCJKG5eiVmQv",
                            "type": "function",
                            "function": {
                                "name": "get_current_weather",
                                "arguments": '{"location":"Boston, MA","unit":"fahrenheit"}',
                            },
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            },
            {
                "index": 0,
                "message": {"role": "assistant", "content": "I'll help you check."},
                "finish_reason": "stop",
            },
        ],
        "usage": {"prompt_tokens": 376, "completion_tokens": 104, "total_tokens": 480},
    }
    assert parse_completion(body) == [
        ToolCallDelta(
            index=0,
            id="toolu_01HB4BABmfcNDCJKG5eiVmQv",
            name="get_current_weather",
            arguments='{"location":"Boston, MA","unit":"fahrenheit"}',
        ),
        TextDelta("I'll help you check."),
        Usage(prompt_tokens=376, completion_tokens=104),
        StreamEnd("stop"),
    ]


def test_parse_completion_of_an_error_body_raises() -> None:
    with pytest.raises(AuthError):
        parse_completion({"codes": 900, "mess": "密钥错误", "data": "token"})


def test_parse_completion_of_something_else_raises_unavailable() -> None:
    with pytest.raises(Unavailable):
        parse_completion({"hello": "world"})


# --- parse_json: orjson's speed, json.loads' answers -------------------------------------------

JSON_TEXTS = [
    '{"choices": [{"index": 0, "delta": {"content": "你好 🌍"}}], "created": 1700000000}',
    '{"a": NaN, "b": Infinity, "c": -Infinity}',
    "[1e400, -1e400]",
    '{"prompt_tokens": 123456789012345678901234567890}',  # beyond 64 bits
    '{"n": -9223372036854775809}',  # just below the smallest 64-bit integer
    '{"n": 18446744073709551615, "m": -9223372036854775808}',  # the 64-bit extremes
    '{"id": "1234567890123456789012345"}',  # long digits in a string
    '"\\ud800"',  # an escaped lone surrogate
    '"\ud800"',  # a raw one
    '{"a": 1, "a": 2}',
    '{"a": "\\u0000"}',
    "  [1.5, -0.0, 1E5, 0.1e-400]  ",
]

BAD_JSON_TEXTS = ["", "   ", "keep-alive", "[1,]", '{"a": 1}x', "01", '"\x00"', "\ufeff{}"]


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_parse_json_gives_what_json_loads_gives(text: str) -> None:
    # repr tells an int from a float and NaN from NaN, which == cannot.
    assert repr(parse_json(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", BAD_JSON_TEXTS)
def test_parse_json_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        json.loads(text)
    with pytest.raises(ValueError) as ours:
        parse_json(text)
    assert type(ours.value) is type(refused.value)


def test_parse_json_of_too_deep_nesting_fails_as_json_loads_does() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(text)
    with pytest.raises(RecursionError):
        parse_json(text)


def test_an_integer_beyond_64_bits_in_a_chunk_stays_an_exact_usage_count() -> None:
    parser = OpenAIStreamParser()
    huge = 123456789012345678901234567890
    chunk = f'{{"choices": [], "usage": {{"prompt_tokens": {huge}, "completion_tokens": 2}}}}'
    assert parser.feed(chunk) == [Usage(prompt_tokens=huge, completion_tokens=2)]
