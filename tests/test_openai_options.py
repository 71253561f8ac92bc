"""Options of the openai kind over HTTP: reduce_stream, include_usage, max_tokens; user and n."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig
from bot.providers.base import ChatMessage, ChatRequest, StreamEnd, StreamEvent, TextDelta, Usage
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.service import user_tag
from tests.e2e import turn_over
from tests.fakes.provider import (
    Chunk,
    Done,
    FakeProvider,
    Finish,
    Raw,
    RecordedRequest,
    Role,
    Step,
    UsageChunk,
    echo_script,
)
from tests.seeds import SEED_002_REDUCE_CHAT
from tests.streams import joined

REQUEST = ChatRequest(model="gpt-test", messages=(ChatMessage("user", "讲个故事"),), user="u-1")

FAST = TimeoutConfig(connect=2.0, first_chunk=2.0, idle=2.0, total=5.0)


def reduce_aware_echo(request: RecordedRequest) -> list[Step]:
    """The echo answer, in seed 002's reduced shapes when the request asked for them."""
    if request.headers.get("Reduce-Stream") != "true" or not request.json.get("stream"):
        return echo_script(request)
    last = request.json["messages"][-1]["content"]
    lines = [[{"role": "assistant"}], *([{"content": ch}] for ch in f"echo: {last}"), [{}]]
    payloads = [json.dumps(line, ensure_ascii=False) for line in lines]
    return [Raw(f"data: {p}\n\n".encode()) for p in [*payloads, "[DONE]"]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(default=reduce_aware_echo) as server:
        yield server


def provider_for(
    session: aiohttp.ClientSession, base_url: str, **options: object
) -> OpenAICompatProvider:
    config = ProviderConfig(
        name="fake",
        base_url=base_url,
        api_key="sk-test-0123456789abcdef",
        timeouts=FAST,
        **options,  # type: ignore[arg-type]
    )
    return OpenAICompatProvider(config, session)


async def collect(
    provider: OpenAICompatProvider, request: ChatRequest = REQUEST
) -> list[StreamEvent]:
    return [event async for event in provider.stream_chat(request)]


# --- reduce_stream ---------------------------------------------------------------------------


async def test_reduce_stream_sends_the_header_and_reads_the_reduced_shapes(fake, session) -> None:
    events = await collect(provider_for(session, fake.base_url, reduce_stream=True))
    (request,) = fake.requests
    assert request.headers["Reduce-Stream"] == "true"
    assert joined(events) == [TextDelta("echo: 讲个故事"), StreamEnd("stop")]


async def test_recorded_seed_002_reduced_stream_over_http(fake, session) -> None:
    fake.enqueue(Raw(SEED_002_REDUCE_CHAT))
    events = await collect(provider_for(session, fake.base_url, reduce_stream=True))
    assert joined(events) == [TextDelta("闪光的夜晚，"), StreamEnd("stop")]


async def test_reduce_stream_is_off_by_default_and_never_sent_to_the_models_list(
    fake, session
) -> None:
    events = await collect(provider_for(session, fake.base_url))
    await provider_for(session, fake.base_url, reduce_stream=True).list_models()
    chat, models = fake.requests
    assert "Reduce-Stream" not in chat.headers
    assert "Reduce-Stream" not in models.headers
    assert isinstance(events[-2], Usage), "the normal shape, with its usage chunk"


async def test_configured_header_overrides_reduce_stream(fake, session) -> None:
    provider = provider_for(
        session, fake.base_url, reduce_stream=True, headers={"reduce-stream": "false"}
    )
    await collect(provider)
    (request,) = fake.requests
    assert [v for k, v in request.headers.items() if k.lower() == "reduce-stream"] == ["false"]


# --- include_usage ---------------------------------------------------------------------------


async def test_include_usage_asks_for_the_usage_chunk_and_yields_it(fake, session) -> None:
    fake.enqueue(Role(), Chunk("hi"), Finish(), UsageChunk(11, 2), Done())
    events = await collect(provider_for(session, fake.base_url, include_usage=True))
    (request,) = fake.requests
    assert request.json["stream_options"] == {"include_usage": True}
    assert events == [TextDelta("hi"), Usage(prompt_tokens=11, completion_tokens=2), StreamEnd()]


async def test_include_usage_is_off_by_default(fake, session) -> None:
    await collect(provider_for(session, fake.base_url))
    (request,) = fake.requests
    assert "stream_options" not in request.json


# --- max_tokens, n, user ---------------------------------------------------------------------


async def test_configured_max_tokens_applies_when_the_request_sets_none(fake, session) -> None:
    provider = provider_for(session, fake.base_url, max_tokens=500)
    await collect(provider)
    await collect(provider, ChatRequest(model="m", messages=REQUEST.messages, max_tokens=9))
    first, second = fake.requests
    assert first.json["max_tokens"] == 500
    assert second.json["max_tokens"] == 9


async def test_n_is_never_sent_whatever_the_options(fake, session) -> None:
    await collect(provider_for(session, fake.base_url))
    everything = provider_for(
        session, fake.base_url, reduce_stream=True, include_usage=True, max_tokens=10
    )
    await collect(everything)
    assert all("n" not in r.json for r in fake.requests)
    assert len(fake.requests) == 2


def test_user_tag_is_stable_short_hex_and_distinct_per_user() -> None:
    tag = user_tag(42)
    assert tag == user_tag(42)
    assert re.fullmatch(r"[0-9a-f]{32}", tag)
    assert len(tag) <= 64  # seed 003's limit
    assert tag != user_tag(43)


async def test_user_field_sent_by_the_bot_is_the_stable_tag_of_the_telegram_user(
    telegram, provider, config_for, start_bot
) -> None:
    async def answered(chat_id: int, count: int) -> None:
        async with asyncio.timeout(15):
            while len([m for m in telegram.messages(chat_id) if m.from_bot]) < count:
                await asyncio.sleep(0.02)

    async with start_bot(config_for(streaming={"drafts": False})) as application:
        telegram.user_sends("first question")
        await answered(42, 1)
        await turn_over(application, 42)
        telegram.user_sends("second question")
        await answered(42, 2)
        telegram.user_sends("someone else", user_id=77)
        await answered(77, 1)
    users = [r.json["user"] for r in provider.requests]
    assert users == [user_tag(42), user_tag(42), user_tag(77)]
    assert all("n" not in r.json for r in provider.requests)
