"""The real AnthropicProvider over a real aiohttp session against the FakeAnthropic server."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig
from bot.errors import (
    AuthError,
    BadRequest,
    ContentRejected,
    ContextTooLong,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    QuotaError,
    RateLimited,
    StreamCut,
    Unavailable,
)
from bot.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    ModelInfo,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from bot.providers.classify import classify_error
from bot.providers.service import build_provider
from tests import streams
from tests.fakes.anthropic import (
    BlockStart,
    BlockText,
    BlockThinking,
    FakeAnthropic,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StreamError,
    WholeMessage,
    anthropic_error,
    text_stream,
)
from tests.fakes.provider import Cut, Delay, ErrorResponse, Raw
from tests.seeds import SEED_004_NATIVE_TOOL_STREAM
from tests.streams import decode_sse, joined, parse_anthropic

API_KEY = "sk-ant-test-0123456789abcdef"

REQUEST = ChatRequest(
    model="claude-test",
    messages=(
        ChatMessage("system", "Be brief."),
        ChatMessage("system", "Answer in English."),
        ChatMessage("user", "你好"),
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "Hello!"),
        ChatMessage("assistant", ""),
        ChatMessage("user", "Weather?"),
    ),
    user="0123456789abcdef0123456789abcdef",
    max_tokens=64,
    temperature=0.3,
)

FAST = TimeoutConfig(connect=2.0, first_chunk=0.3, idle=0.3, total=5.0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=API_KEY) as server:
        yield server


def provider_for(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    api_key: str = API_KEY,
    timeouts: TimeoutConfig = FAST,
    headers: dict[str, str] | None = None,
    max_tokens: int | None = None,
) -> AnthropicProvider:
    config = ProviderConfig(
        name="claude",
        kind="anthropic",
        base_url=base_url,
        api_key=api_key,
        headers=headers or {},
        timeouts=timeouts,
        max_tokens=max_tokens,
    )
    return AnthropicProvider(config, session)


async def collect(provider: AnthropicProvider, request: ChatRequest = REQUEST) -> list[StreamEvent]:
    return await streams.collect(provider.stream_chat(request))


async def collect_until_error(
    provider: AnthropicProvider, request: ChatRequest = REQUEST
) -> tuple[list[StreamEvent], ProviderError]:
    return await streams.collect_until_error(provider.stream_chat(request))


# --- answers ---------------------------------------------------------------------------------


async def test_streamed_answer_yields_text_then_usage_then_one_stream_end(fake, session) -> None:
    fake.enqueue(*text_stream(["Hel", "lo 🌍"], input_tokens=12, output_tokens=3))
    events = await collect(provider_for(session, fake.base_url))
    assert joined(events) == [
        TextDelta("Hello 🌍"),
        Usage(prompt_tokens=12, completion_tokens=3),
        StreamEnd("stop"),
    ]


async def test_request_is_a_messages_call_with_key_version_system_and_merged_turns(
    fake, session
) -> None:
    await collect(provider_for(session, fake.base_url + "/"))
    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["Accept"] == "text/event-stream"
    assert "Authorization" not in request.headers
    assert request.json == {
        "model": "claude-test",
        "max_tokens": 64,
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "你好\n\nhi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Weather?"},
        ],
        "stream": True,
        "temperature": 0.3,
        "metadata": {"user_id": "0123456789abcdef0123456789abcdef"},
    }


async def test_max_tokens_comes_from_the_config_then_the_default(fake, session) -> None:
    bare = ChatRequest(model="m", messages=(ChatMessage("user", "x"),))
    await collect(provider_for(session, fake.base_url, max_tokens=1000), bare)
    await collect(provider_for(session, fake.base_url), bare)
    configured, default = fake.requests
    assert configured.json["max_tokens"] == 1000
    assert default.json["max_tokens"] == DEFAULT_MAX_TOKENS == 4096
    assert default.json == {
        "model": "m",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
    }


async def test_configured_headers_are_added_and_replace_ours_whatever_their_case(
    fake, session
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "X-API-KEY": API_KEY}
    await collect(provider_for(session, fake.base_url, api_key="other", headers=headers))
    (request,) = fake.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    sent = [v for k, v in request.headers.items() if k.lower() == "x-api-key"]
    assert sent == [API_KEY]


async def test_unscripted_request_gets_the_echo_default(fake, session) -> None:
    events = await collect(provider_for(session, fake.base_url))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: Weather?"
    assert events[-2:] == [Usage(3, 3), StreamEnd("stop")]


async def test_seed_004_native_stream_over_http_gives_the_decoded_events(fake, session) -> None:
    data = SEED_004_NATIVE_TOOL_STREAM
    fake.enqueue(Raw(data[:1000]), Delay(0.01), Raw(data[1000:]))
    events = await collect(provider_for(session, fake.base_url))
    assert joined(events) == joined(parse_anthropic(decode_sse([data])))
    assert any(isinstance(e, ToolCallDelta) for e in events)
    assert events[-1] == StreamEnd("tool_calls")


async def test_thinking_and_pings_give_no_text(fake, session) -> None:
    fake.enqueue(
        MessageStart(5),
        BlockStart(0, "thinking"),
        BlockThinking(0, "let me think"),
        Ping(),
        BlockStart(1),
        BlockText(1, "answer"),
        MessageDelta("end_turn", 2),
        MessageStop(),
    )
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("answer"), Usage(5, 2), StreamEnd("stop")]


async def test_max_tokens_stop_reason_ends_with_length(fake, session) -> None:
    fake.enqueue(*text_stream(["cut short"], stop_reason="max_tokens"))
    events = await collect(provider_for(session, fake.base_url))
    assert events[-1] == StreamEnd("length")


async def test_missing_message_stop_after_stop_reason_ends_normally(fake, session) -> None:
    fake.enqueue(MessageStart(4), BlockStart(0), BlockText(0, "all"), MessageDelta("end_turn", 1))
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("all"), Usage(4, 1), StreamEnd("stop")]


async def test_connection_cut_after_stop_reason_ends_normally(fake, session) -> None:
    fake.enqueue(
        MessageStart(4), BlockStart(0), BlockText(0, "all"), MessageDelta("end_turn"), Cut()
    )
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("all"), Usage(4, 0), StreamEnd("stop")]


async def test_nothing_after_message_stop_is_read(fake, session) -> None:
    fake.enqueue(*text_stream(["a"]), BlockText(0, "ignored"), Delay(5), MessageStop())
    events = await collect(provider_for(session, fake.base_url))
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("a")]
    assert isinstance(events[-1], StreamEnd)


async def test_whole_message_when_a_stream_was_asked_is_yielded_whole(fake, session) -> None:
    fake.enqueue(WholeMessage("the whole answer", usage=(7, 3)))
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("the whole answer"), Usage(7, 3), StreamEnd("stop")]


async def test_stopping_early_releases_the_connection_for_the_next_request(fake, session) -> None:
    provider = provider_for(session, fake.base_url)
    fake.enqueue(MessageStart(1), BlockStart(0), BlockText(0, "first"), Delay(5), MessageStop())
    stream = provider.stream_chat(REQUEST)
    assert await anext(stream) == TextDelta("first")
    await stream.aclose()  # type: ignore[attr-defined]
    fake.enqueue(*text_stream(["second"]))
    assert TextDelta("second") in await collect(provider)


def test_build_provider_makes_an_anthropic_adapter_for_the_anthropic_kind() -> None:
    config = ProviderConfig(name="c", kind="anthropic", base_url="http://127.0.0.1:1/v1")
    assert isinstance(build_provider(config, None), AnthropicProvider)  # type: ignore[arg-type]


# --- failures --------------------------------------------------------------------------------

# Anthropic's documented error responses: (HTTP status, error type, message, our class).
ANTHROPIC_ERRORS = [
    pytest.param(
        400,
        "invalid_request_error",
        "messages: roles must alternate between user and assistant",
        BadRequest,
        id="400-invalid-request",
    ),
    pytest.param(
        400,
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
        ContextTooLong,
        id="400-prompt-too-long",
    ),
    pytest.param(
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API.",
        QuotaError,
        id="400-credit-balance",
    ),
    pytest.param(401, "authentication_error", "invalid x-api-key", AuthError, id="401-auth"),
    pytest.param(
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
        AuthError,
        id="403-permission",
    ),
    pytest.param(404, "not_found_error", "model: claude-nope", ModelNotFound, id="404-not-found"),
    pytest.param(
        413,
        "request_too_large",
        "Request exceeds the maximum allowed number of bytes.",
        ContextTooLong,
        id="413-too-large",
    ),
    pytest.param(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        RateLimited,
        id="429-rate-limit",
    ),
    pytest.param(500, "api_error", "Internal server error", Unavailable, id="500-api-error"),
    pytest.param(529, "overloaded_error", "Overloaded", Unavailable, id="529-overloaded"),
]


@pytest.mark.parametrize(("status", "type_", "message", "expected"), ANTHROPIC_ERRORS)
def test_classify_error_reads_anthropic_error_bodies(
    status: int, type_: str, message: str, expected: type[ProviderError]
) -> None:
    error = classify_error(status, anthropic_error(type_, message))
    assert type(error) is expected
    assert error.detail == f"{type_}: {message}"
    # The type alone decides where it is specific, whatever status a gateway puts on it.
    if type_ != "invalid_request_error":
        assert type(classify_error(200, anthropic_error(type_, "x"))) is expected


@pytest.mark.parametrize(("status", "type_", "message", "expected"), ANTHROPIC_ERRORS)
async def test_every_anthropic_error_response_becomes_its_error_class(
    fake, session, status: int, type_: str, message: str, expected: type[ProviderError]
) -> None:
    fake.enqueue(ErrorResponse(status, anthropic_error(type_, message)))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert type(error) is expected
    assert (error.status, error.provider) == (status, "claude")


async def test_overloaded_529_is_retryable_and_429_carries_retry_after(fake, session) -> None:
    fake.enqueue(ErrorResponse(529, anthropic_error("overloaded_error", "Overloaded")))
    fake.enqueue(
        ErrorResponse(
            429, anthropic_error("rate_limit_error", "slow down"), headers={"retry-after": "7"}
        )
    )
    provider = provider_for(session, fake.base_url)
    _, overloaded = await collect_until_error(provider)
    _, limited = await collect_until_error(provider)
    assert overloaded.retryable
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 7.0


async def test_wrong_key_is_refused_by_the_fake_as_anthropic_does(fake, session) -> None:
    _, error = await collect_until_error(provider_for(session, fake.base_url, api_key="sk-wrong"))
    assert isinstance(error, AuthError)
    assert error.status == 401


async def test_overloaded_event_before_text_raises_retryable_unavailable(fake, session) -> None:
    fake.enqueue(MessageStart(3), Ping(), StreamError("overloaded_error", "Overloaded"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert isinstance(error, Unavailable)
    assert error.retryable


async def test_error_event_after_text_raises_after_yielding_the_text(fake, session) -> None:
    fake.enqueue(MessageStart(3), BlockStart(0), BlockText(0, "so far"), StreamError())
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("so far")]
    assert isinstance(error, Unavailable)


async def test_refusal_raises_content_rejected(fake, session) -> None:
    fake.enqueue(*text_stream(["I can"], stop_reason="refusal"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("I can")]
    assert isinstance(error, ContentRejected)


async def test_cut_stream_after_text_raises_stream_cut_after_the_text(fake, session) -> None:
    fake.enqueue(MessageStart(3), BlockStart(0), BlockText(0, "partial"), Cut())
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("partial")]
    assert isinstance(error, StreamCut)
    assert isinstance(error.__cause__, aiohttp.ClientPayloadError)


async def test_body_ending_without_stop_reason_raises_stream_cut(fake, session) -> None:
    fake.enqueue(MessageStart(3), BlockStart(0), BlockText(0, "half"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("half")]
    assert isinstance(error, StreamCut)


async def test_html_error_page_is_classified_by_status(fake, session) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    fake.enqueue(ErrorResponse(502, page, content_type="text/html"))
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, Unavailable)
    assert error.detail == "HTTP 502: 502 Bad Gateway"


async def test_no_headers_within_first_chunk_timeout_is_provider_timeout(fake, session) -> None:
    fake.enqueue(Delay(2), *text_stream(["late"]))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert isinstance(error, ProviderTimeout)
    assert "first_chunk" in error.detail


async def test_pings_then_silence_before_text_is_an_idle_timeout(fake, session) -> None:
    fake.enqueue(MessageStart(3), Ping(), Delay(2), *text_stream(["late"]))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert isinstance(error, ProviderTimeout)
    assert "idle" in error.detail


async def test_idle_timeout_after_text_is_stream_cut(fake, session) -> None:
    fake.enqueue(MessageStart(3), BlockStart(0), BlockText(0, "some"), Delay(2), MessageStop())
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("some")]
    assert isinstance(error, StreamCut)
    assert "idle" in error.detail


async def test_idle_timeout_after_stop_reason_ends_normally(fake, session) -> None:
    fake.enqueue(
        MessageStart(3), BlockStart(0), BlockText(0, "done"), MessageDelta("end_turn", 1), Delay(2)
    )
    events = await collect(provider_for(session, fake.base_url))
    assert events == [TextDelta("done"), Usage(3, 1), StreamEnd("stop")]


async def test_connection_refused_is_unavailable(session) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, error = await collect_until_error(provider_for(session, f"http://127.0.0.1:{port}/v1"))
    assert isinstance(error, Unavailable)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)


async def test_api_key_never_reaches_logs_or_error_details(session, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = "token-without-a-known-shape-1234"
    async with FakeAnthropic() as fake:
        fake.enqueue(ErrorResponse(401, anthropic_error("authentication_error", f"bad {key}")))
        _, error = await collect_until_error(provider_for(session, fake.base_url, api_key=key))
    assert isinstance(error, AuthError)
    assert key not in error.detail
    assert caplog.records, "the adapter logs at DEBUG"
    assert key not in caplog.text


# --- models ----------------------------------------------------------------------------------


async def test_list_models_reads_the_models_endpoint_with_the_key(fake, session) -> None:
    models = await provider_for(session, fake.base_url).list_models()
    assert [m.id for m in models] == ["claude-sonnet-4-5", "claude-3-5-haiku"]
    assert models[0] == ModelInfo("claude-sonnet-4-5", None)
    assert models[0].extra["display_name"] == "Claude Sonnet 4.5"
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"


async def test_list_models_without_the_endpoint_is_empty(fake, session) -> None:
    fake.models = None
    assert await provider_for(session, fake.base_url).list_models() == []


async def test_list_models_with_a_bad_key_raises_auth_error(fake, session) -> None:
    fake.models = ErrorResponse(401, anthropic_error("authentication_error", "invalid x-api-key"))
    with pytest.raises(AuthError):
        await provider_for(session, fake.base_url).list_models()
