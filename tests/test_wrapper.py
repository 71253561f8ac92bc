"""The real WrapperProvider over a real aiohttp session against the FakeWrapper service."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig, WrapperStream, load_config, parse_config
from bot.errors import (
    AuthError,
    ConfigError,
    ContextTooLong,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    StreamCut,
    Unavailable,
    Unsupported,
)
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    ModelInfo,
    ProviderSession,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
)
from bot.providers.service import ProviderService, build_provider
from bot.providers.wrapper import (
    NEW_MESSAGE_HEADING,
    TRANSCRIPT_HEADING,
    WrapperProvider,
    chat_body,
    fold_prompt,
    send_body,
    split_prompt,
)
from tests import streams
from tests.factories import ENV, ROOT, with_provider
from tests.fakes.provider import Cut, Delay, ErrorResponse, Raw
from tests.fakes.wrapper import (
    SEED_000_CHAT_STREAM,
    SEED_000_CHAT_STREAM_TEXT,
    SEED_000_CHATCODE,
    ChatAnswer,
    Code,
    End,
    ErrorLine,
    FakeWrapper,
    Line,
    Piece,
    SendAnswer,
)
from tests.streams import joined, text_of

PERSONA = "你是一只会说话的猫，每一句话的结尾都要加上“喵~”"
FIRST = ChatRequest(
    model="gpt-3.5-turbo",
    messages=(ChatMessage("system", PERSONA), ChatMessage("user", "我第一句话是什么")),
)
FAST = TimeoutConfig(connect=2.0, first_chunk=0.5, idle=0.3, total=5.0)


def next_turn(session: str | None, *history: ChatMessage) -> ChatRequest:
    """The request of a later turn: the persona, the history the bot keeps, and a new message."""
    messages = (
        ChatMessage("system", PERSONA),
        *history,
        ChatMessage("user", "我上句话说的是什么"),
    )
    return ChatRequest(model="gpt-3.5-turbo", messages=messages, session=session)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWrapper]:
    async with FakeWrapper() as server:
        yield server


def config_for(
    base_url: str,
    variant: WrapperStream | None = None,
    *,
    name: str = "wrapper",
    timeouts: TimeoutConfig = FAST,
    **options: Any,
) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        kind="wrapper",
        base_url=base_url,
        wrapper_stream=variant,
        timeouts=timeouts,
        **options,
    )


def provider_for(
    session: aiohttp.ClientSession,
    base_url: str,
    variant: WrapperStream | None = None,
    **options: Any,
) -> WrapperProvider:
    return WrapperProvider(config_for(base_url, variant, **options), session)


async def collect(provider: WrapperProvider, request: ChatRequest = FIRST) -> list[StreamEvent]:
    return await streams.collect(provider.stream_chat(request))


async def collect_until_error(
    provider: WrapperProvider, request: ChatRequest = FIRST
) -> tuple[list[StreamEvent], ProviderError]:
    return await streams.collect_until_error(provider.stream_chat(request))


def session_of(events: list[StreamEvent]) -> str | None:
    sessions = [e.value for e in events if isinstance(e, ProviderSession)]
    assert len(sessions) <= 1, sessions
    return sessions[0] if sessions else None


# --- streamed answers and the conversation ------------------------------------------------------


async def test_streamed_answer_gives_text_then_the_chatcode_then_one_end(fake, session) -> None:
    fake.enqueue(Piece("你"), Piece("好喵~"), Code("MjAy"), End())
    events = await collect(provider_for(session, fake.base_url))
    assert joined(events) == [TextDelta("你好喵~"), ProviderSession("MjAy"), StreamEnd()]


async def test_first_turn_posts_the_message_and_the_persona_as_init_message(fake, session) -> None:
    request = ChatRequest(
        model="gpt-3.5-turbo",
        messages=FIRST.messages,
        max_tokens=1000,
        temperature=1.0,
        user="someone",
    )
    await collect(provider_for(session, fake.base_url + "/"), request)
    (sent,) = fake.requests
    assert (sent.method, sent.path) == ("POST", "/openai/chat/stream")
    assert sent.json == {
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "我第一句话是什么"}],
        "initMessage": {"role": "system", "content": PERSONA},
        "max_tokens": 1000,
        "temperature": 1.0,
    }
    assert "Authorization" not in sent.headers


async def test_chatcode_comes_back_and_the_next_turn_sends_it_with_only_the_new_message(
    fake, session
) -> None:
    provider = provider_for(session, fake.base_url)
    first = await collect(provider)
    chatcode = session_of(first)
    assert chatcode is not None
    assert chatcode in fake.conversations
    assert text_of(first) == "echo: 我第一句话是什么"

    history = (ChatMessage("user", "我第一句话是什么"), ChatMessage("assistant", text_of(first)))
    second = await collect(provider, next_turn(chatcode, *history))

    assert session_of(second) == chatcode
    sent = fake.requests[1].json
    assert sent == {
        "model": "gpt-3.5-turbo",
        "chatcode": chatcode,
        "messages": [{"role": "user", "content": "我上句话说的是什么"}],
    }
    # The service, not the bot, kept the context: one conversation with both turns.
    assert fake.conversations[chatcode] == [
        {"role": "system", "content": PERSONA},
        {"role": "user", "content": "我第一句话是什么"},
        {"role": "assistant", "content": "echo: 我第一句话是什么"},
        {"role": "user", "content": "我上句话说的是什么"},
        {"role": "assistant", "content": "echo: 我上句话说的是什么"},
    ]


async def test_without_a_session_earlier_turns_are_folded_into_the_first_message(
    fake, session
) -> None:
    history = (ChatMessage("user", "hi"), ChatMessage("assistant", "Hello!"))
    await collect(provider_for(session, fake.base_url), next_turn(None, *history))
    sent = fake.requests[0].json
    assert "chatcode" not in sent
    assert sent["initMessage"] == {"role": "system", "content": PERSONA}
    assert sent["messages"] == [
        {
            "role": "user",
            "content": f"{TRANSCRIPT_HEADING}\nUser: hi\nAssistant: Hello!\n\n"
            f"{NEW_MESSAGE_HEADING}\n我上句话说的是什么",
        }
    ]


async def test_the_document_stream_over_http_gives_its_text_and_chatcode(fake, session) -> None:
    data = SEED_000_CHAT_STREAM
    fake.enqueue(Raw(data[:100]), Delay(0.01), Raw(data[100:333]), Delay(0.01), Raw(data[333:]))
    events = await collect(provider_for(session, fake.base_url))
    assert text_of(events) == SEED_000_CHAT_STREAM_TEXT
    assert events[-2:] == [ProviderSession(SEED_000_CHATCODE), StreamEnd("stop")]


async def test_stream_labelled_json_is_still_read_line_by_line(session) -> None:
    async with FakeWrapper(stream_content_type="application/json") as fake:
        fake.enqueue(Piece("a"), Delay(0.05), Piece("b"), Code("c"), End())
        events = await collect(provider_for(session, fake.base_url))
    assert joined(events) == [TextDelta("ab"), ProviderSession("c"), StreamEnd()]


@pytest.mark.parametrize("framing", ["data", "bare"])
async def test_sse_variant_reads_data_events_and_bare_lines_alike(session, framing) -> None:
    async with FakeWrapper(sse_framing=framing) as fake:
        events = await collect(provider_for(session, fake.base_url, "sse"))
        (sent,) = fake.requests
    assert sent.path == "/openai/chat/sse"
    assert sent.headers["Accept"] == "text/event-stream"
    assert text_of(events) == "echo: 我第一句话是什么"
    assert session_of(events) in fake.conversations
    assert events[-1] == StreamEnd()


async def test_plain_variant_gives_the_whole_answer_and_its_chatcode(fake, session) -> None:
    provider = provider_for(session, fake.base_url, "plain")
    fake.enqueue(ChatAnswer("你第一句话是：“你是什么喵~”", "MjAyMy0wNS0zMCAxMTowOTo1NQ=="))
    events = await collect(provider)
    assert events == [
        TextDelta("你第一句话是：“你是什么喵~”"),
        ProviderSession("MjAyMy0wNS0zMCAxMTowOTo1NQ=="),
        StreamEnd(),
    ]
    assert fake.requests[0].path == "/openai/chat"
    assert fake.requests[0].json["initMessage"] == {"role": "system", "content": PERSONA}


async def test_plain_variant_keeps_the_conversation_by_chatcode(fake, session) -> None:
    provider = provider_for(session, fake.base_url, "plain")
    chatcode = session_of(await collect(provider))
    assert chatcode is not None
    await collect(provider, next_turn(chatcode, ChatMessage("user", "我第一句话是什么")))
    assert fake.requests[1].json["chatcode"] == chatcode
    assert len(fake.conversations[chatcode]) == 5


async def test_unscripted_stream_echoes_the_message(fake, session) -> None:
    events = await collect(provider_for(session, fake.base_url))
    assert text_of(events) == "echo: 我第一句话是什么"


async def test_configured_key_and_headers_are_sent(fake, session) -> None:
    provider = provider_for(
        session, fake.base_url, api_key="sk-wrapper-123456", headers={"X-Proxy": "yes"}
    )
    await collect(provider)
    (sent,) = fake.requests
    assert sent.headers["Authorization"] == "Bearer sk-wrapper-123456"
    assert sent.headers["X-Proxy"] == "yes"


async def test_configured_max_tokens_applies_when_the_request_sets_none(fake, session) -> None:
    await collect(provider_for(session, fake.base_url, max_tokens=800))
    assert fake.requests[0].json["max_tokens"] == 800


# --- Steamship ---------------------------------------------------------------------------------


async def test_steamship_file_id_round_trip(fake, session) -> None:
    provider = provider_for(session, fake.base_url, "steamship")
    first = await collect(provider)
    file_id = session_of(first)
    assert first == [TextDelta(text_of(first)), ProviderSession("file-1"), StreamEnd()]
    assert file_id == "file-1"

    second = await collect(provider, next_turn(file_id, ChatMessage("user", "我第一句话是什么")))
    assert second == [TextDelta("echo: 我上句话说的是什么"), ProviderSession("file-1"), StreamEnd()]

    opening, follow_up = fake.requests
    assert opening.path == follow_up.path == "/send"
    # /send has no system message: the persona goes into the first text.
    assert opening.json == {"text": fold_prompt([], "我第一句话是什么", instructions=PERSONA)}
    assert PERSONA in opening.json["text"]
    assert follow_up.json == {"text": "我上句话说的是什么", "inputFileId": "file-1"}
    assert len(fake.files["file-1"]) == 4


async def test_steamship_document_answer(fake, session) -> None:
    fake.enqueue(SendAnswer("我是GPT-4,很高兴认识你", "xxx"))
    events = await collect(provider_for(session, fake.base_url, "steamship"))
    assert events == [TextDelta("我是GPT-4,很高兴认识你"), ProviderSession("xxx"), StreamEnd()]


async def test_steamship_error_body_is_classified(fake, session) -> None:
    fake.enqueue(
        ErrorResponse(
            200, {"code": 1, "data": "Request failed with status code 429", "message": "error"}
        )
    )
    _, error = await collect_until_error(provider_for(session, fake.base_url, "steamship"))
    assert isinstance(error, RateLimited)


# --- failures ----------------------------------------------------------------------------------


async def test_a_message_with_images_fails_when_read_and_is_never_sent(fake, session) -> None:
    photo = ChatMessage("user", "what is this?", images=("data:image/png;base64,AA==",))
    request = ChatRequest(model="gpt-4", messages=(photo,))
    events, error = await collect_until_error(provider_for(session, fake.base_url), request)
    assert events == []
    assert isinstance(error, Unsupported)
    assert fake.requests == []


async def test_error_line_before_any_text_raises_its_class(fake, session) -> None:
    fake.enqueue(ErrorLine("Request failed with status code 401"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == []
    assert isinstance(error, AuthError)
    assert error.provider == "wrapper"


async def test_error_line_after_text_raises_after_the_text(fake, session) -> None:
    fake.enqueue(Piece("半"), ErrorLine("400 This model's maximum context length is 4097 tokens"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("半")]
    assert isinstance(error, ContextTooLong)


async def test_error_line_on_the_sse_path_raises_its_class(fake, session) -> None:
    fake.enqueue(ErrorLine({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}))
    _, error = await collect_until_error(provider_for(session, fake.base_url, "sse"))
    assert isinstance(error, RateLimited)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"code": 500, "data": None, "message": "服务器内部错误"}, Unavailable),
        (401, {"code": 401, "data": None, "message": "未授权"}, AuthError),
        (429, "Too Many Requests", RateLimited),
        (404, "Cannot POST /openai/chat/stream", ModelNotFound),
        (
            200,
            {"code": 1, "data": "Request failed with status code 401", "message": "error"},
            AuthError,
        ),
        (200, {"code": 500, "data": None, "message": "服务器内部错误"}, Unavailable),
    ],
)
@pytest.mark.parametrize("variant", ["stream", "sse", "plain"])
async def test_error_bodies_are_classified_on_every_chat_path(
    fake, session, variant, status, body, expected
) -> None:
    fake.enqueue(ErrorResponse(status, body))
    _, error = await collect_until_error(provider_for(session, fake.base_url, variant))
    assert type(error) is expected
    assert error.provider == "wrapper"


async def test_pretty_printed_error_body_with_200_is_classified(fake, session) -> None:
    body = json.dumps({"code": 401, "data": None, "message": "invalid key"}, indent=2)
    fake.enqueue(ErrorResponse(200, body, content_type="text/plain"))
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, AuthError)


async def test_html_page_is_classified_by_its_status(fake, session) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head></html>"
    fake.enqueue(ErrorResponse(502, page, content_type="text/html"))
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, Unavailable)
    assert "502 Bad Gateway" in error.detail


async def test_connection_cut_after_text_is_a_stream_cut(fake, session) -> None:
    fake.enqueue(Piece("half"), Delay(0.05), Cut())
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("half")]
    assert isinstance(error, StreamCut)


async def test_body_ending_without_end_is_a_stream_cut(fake, session) -> None:
    fake.enqueue(Piece("half"), Code("c"))
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("half"), ProviderSession("c")]
    assert isinstance(error, StreamCut)


async def test_unknown_kinds_are_ignored_over_http(fake, session) -> None:
    fake.enqueue(Line({"code": 0, "data": "1", "message": "usage"}), Piece("ok"), End())
    assert await collect(provider_for(session, fake.base_url)) == [TextDelta("ok"), StreamEnd()]


async def test_silence_before_the_first_line_is_a_timeout(fake, session) -> None:
    fake.enqueue(Delay(2), Piece("late"), End())
    _, error = await collect_until_error(provider_for(session, fake.base_url))
    assert isinstance(error, ProviderTimeout)


async def test_silence_after_text_is_a_stream_cut(fake, session) -> None:
    fake.enqueue(Piece("a"), Delay(2), End())
    events, error = await collect_until_error(provider_for(session, fake.base_url))
    assert events == [TextDelta("a")]
    assert isinstance(error, StreamCut)


async def test_silence_after_end_is_a_normal_end(fake, session) -> None:
    fake.enqueue(Piece("a"), End(), Delay(2), Piece("ignored"))
    assert await collect(provider_for(session, fake.base_url)) == [TextDelta("a"), StreamEnd()]


async def test_refused_connection_is_unavailable(session) -> None:
    async with FakeWrapper() as fake:
        base_url = fake.base_url
    _, error = await collect_until_error(provider_for(session, base_url))
    assert isinstance(error, Unavailable)


# --- models ------------------------------------------------------------------------------------


async def test_models_and_suggestions(fake, session) -> None:
    provider = provider_for(session, fake.base_url)
    models = await provider.list_models()
    suggestions = await provider.suggestions()
    assert [r.path for r in fake.requests] == ["/openai/models", "/openai/models"]
    assert models[:2] == [ModelInfo("whisper-1"), ModelInfo("gpt-4")]
    assert models[1].extra == {"suggested_for": ("chat",), "listed": False}
    assert suggestions["chat"] == ("gpt-4",)
    assert suggestions["audio.transcriptions"] == ("whisper-1",)


async def test_service_lists_the_wrapper_models_with_their_suggestions(fake, session) -> None:
    service = ProviderService([(config_for(fake.base_url), provider_for(session, fake.base_url))])
    (models,) = (await service.list_models()).values()
    assert {m.id: m.extra.get("suggested_for") for m in models}["gpt-4"] == ("chat",)


async def test_no_models_endpoint_gives_no_models(session) -> None:
    async with FakeWrapper(models=None) as fake:
        provider = provider_for(session, fake.base_url)
        assert await provider.list_models() == []
        assert await provider.suggestions() == {}


@pytest.mark.parametrize(
    "answer",
    [
        ErrorResponse(500, {"code": 500, "data": None, "message": "查询失败"}),
        ErrorResponse(200, {"code": 500, "data": None, "message": "查询失败"}),
    ],
)
async def test_models_error_is_raised(session, answer) -> None:
    async with FakeWrapper(models=answer) as fake:
        with pytest.raises(Unavailable):
            await provider_for(session, fake.base_url).list_models()


# --- request bodies, pure ----------------------------------------------------------------------


def test_split_prompt_joins_system_messages_and_drops_empty_turns() -> None:
    messages = (
        ChatMessage("system", "a"),
        ChatMessage("system", "b"),
        ChatMessage("user", "1"),
        ChatMessage("assistant", ""),
        ChatMessage("user", "2"),
    )
    assert split_prompt(messages) == ("a\n\nb", [ChatMessage("user", "1")], "2")


def test_split_prompt_without_a_user_message_is_a_bug() -> None:
    with pytest.raises(ValueError, match="user message"):
        split_prompt((ChatMessage("system", "a"),))


def test_chat_body_with_a_session_sends_no_persona_and_no_history() -> None:
    request = next_turn("code", ChatMessage("user", "x"), ChatMessage("assistant", "y"))
    assert chat_body(request, default_max_tokens=None) == {
        "model": "gpt-3.5-turbo",
        "chatcode": "code",
        "messages": [{"role": "user", "content": "我上句话说的是什么"}],
    }


def test_send_body_folds_persona_and_history_without_a_session() -> None:
    request = next_turn(None, ChatMessage("user", "x"), ChatMessage("assistant", "y"))
    text = send_body(request)["text"]
    assert isinstance(text, str)
    assert text.startswith("Instructions for this conversation:\n" + PERSONA)
    assert "User: x\nAssistant: y" in text
    assert text.endswith(f"{NEW_MESSAGE_HEADING}\n我上句话说的是什么")


def test_fold_prompt_without_anything_to_fold_is_the_message_itself() -> None:
    assert fold_prompt([], "hello") == "hello"


# --- the service: sessions go only to their own provider ----------------------------------------


async def test_service_sends_each_provider_only_its_own_session(session) -> None:
    async with FakeWrapper() as first, FakeWrapper() as second:
        first.enqueue(ErrorResponse(503, {"code": 503, "data": None, "message": "busy"}))
        service = ProviderService(
            [
                (
                    config_for(first.base_url, name="first"),
                    provider_for(session, first.base_url, name="first"),
                ),
                (
                    config_for(second.base_url, name="second"),
                    provider_for(session, second.base_url, name="second"),
                ),
            ]
        )
        request = next_turn("stale-caller-value", ChatMessage("user", "我第一句话是什么"))
        events = [e async for e in service.stream_chat(request, sessions={"first": "code-1"})]

    assert [e.provider for e in events if isinstance(e, StreamStart)] == ["first", "second"]
    assert first.requests[0].json["chatcode"] == "code-1"
    assert "initMessage" not in first.requests[0].json
    # The failover target never sees the first provider's session: it starts afresh, with the
    # persona and the history folded in.
    sent = second.requests[0].json
    assert "chatcode" not in sent
    assert sent["initMessage"] == {"role": "system", "content": PERSONA}
    assert "User: 我第一句话是什么" in sent["messages"][0]["content"]
    assert session_of(events) in second.conversations


async def test_service_without_sessions_sends_none_even_if_the_request_had_one(
    fake, session
) -> None:
    service = ProviderService([(config_for(fake.base_url), provider_for(session, fake.base_url))])
    request = next_turn("not-for-anyone")
    [e async for e in service.stream_chat(request)]
    assert "chatcode" not in fake.requests[0].json


def test_build_provider_makes_a_wrapper_adapter_for_the_wrapper_kind() -> None:
    config = ProviderConfig(name="w", kind="wrapper", base_url="http://127.0.0.1:3000")
    provider = build_provider(config, None)  # type: ignore[arg-type]
    assert isinstance(provider, WrapperProvider)
    assert provider.variant == "stream"


# --- configuration -----------------------------------------------------------------------------


def test_wrapper_kind_and_its_variants_are_accepted() -> None:
    for variant in ("stream", "sse", "plain", "steamship"):
        data = with_provider(
            kind="wrapper", base_url="http://127.0.0.1:3000", wrapper_stream=variant
        )
        (provider,) = parse_config(data, ENV).providers
        assert (provider.kind, provider.wrapper_stream) == ("wrapper", variant)
    data = with_provider(kind="wrapper", base_url="http://127.0.0.1:3000")
    assert parse_config(data, ENV).providers[0].wrapper_stream is None


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"wrapper_stream": "stream"}, "providers[0].wrapper_stream"),
        ({"kind": "anthropic", "wrapper_stream": "sse"}, "providers[0].wrapper_stream"),
        ({"kind": "wrapper", "wrapper_stream": "websocket"}, "providers[0].wrapper_stream"),
        ({"kind": "wrapper", "reduce_stream": True}, "providers[0].reduce_stream"),
        ({"kind": "wrapper", "base_url": "http://127.0.0.1:3000/openai/"}, "providers[0].base_url"),
    ],
)
def test_bad_wrapper_options_are_rejected_with_their_key_path(
    change: dict[str, object], path: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_provider(**change), ENV)
    assert info.value.path == path


def test_example_wrapper_provider_is_valid_once_uncommented(tmp_path: Path) -> None:
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("  # - name: wrapper")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])
    uncommented = "\n".join([*lines[:start], *block, *lines[start + len(block) :]])
    path = tmp_path / "config.yaml"
    path.write_text(uncommented, encoding="utf-8")
    wrapper = load_config(path, ENV).providers[-1]
    assert (wrapper.name, wrapper.kind, wrapper.wrapper_stream) == ("wrapper", "wrapper", "stream")
    assert wrapper.base_url == "http://127.0.0.1:3000"
    assert wrapper.timeouts.first_chunk == 120
