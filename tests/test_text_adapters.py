"""Legacy completions and edits through the real adapters, over HTTP, against the fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig, WrapperStream
from bot.errors import (
    AuthError,
    ModelNotFound,
    ProviderError,
    QuotaError,
    RateLimited,
    StreamCut,
    Unavailable,
    Unsupported,
)
from bot.providers.anthropic import AnthropicProvider
from bot.providers.base import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    CompletionRequest,
    EditRequest,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    Usage,
)
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.service import ProviderService
from bot.providers.wrapper import WrapperProvider
from tests import streams
from tests.fakes.provider import (
    Chunk,
    Cut,
    Done,
    EditAnswer,
    ErrorResponse,
    FakeProvider,
    Finish,
    JSONCompletion,
    Raw,
    UsageChunk,
)
from tests.fakes.wrapper import (
    SEED_000_COMPLETIONS_STREAM,
    SEED_000_COMPLETIONS_TEXT,
    CompletionAnswer,
    ErrorLine,
    FakeWrapper,
    Piece,
)
from tests.fakes.wrapper import EditResult as WrapperEdit
from tests.seeds import SEED_BODIES
from tests.streams import joined, text_of

API_KEY = "sk-test-0123456789abcdef"
FAST = TimeoutConfig(connect=2.0, first_chunk=0.5, idle=0.3, total=5.0)
COMPLETION = CompletionRequest(
    model="gpt-3.5-turbo-instruct", prompt="Once upon a time", user="user-42", temperature=0.5
)
EDIT = EditRequest(
    model="text-davinci-edit-001",
    input="What day of the wek is it?",
    instruction="Fix the spelling mistakes",
)


@pytest.fixture
async def openai() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def wrapper() -> AsyncIterator[FakeWrapper]:
    async with FakeWrapper() as server:
        yield server


def openai_for(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    max_tokens: int | None = None,
    include_usage: bool = False,
    reduce_stream: bool = False,
) -> OpenAICompatProvider:
    config = ProviderConfig(
        name="fake",
        base_url=base_url,
        api_key=API_KEY,
        timeouts=FAST,
        max_tokens=max_tokens,
        include_usage=include_usage,
        reduce_stream=reduce_stream,
    )
    return OpenAICompatProvider(config, session)


def wrapper_for(
    session: aiohttp.ClientSession, base_url: str, variant: WrapperStream | None = None
) -> WrapperProvider:
    config = ProviderConfig(
        name="wrapper", kind="wrapper", base_url=base_url, wrapper_stream=variant, timeouts=FAST
    )
    return WrapperProvider(config, session)


async def completion_of(
    provider: OpenAICompatProvider | WrapperProvider, request: CompletionRequest = COMPLETION
) -> list[StreamEvent]:
    return await streams.collect(provider.stream_completion(request))


async def until_error(
    provider: OpenAICompatProvider | WrapperProvider,
) -> tuple[list[StreamEvent], ProviderError]:
    return await streams.collect_until_error(provider.stream_completion(COMPLETION))


# --- OpenAI-compatible: /v1/completions ------------------------------------------------------


async def test_openai_completion_streams_text_usage_and_finish_reason(openai, session) -> None:
    openai.enqueue(Chunk("there was"), Chunk(" a 🐉"), Finish("length"), UsageChunk(4, 3), Done())
    events = await completion_of(openai_for(session, openai.base_url))
    assert joined(events) == [
        TextDelta("there was a 🐉"),
        Usage(prompt_tokens=4, completion_tokens=3),
        StreamEnd("length"),
    ]


async def test_openai_completion_request_has_prompt_stream_and_a_real_token_budget(
    openai, session
) -> None:
    await completion_of(openai_for(session, openai.base_url, include_usage=True))
    (request,) = openai.requests
    assert request.path == "/v1/completions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.json == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Once upon a time",
        "stream": True,
        # The endpoint's own default is 16 tokens: never left to it.
        "max_tokens": DEFAULT_COMPLETION_MAX_TOKENS,
        "stream_options": {"include_usage": True},
        "user": "user-42",
        "temperature": 0.5,
    }


async def test_openai_completion_uses_the_providers_max_tokens_when_configured(
    openai, session
) -> None:
    await completion_of(openai_for(session, openai.base_url, max_tokens=300))
    assert openai.requests[0].json["max_tokens"] == 300


async def test_openai_completion_in_reduce_stream_shape_gives_the_same_text(
    openai, session
) -> None:
    openai.enqueue(Chunk("\n"), Chunk("\n"), Chunk("清"), Finish(), UsageChunk(1, 3), Done())
    provider = openai_for(session, openai.base_url, reduce_stream=True)
    events = await completion_of(provider)
    assert openai.requests[0].headers["Reduce-Stream"] == "true"
    assert joined(events) == [TextDelta("\n\n清"), StreamEnd("stop")]


async def test_openai_completion_answered_whole_as_json_still_gives_its_text(
    openai, session
) -> None:
    openai.enqueue(JSONCompletion("The end.", finish="stop"))
    events = await completion_of(openai_for(session, openai.base_url))
    assert events == [TextDelta("The end."), StreamEnd("stop")]


@pytest.mark.parametrize(("body", "error"), SEED_BODIES)
async def test_openai_completion_seed_error_bodies_raise_their_class(
    openai, session, body: str, error: type[ProviderError]
) -> None:
    openai.enqueue(ErrorResponse(400, body))
    with pytest.raises(error):
        await completion_of(openai_for(session, openai.base_url))


async def test_openai_completion_cut_mid_stream_raises_stream_cut_after_the_text(
    openai, session
) -> None:
    openai.enqueue(Chunk("Once"), Cut())
    events, error = await until_error(openai_for(session, openai.base_url))
    assert events == [TextDelta("Once")]
    assert isinstance(error, StreamCut)


# --- OpenAI-compatible: /v1/edits ------------------------------------------------------------


async def test_openai_edit_posts_input_and_instruction_and_returns_the_text(
    openai, session
) -> None:
    openai.enqueue(EditAnswer("What day of the week is it?"))
    edited = await openai_for(session, openai.base_url).edit_text(EDIT)
    assert edited == "What day of the week is it?"
    (request,) = openai.requests
    assert request.path == "/v1/edits"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.json == {
        "model": "text-davinci-edit-001",
        "input": "What day of the wek is it?",
        "instruction": "Fix the spelling mistakes",
    }


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"error": {"message": "Not found", "type": "invalid_request_error"}}, ModelNotFound),
        (401, {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}, AuthError),
        (429, {"error": {"message": "Slow down", "type": "requests"}}, RateLimited),
        (200, {"codes": 300, "mess": "额度不足", "data": "token"}, QuotaError),
        (502, "<html><title>Bad gateway</title></html>", Unavailable),
    ],
)
async def test_openai_edit_errors_raise_their_class(
    openai, session, status: int, body: object, error: type[ProviderError]
) -> None:
    content_type = "text/html" if isinstance(body, str) else "application/json"
    openai.enqueue(ErrorResponse(status, body, content_type=content_type))
    with pytest.raises(error):
        await openai_for(session, openai.base_url).edit_text(EDIT)


# --- the wrapper: /openai/completions and /openai/edits --------------------------------------


@pytest.mark.parametrize(
    ("variant", "path"),
    [
        (None, "/openai/completions/stream"),
        ("stream", "/openai/completions/stream"),
        ("sse", "/openai/completions/sse"),
        ("plain", "/openai/completions"),
    ],
)
async def test_wrapper_completion_goes_to_its_variants_path(
    wrapper, session, variant: WrapperStream | None, path: str
) -> None:
    events = await completion_of(wrapper_for(session, wrapper.base_url, variant))
    assert text_of(events) == "echo: Once upon a time"
    assert events[-1] == StreamEnd("stop")
    (request,) = wrapper.requests
    assert request.path == path
    assert request.json == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Once upon a time",
        "max_tokens": DEFAULT_COMPLETION_MAX_TOKENS,
        "temperature": 0.5,
    }


async def test_wrapper_completion_reads_the_documents_stream_verbatim(wrapper, session) -> None:
    wrapper.enqueue(Raw(SEED_000_COMPLETIONS_STREAM))
    events = await completion_of(wrapper_for(session, wrapper.base_url))
    assert text_of(events) == SEED_000_COMPLETIONS_TEXT
    assert events[-1] == StreamEnd("stop")


async def test_wrapper_plain_completion_joins_its_data_pieces(wrapper, session) -> None:
    wrapper.enqueue(CompletionAnswer(("\n\nThis is", " indeed a test.")))
    events = await completion_of(wrapper_for(session, wrapper.base_url, "plain"))
    assert events == [TextDelta("\n\nThis is indeed a test."), StreamEnd("stop")]


async def test_wrapper_completion_error_line_after_text_raises_its_class(wrapper, session) -> None:
    wrapper.enqueue(Piece("This"), ErrorLine("Request failed with status code 429"))
    events, error = await until_error(wrapper_for(session, wrapper.base_url))
    assert events == [TextDelta("This")]
    assert isinstance(error, RateLimited)


async def test_wrapper_completion_without_end_raises_stream_cut(wrapper, session) -> None:
    wrapper.enqueue(Piece("This"), Cut())
    with pytest.raises(StreamCut):
        await completion_of(wrapper_for(session, wrapper.base_url))


async def test_wrapper_edit_posts_the_documents_fields_and_returns_the_text(
    wrapper, session
) -> None:
    wrapper.enqueue(WrapperEdit("What day of the week is it?"))
    edited = await wrapper_for(session, wrapper.base_url).edit_text(EDIT)
    assert edited == "What day of the week is it?"
    (request,) = wrapper.requests
    assert request.path == "/openai/edits"
    assert request.json == {
        "model": "text-davinci-edit-001",
        "input": "What day of the wek is it?",
        "instruction": "Fix the spelling mistakes",
        "n": 1,
    }


async def test_wrapper_edit_error_answer_raises_its_class(wrapper, session) -> None:
    wrapper.enqueue(
        ErrorResponse(
            200, {"code": 1, "data": "Request failed with status code 401", "message": "error"}
        )
    )
    with pytest.raises(AuthError):
        await wrapper_for(session, wrapper.base_url).edit_text(EDIT)


async def test_steamship_has_neither_completions_nor_edits(wrapper, session) -> None:
    provider = wrapper_for(session, wrapper.base_url, "steamship")
    with pytest.raises(Unsupported):
        await completion_of(provider)
    with pytest.raises(Unsupported):
        await provider.edit_text(EDIT)
    assert wrapper.requests == []


async def test_anthropic_has_neither_completions_nor_edits(session) -> None:
    config = ProviderConfig(
        name="claude", kind="anthropic", base_url="http://127.0.0.1:9", api_key=API_KEY
    )
    provider = AnthropicProvider(config, session)
    with pytest.raises(Unsupported):
        await completion_of(provider)  # type: ignore[arg-type]
    with pytest.raises(Unsupported):
        await provider.edit_text(EDIT)


# --- the service: failover to a provider that has the endpoint -------------------------------


async def test_service_moves_past_a_provider_without_completions(wrapper, openai, session) -> None:
    steamship = wrapper_for(session, wrapper.base_url, "steamship")
    service = ProviderService(
        [
            (ProviderConfig(name="wrapper", kind="wrapper", base_url=wrapper.base_url), steamship),
            (
                ProviderConfig(name="fake", base_url=openai.base_url),
                openai_for(session, openai.base_url),
            ),
        ]
    )
    events = [event async for event in service.stream_completion(COMPLETION)]
    starts = [e.provider for e in events if isinstance(e, StreamStart)]
    assert starts == ["wrapper", "fake"]
    assert text_of(events) == "echo: Once upon a time"


async def test_service_edit_falls_over_to_the_next_provider_on_a_missing_endpoint(
    wrapper, openai, session
) -> None:
    wrapper.enqueue(ErrorResponse(404, "Cannot POST /openai/edits", content_type="text/plain"))
    service = ProviderService(
        [
            (
                ProviderConfig(name="wrapper", kind="wrapper", base_url=wrapper.base_url),
                wrapper_for(session, wrapper.base_url),
            ),
            (
                ProviderConfig(name="fake", base_url=openai.base_url),
                openai_for(session, openai.base_url),
            ),
        ]
    )
    assert await service.edit_text(EDIT) == "Fix the spelling mistakes: What day of the wek is it?"
