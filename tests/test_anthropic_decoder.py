"""AnthropicStreamParser over recorded Messages streams split at every byte offset."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from bot.errors import (
    AuthError,
    ContentRejected,
    ProviderError,
    RateLimited,
    StreamCut,
    Unavailable,
)
from bot.providers.anthropic_decoder import (
    AnthropicStreamParser,
    finish_reason,
    parse_message,
)
from bot.providers.base import StreamEnd, StreamEvent, TextDelta, ToolCallDelta, Usage
from bot.providers.decoders import SSEMessage
from tests.seeds import SEED_004_NATIVE_TOOL_STREAM, SEED_004_TOOL_STREAM, anthropic_events
from tests.streams import decode_sse, parse_anthropic, parse_openai, text_of

# A plain text answer with thinking first, Chinese text, and an unknown event type.
THINKING_STREAM = anthropic_events(
    '{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}',
    '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"用户问好。"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}',
    '{"type":"content_block_stop","index":0}',
    '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"你好，"}}',
    '{"type":"future_event","payload":{"anything":true}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"x"}}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"世界 🌍"}}',
    '{"type":"content_block_stop","index":1}',
    '{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":7}}',
    '{"type":"message_stop"}',
)

RECORDED = {
    "seed004-native-tools": SEED_004_NATIVE_TOOL_STREAM,
    "thinking": THINKING_STREAM,
    "thinking-crlf": THINKING_STREAM.replace(b"\n", b"\r\n"),
}


def feed_all(parser: AnthropicStreamParser, data: bytes) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for message in decode_sse([data]):
        events += parser.feed_message(message)
    return events


# --- recorded streams ------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDED)
def test_every_split_offset_gives_the_same_events(name: str) -> None:
    data = RECORDED[name]
    events = parse_anthropic(decode_sse([data]))
    assert events[-1].__class__ is StreamEnd
    for offset in range(len(data) + 1):
        assert parse_anthropic(decode_sse([data[:offset], data[offset:]])) == events, (
            f"split at {offset}"
        )


@pytest.mark.parametrize("name", RECORDED)
def test_one_byte_feeds_give_the_same_events(name: str) -> None:
    data = RECORDED[name]
    assert parse_anthropic(
        decode_sse(data[i : i + 1] for i in range(len(data)))
    ) == parse_anthropic(decode_sse([data]))


def test_seed_004_native_stream_gives_what_ohmygpt_translates_it_into() -> None:
    native = parse_anthropic(decode_sse([SEED_004_NATIVE_TOOL_STREAM]))
    translated = parse_openai(decode_sse([SEED_004_TOOL_STREAM]))
    assert native == translated


def test_seed_004_native_stream_text_tool_call_usage_and_end() -> None:
    events = parse_anthropic(decode_sse([SEED_004_NATIVE_TOOL_STREAM]))
    assert text_of(events) == (
        "I'll help you find out the current weather in Boston. "
        "I'll retrieve the current weather information for you."
    )
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(0, "toolu_01RdBwK8GsN7sm6dyDteDc3e", "get_current_weather")
    assert {c.index for c in calls} == {0}
    arguments = json.loads("".join(c.arguments for c in calls))
    assert arguments == {"location": "Boston, MA", "unit": "fahrenheit"}
    assert events[-2:] == [Usage(376, 100), StreamEnd("tool_calls")]


def test_thinking_signature_citations_and_unknown_events_give_no_text() -> None:
    events = parse_anthropic(decode_sse([THINKING_STREAM]))
    assert events == [
        TextDelta("你好，"),
        TextDelta("世界 🌍"),
        Usage(prompt_tokens=125, completion_tokens=7),
        StreamEnd("length"),
    ]


# --- events one by one ------------------------------------------------------------------------


def event(payload: Mapping[str, object], name: str | None = None) -> SSEMessage:
    return SSEMessage(json.dumps(payload), name if name is not None else str(payload["type"]))


START = event(
    {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}
)


def text(piece: str, index: int = 0) -> SSEMessage:
    return event(
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": piece},
        }
    )


def stop_reason(reason: str, output_tokens: int = 3) -> SSEMessage:
    return event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )


STOP = event({"type": "message_stop"})


def test_message_stop_ends_once_and_nothing_after_it_is_parsed() -> None:
    parser = AnthropicStreamParser()
    events: list[StreamEvent] = []
    for message in (START, text("a"), stop_reason("end_turn"), STOP, text("late"), STOP):
        events += parser.feed_message(message)
    assert events == [TextDelta("a"), Usage(9, 3), StreamEnd("stop")]
    assert parser.done
    assert parser.close() == []


def test_output_tokens_are_cumulative_so_the_last_count_wins() -> None:
    parser = AnthropicStreamParser()
    for message in (START, text("a"), stop_reason("end_turn", 5), stop_reason("end_turn", 12)):
        parser.feed_message(message)
    assert parser.feed_message(STOP) == [Usage(9, 12), StreamEnd("stop")]


def test_close_after_stop_reason_without_message_stop_ends_normally() -> None:
    parser = AnthropicStreamParser()
    for message in (START, text("all"), stop_reason("max_tokens", 4)):
        parser.feed_message(message)
    assert parser.finished
    assert not parser.done
    assert parser.close() == [Usage(9, 4), StreamEnd("length")]


def test_close_without_stop_reason_raises_stream_cut() -> None:
    parser = AnthropicStreamParser(provider="claude")
    parser.feed_message(START)
    parser.feed_message(text("half"))
    assert parser.started
    assert not parser.finished
    with pytest.raises(StreamCut) as info:
        parser.close()
    assert info.value.provider == "claude"


def test_nothing_started_before_text_or_a_tool_call() -> None:
    parser = AnthropicStreamParser()
    parser.feed_message(START)
    parser.feed_message(event({"type": "ping"}))
    assert not parser.started
    parser.feed_message(
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            }
        )
    )
    assert parser.started


def test_stream_without_any_usage_emits_no_usage() -> None:
    parser = AnthropicStreamParser()
    parser.feed_message(text("x"))
    parser.feed_message(event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}))
    assert parser.feed_message(STOP) == [StreamEnd("stop")]


def test_two_tool_blocks_are_numbered_by_tool_call_not_block_index() -> None:
    parser = AnthropicStreamParser()
    events: list[StreamEvent] = []
    for index, name in ((1, "first"), (3, "second")):
        events += parser.feed_message(
            event(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": f"t{index}", "name": name},
                }
            )
        )
        events += parser.feed_message(
            event(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"},
                }
            )
        )
    assert events == [
        ToolCallDelta(0, "t1", "first"),
        ToolCallDelta(0, arguments="{}"),
        ToolCallDelta(1, "t3", "second"),
        ToolCallDelta(1, arguments="{}"),
    ]


def test_data_type_wins_over_the_event_name_and_a_missing_type_uses_the_name() -> None:
    parser = AnthropicStreamParser()
    misnamed = SSEMessage(text("a").data, "message")
    assert parser.feed_message(misnamed) == [TextDelta("a")]
    untyped = SSEMessage(json.dumps({"index": 0, "delta": {"type": "text_delta", "text": "b"}}))
    assert parser.feed_message(untyped) == []
    named = SSEMessage(untyped.data, "content_block_delta")
    assert parser.feed_message(named) == [TextDelta("b")]


def test_non_json_and_empty_payloads_are_ignored() -> None:
    parser = AnthropicStreamParser()
    assert parser.feed_message(SSEMessage("keep-alive", "ping")) == []
    assert parser.feed_message(SSEMessage("")) == []
    assert parser.feed_message(SSEMessage("[1, 2]")) == []


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("something_new", "something_new"),
        (None, "stop"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(reason: str | None, expected: str) -> None:
    assert finish_reason(reason) == expected


# --- errors -----------------------------------------------------------------------------------


def test_refusal_raises_content_rejected_after_the_text_so_far() -> None:
    parser = AnthropicStreamParser(provider="claude")
    assert parser.feed_message(START) == []
    assert parser.feed_message(text("I can")) == [TextDelta("I can")]
    with pytest.raises(ContentRejected) as info:
        parser.feed_message(stop_reason("refusal"))
    assert info.value.provider == "claude"
    assert parser.done


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", Unavailable),
        ("api_error", Unavailable),
        ("rate_limit_error", RateLimited),
        ("authentication_error", AuthError),
    ],
)
def test_error_event_mid_stream_raises_the_classified_error(
    error_type: str, expected: type[ProviderError]
) -> None:
    parser = AnthropicStreamParser(provider="claude", secrets=("sk-ant-secret",))
    parser.feed_message(START)
    parser.feed_message(text("so far"))
    body = {"type": "error", "error": {"type": error_type, "message": "bad sk-ant-secret"}}
    with pytest.raises(expected) as info:
        parser.feed_message(event(body))
    assert info.value.status is None
    assert info.value.provider == "claude"
    assert "sk-ant-secret" not in info.value.detail
    assert error_type in info.value.detail


def test_overloaded_error_event_is_retryable() -> None:
    parser = AnthropicStreamParser()
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(Unavailable) as info:
        parser.feed_message(event(overloaded))
    assert info.value.retryable


def test_error_event_whose_data_is_not_json_raises_unavailable() -> None:
    with pytest.raises(Unavailable):
        AnthropicStreamParser().feed_message(SSEMessage("upstream exploded", "error"))


def test_error_object_without_a_type_raises() -> None:
    with pytest.raises(RateLimited):
        AnthropicStreamParser().feed_message(SSEMessage('{"error": {"message": "rate limit"}}'))


# --- whole messages ---------------------------------------------------------------------------


def test_parse_message_of_a_whole_answer_with_text_and_a_tool_call() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Checking the weather."},
            {
                "type": "tool_use",
                "id": "toolu_01HB4BABmfcNDCJKG5eiVmQv",
                "name": "get_current_weather",
                "input": {"location": "Boston, MA", "unit": "fahrenheit"},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 376, "output_tokens": 104},
    }
    assert parse_message(body) == [
        TextDelta("Checking the weather."),
        ToolCallDelta(0, "toolu_01HB4BABmfcNDCJKG5eiVmQv", "get_current_weather"),
        ToolCallDelta(0, arguments='{"location": "Boston, MA", "unit": "fahrenheit"}'),
        Usage(376, 104),
        StreamEnd("tool_calls"),
    ]


def test_parse_message_of_an_error_body_raises_its_class() -> None:
    body = {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    with pytest.raises(AuthError):
        parse_message(body, status=200)


def test_parse_message_of_something_else_raises_unavailable() -> None:
    with pytest.raises(Unavailable):
        parse_message({"choices": []}, status=200)


def test_parse_message_refusal_raises_content_rejected() -> None:
    body = {"type": "message", "content": [], "stop_reason": "refusal"}
    with pytest.raises(ContentRejected):
        parse_message(body)


def test_input_usage_repeated_in_message_delta_is_kept_unless_it_is_zero() -> None:
    parser = AnthropicStreamParser()
    parser.feed_message(START)
    parser.feed_message(
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 0, "output_tokens": 4},
            }
        )
    )
    assert parser.close() == [Usage(9, 4), StreamEnd("stop")]
    parser = AnthropicStreamParser()
    parser.feed_message(START)
    parser.feed_message(
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 30, "cache_read_input_tokens": 70, "output_tokens": 4},
            }
        )
    )
    assert parser.close() == [Usage(100, 4), StreamEnd("stop")]
