"""The real OpenAICompatProvider over a real aiohttp session against the FakeProvider server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig
from bot.errors import (
    AuthError,
    ContentRejected,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    StreamCut,
    Unavailable,
)
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    ModelInfo,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.providers.http import media_type
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.read_pace import DEFAULT_HOLD_SECONDS
from tests import streams
from tests.fakes.provider import (
    Chunk,
    Cut,
    Delay,
    Done,
    ErrorResponse,
    FakeProvider,
    Finish,
    JSONCompletion,
    Raw,
    Role,
    UsageChunk,
)
from tests.seeds import SEED_004_TOOL_STREAM, SEED_BODIES
from tests.streams import decode_sse, joined, parse_openai

API_KEY = "sk-test-0123456789abcdef"

REQUEST = ChatRequest(
    model="gpt-test",
    messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "你好, hi")),
    user="user-42",
    max_tokens=64,
    temperature=0.3,
)

FAST = TimeoutConfig(connect=2.0, first_chunk=0.3, idle=0.3, total=5.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def provider_for(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    api_key: str = API_KEY,
    timeouts: TimeoutConfig = FAST,
    headers: dict[str, str] | None = None,
) -> OpenAICompatProvider:
    config = ProviderConfig(
        name="fake",
        base_url=base_url,
        api_key=api_key,
        headers=headers or {},
        timeouts=timeouts,
    )
    return OpenAICompatProvider(config, session)


async def collect(
    provider: OpenAICompatProvider, request: ChatRequest = REQUEST
) -> list[StreamEvent]:
    return await streams.collect(provider.stream_chat(request))


async def collect_until_error(
    provider: OpenAICompatProvider, request: ChatRequest = REQUEST
) -> tuple[list[StreamEvent], ProviderError]:
    return await streams.collect_until_error(provider.stream_chat(request))


# --- answers ---------------------------------------------------------------------------------


async def test_streamed_answer_yields_text_then_usage_then_one_stream_end(fake, session) -> None:
    fake.enqueue(Role(), Chunk("Hel"), Chunk("lo 🌍"), Finish("stop"), UsageChunk(12, 3), Done())
    events = await collect(provider_for(session, fake.base_url))
    assert joined(events) == [
        TextDelta("Hello 🌍"),
        Usage(prompt_tokens=12, completion_tokens=3),
        StreamEnd("stop"),
    ]


async def test_request_carries_model_messages_user_options_and_bearer_key(fake, session) -> None:
    provider = provider_for(session, fake.base_url + "/", headers={"Reduce-Stream": "true"})
    await collect(provider)
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Reduce-Stream"] == "true"
    assert request.json == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "你好, hi"},
        ],
        "stream": True,
        "user": "user-42",
        "max_tokens": 64,
        "temperature": 0.3,
    }


async def test_unset_options_and_empty_key_are_left_out_of_the_request(fake, session) -> None:
    request = ChatRequest(model="m", messages=(ChatMessage("user", "x"),))
    await collect(provider_for(session, fake.base_url, api_key=""), request)
    (recorded,) = fake.requests
    assert "Authorization" not in recorded.headers
    assert recorded.json == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
    }


async def test_configured_header_replaces_ours_whatever_its_case(fake, session) -> None:
    provider = provider_for(session, fake.base_url, headers={"authorization": "Key custom"})
    await collect(provider)
    (request,) = fake.requests
    sent = [v for k, v in request.headers.items() if k.lower() == "authorization"]
    assert sent == ["Key custom"]


async def test_unscripted_request_gets_the_echo_default(fake, session) -> None:
    events = await collect(provider_for(session, fake.base_url))
    assert streams.text_of(events) == "echo: 你好, hi"
    assert events[-1] == StreamEnd("stop")
    assert isinstance(events[-2], Usage)


async def test_recorded_seed_stream_over_http_gives_the_decoded_events(fake, session) -> None:
    fake.enqueue(Raw(SEED_004_TOOL_STREAM[:1000]), Delay(0.01), Raw(SEED_004_TOOL_STREAM[1000:]))
    events = await collect(provider_for(session, fake.base_url))
    assert joined(events) == joined(parse_openai(decode_sse([SEED_004_TOOL_STREAM])))
    assert events[-1] == StreamEnd("tool_calls")


async def test_missing_done_after_finish_reason_ends_normally(fake, session) -> None:
    fake.enqueue_stream(["a", "b"], done=False)
    events = await collect(provider_for(session, fake.base_url))
    assert joined(events) == [TextDelta("ab"), StreamEnd("stop")]


async def test_connection_cut_after_finish_reason_ends_normally(fake, session) -> None:
    fake.enqueue(Role(), Chunk("all"), Finish("length"), Cut())
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("all"), StreamEnd("length")]


async def test_json_completion_when_a_stream_was_asked_is_yielded_whole(fake, session) -> None:
    fake.enqueue(JSONCompletion("the whole answer", usage=(7, 3)))
    events = await collect(provider_for(session, fake.base_url))
    assert events == [
        TextDelta("the whole answer"),
        Usage(prompt_tokens=7, completion_tokens=3),
        StreamEnd("stop"),
    ]


async def test_nothing_after_done_is_read(fake, session) -> None:
    fake.enqueue(Role(), Chunk("a"), Done(), Chunk("ignored"), Delay(5), Done())
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("a"), StreamEnd("stop")]


async def test_stopping_early_releases_the_connection_for_the_next_request(fake, session) -> None:
    provider = provider_for(session, fake.base_url)
    fake.enqueue(Role(), Chunk("first"), Delay(5), Chunk("never"))
    stream = provider.stream_chat(REQUEST)
    assert await anext(stream) == TextDelta("first")
    await stream.aclose()  # type: ignore[attr-defined]
    fake.enqueue_stream(["second"])
    assert await collect(provider) == [TextDelta("second"), StreamEnd("stop")]


async def test_fake_records_requests_as_they_arrive(fake, session) -> None:
    fake.enqueue(Delay(0.2), Chunk("slow"), Finish(), Done())
    task = asyncio.create_task(
        collect(provider_for(session, fake.base_url, timeouts=TimeoutConfig()))
    )
    (request,) = await fake.wait_for_requests(1, timeout=2.0)
    assert not task.done()
    assert request.json["messages"][-1] == {"role": "user", "content": "你好, hi"}
    assert await task == [TextDelta("slow"), StreamEnd("stop")]


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), SEED_BODIES)
@pytest.mark.parametrize("status", [200, 400])
async def test_every_seed_error_body_over_http_becomes_its_error_class(
    fake, session, body: str, expected: type[ProviderError], status: int
) -> None:
    fake.enqueue(ErrorResponse(status, body))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert type(error) is expected
    assert (error.status, error.provider) == (status, "fake")


async def test_429_with_retry_after_seconds_sets_retry_after(fake, session) -> None:
    body = {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    fake.enqueue(ErrorResponse(429, body, headers={"Retry-After": "17"}))
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 17.0


async def test_429_with_retry_after_http_date_sets_retry_after(fake, session) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    fake.enqueue(ErrorResponse(429, b"", content_type="text/plain", headers={"Retry-After": when}))
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, RateLimited)
    assert error.retry_after is not None
    assert 100 < error.retry_after <= 120


async def test_html_error_page_is_classified_by_status(fake, session) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    fake.enqueue(ErrorResponse(502, page, content_type="text/html"))
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, Unavailable)
    assert error.detail == "HTTP 502: 502 Bad Gateway"


async def test_html_page_with_200_instead_of_a_stream_is_unavailable(fake, session) -> None:
    fake.enqueue(
        ErrorResponse(200, "<html><title>Sign in</title></html>", content_type="text/html")
    )
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, Unavailable)


async def test_cut_stream_after_text_raises_stream_cut_after_yielding_the_text(
    fake, session
) -> None:
    fake.enqueue(Role(), Chunk("partial "), Chunk("answer"), Cut())
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert joined(events) == [TextDelta("partial answer")]
    assert isinstance(error, StreamCut)
    assert isinstance(error.__cause__, aiohttp.ClientPayloadError)


async def test_body_ending_without_done_or_finish_reason_raises_stream_cut(fake, session) -> None:
    fake.enqueue(Role(), Chunk("half"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("half")]
    assert isinstance(error, StreamCut)


async def test_connection_dropped_before_headers_is_unavailable(fake, session) -> None:
    fake.enqueue(Cut())
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, Unavailable)
    assert isinstance(error.__cause__, aiohttp.ClientError)


async def test_error_object_inside_a_200_stream_raises_after_the_text(fake, session) -> None:
    error_chunk = {
        "error": {"message": "flagged", "type": "invalid_request_error", "code": "content_filter"}
    }
    fake.enqueue(
        Role(), Chunk("so far"), Raw(b"data: " + json.dumps(error_chunk).encode() + b"\n\n")
    )
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("so far")]
    assert isinstance(error, ContentRejected)
    assert error.status is None


async def test_sse_error_event_raises_the_classified_error(fake, session) -> None:
    fake.enqueue(Raw(b'event: error\ndata: {"message": "rate limit hit"}\n\n'))
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, RateLimited)


async def test_no_headers_within_first_chunk_timeout_is_provider_timeout(fake, session) -> None:
    fake.enqueue(Delay(2), Chunk("late"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert isinstance(error, ProviderTimeout)
    assert "first_chunk" in error.detail


async def test_idle_timeout_before_any_text_is_provider_timeout(fake, session) -> None:
    fake.enqueue(Role(), Delay(2), Chunk("late"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert isinstance(error, ProviderTimeout)
    assert "idle" in error.detail


async def test_idle_timeout_after_text_is_stream_cut(fake, session) -> None:
    fake.enqueue(Role(), Chunk("some"), Delay(2), Chunk("late"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("some")]
    assert isinstance(error, StreamCut)
    assert "idle" in error.detail


async def test_idle_timeout_after_finish_reason_ends_normally(fake, session) -> None:
    fake.enqueue(Role(), Chunk("done"), Finish(), Delay(2), Done())
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("done"), StreamEnd("stop")]


async def test_steady_stream_longer_than_total_timeout_is_cut(fake, session) -> None:
    timeouts = TimeoutConfig(connect=2.0, first_chunk=1.0, idle=1.0, total=0.5)
    fake.enqueue_stream([f"{i} " for i in range(40)], delay=0.05)
    events, error = await collect_until_error(
        provider_for(session, fake.base_url, timeouts=timeouts)
    )
    assert 0 < len(events) < 40
    assert isinstance(error, StreamCut)
    assert "total" in error.detail


async def test_consumer_time_between_events_does_not_count_as_idle(fake, session) -> None:
    fake.enqueue_stream(["a", "b", "c"])
    provider = provider_for(session, fake.base_url)
    events = []
    async for event in provider.stream_chat(REQUEST):
        events.append(event)
        await asyncio.sleep(0.4)  # longer than idle=0.3
    assert events[-1] == StreamEnd("stop")


async def test_time_the_body_is_left_unread_does_not_count_as_idle(fake, session) -> None:
    # The provider is never silent for long, but the bot reads the body only every
    # DEFAULT_HOLD_SECONDS, longer than this idle timeout: the pieces wait in the socket.
    timeouts = TimeoutConfig(connect=2.0, first_chunk=1.0, idle=DEFAULT_HOLD_SECONDS / 2, total=5.0)
    pieces = [f"{i} " for i in range(30)]
    fake.enqueue_stream(pieces, delay=DEFAULT_HOLD_SECONDS / 10)
    events = await collect(provider_for(session, fake.base_url, timeouts=timeouts))
    assert joined(events) == [TextDelta("".join(pieces)), StreamEnd("stop")]


async def test_connection_refused_is_unavailable(session) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = provider_for(session, f"http://127.0.0.1:{port}/v1")
    _, error = await collect_until_error(provider)
    assert isinstance(error, Unavailable)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)


async def test_api_key_never_reaches_logs_or_error_details(fake, session, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = "token-without-a-known-shape-1234"
    body = {"error": {"message": f"key {key} is invalid", "type": "x", "code": "invalid_api_key"}}
    fake.enqueue(ErrorResponse(401, body))
    _, error = await collect_until_error(provider_for(session, fake.base_url, api_key=key))
    assert isinstance(error, AuthError)
    assert key not in error.detail
    assert key not in str(error)
    assert caplog.records, "the adapter logs at DEBUG"
    assert key not in caplog.text


# --- models ----------------------------------------------------------------------------------


async def test_list_models_reads_the_models_endpoint(fake, session) -> None:
    fake.models = [
        {"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"},
        {"id": "claude-3-5-haiku", "object": "model"},
        {"object": "model"},  # no id: skipped
    ]
    models = await provider_for(session, fake.base_url).list_models()
    assert models == [ModelInfo("gpt-4o-mini", "openai"), ModelInfo("claude-3-5-haiku", None)]
    assert models[0].extra == {"object": "model", "created": 1}
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_list_models_without_the_endpoint_is_empty(fake, session) -> None:
    fake.models = None
    assert await provider_for(session, fake.base_url).list_models() == []


async def test_list_models_with_a_web_page_instead_is_empty(fake, session) -> None:
    fake.models = ErrorResponse(200, "<html>app</html>", content_type="text/html")
    assert await provider_for(session, fake.base_url).list_models() == []


async def test_list_models_with_a_bad_key_raises_auth_error(fake, session) -> None:
    fake.models = ErrorResponse(
        401,
        {
            "error": {
                "message": "bad key",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    )
    with pytest.raises(AuthError):
        await provider_for(session, fake.base_url).list_models()


async def test_list_models_with_a_seed_001_error_body_raises(fake, session) -> None:
    fake.models = ErrorResponse(200, {"codes": 900, "mess": "密钥错误或已过期", "data": "token"})
    with pytest.raises(AuthError):
        await provider_for(session, fake.base_url).list_models()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"Content-Type": "text/event-stream; charset=utf-8"}, "text/event-stream"),
        ({"Content-Type": "Application/JSON ;charset=UTF-8"}, "application/json"),
        ({"Content-Type": " text/html"}, "text/html"),
        ({}, ""),
    ],
)
def test_a_responses_media_type_is_its_content_type_without_parameters(
    header: dict[str, str], expected: str
) -> None:
    assert media_type(header) == expected
