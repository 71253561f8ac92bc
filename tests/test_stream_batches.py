"""Every provider kind over HTTP: the deltas of one read arrive joined, in order, and bad
JSON in a stream is read as the standard library reads it.

The real adapters talk to the fake upstreams; ``Together`` writes several events at once
(one read), ``Hold`` keeps the rest back until the test has read what came before (another
read).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig
from bot.errors import AuthError, ContextTooLong, ProviderError, Unavailable
from bot.providers.anthropic import AnthropicProvider
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    Provider,
    ProviderSession,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.wrapper import WrapperProvider
from tests import streams
from tests.fakes.anthropic import (
    BlockStart,
    BlockStop,
    BlockText,
    FakeAnthropic,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamError,
)
from tests.fakes.provider import (
    Chunk,
    Done,
    FakeProvider,
    Finish,
    Hold,
    Raw,
    Role,
    Together,
    UsageChunk,
)
from tests.fakes.wrapper import Code, End, ErrorLine, FakeWrapper, Piece

REQUEST = ChatRequest(model="m", messages=(ChatMessage("user", "hi"),))
TIMEOUTS = TimeoutConfig(connect=2.0, first_chunk=2.0, idle=2.0, total=10.0)
HUGE = 123456789012345678901234567890
"""An integer beyond 64 bits, which orjson alone would read as a float."""


@dataclass(frozen=True)
class Upstream:
    """One provider kind: its fake, its adapter, and its answer's steps and events."""

    name: str
    fake: Callable[[], AbstractAsyncContextManager[Any]]
    kind: Literal["openai", "anthropic", "wrapper"]
    adapter: Callable[[ProviderConfig, aiohttp.ClientSession], Provider]
    base_url: Callable[[Any], str]
    opening: tuple[Any, ...]
    """Steps before the text."""
    text: Callable[[str], Any]
    """The step of a piece of text."""
    between: Any
    """A step whose event is not a text delta."""
    between_event: StreamEvent
    closing: tuple[Any, ...]
    """Steps after the text."""
    closing_events: tuple[StreamEvent, ...]
    error: Any
    """A step that fails the stream."""
    error_class: type[ProviderError]


UPSTREAMS = [
    Upstream(
        name="openai",
        fake=FakeProvider,
        kind="openai",
        adapter=OpenAICompatProvider,
        base_url=lambda fake: fake.base_url,
        opening=(Role(),),
        text=Chunk,
        between=UsageChunk(7, 2),
        between_event=Usage(7, 2),
        closing=(Finish(), Done()),
        closing_events=(StreamEnd("stop"),),
        error=Raw(
            b'data: {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}\n\n'
        ),
        error_class=AuthError,
    ),
    Upstream(
        name="anthropic",
        fake=FakeAnthropic,
        kind="anthropic",
        adapter=AnthropicProvider,
        base_url=lambda fake: fake.base_url,
        opening=(MessageStart(5), BlockStart(0)),
        text=lambda piece: BlockText(0, piece),
        between=BlockStart(1, "tool_use", id="toolu_1", name="lookup"),
        between_event=ToolCallDelta(index=0, id="toolu_1", name="lookup"),
        closing=(BlockStop(0), MessageDelta("end_turn", 2), MessageStop()),
        closing_events=(Usage(5, 2), StreamEnd("stop")),
        error=StreamError("overloaded_error", "Overloaded"),
        error_class=Unavailable,
    ),
    Upstream(
        name="wrapper",
        fake=FakeWrapper,
        kind="wrapper",
        adapter=WrapperProvider,
        base_url=lambda fake: fake.base_url,
        opening=(),
        text=Piece,
        between=Code("MjAy"),
        between_event=ProviderSession("MjAy"),
        closing=(End(),),
        closing_events=(StreamEnd("stop"),),
        error=ErrorLine("400 This model's maximum context length is 4097 tokens"),
        error_class=ContextTooLong,
    ),
]


@pytest.fixture(params=UPSTREAMS, ids=[u.name for u in UPSTREAMS])
def upstream(request: pytest.FixtureRequest) -> Upstream:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def served(upstream: Upstream, session: aiohttp.ClientSession) -> AsyncIterator[Served]:
    async with upstream.fake() as fake:
        config = ProviderConfig(
            name=upstream.name,
            kind=upstream.kind,
            base_url=upstream.base_url(fake),
            timeouts=TIMEOUTS,
        )
        yield Served(upstream, fake, upstream.adapter(config, session))


@dataclass(frozen=True)
class Served:
    """A fake upstream of one kind, and the real adapter pointed at it."""

    upstream: Upstream
    fake: Any
    provider: Provider

    def enqueue(self, *steps: Any) -> None:
        self.fake.enqueue(*steps)

    def texts(self, *pieces: str) -> list[Any]:
        return [self.upstream.text(piece) for piece in pieces]


# --- one read, several deltas -------------------------------------------------------------------


async def test_pieces_arriving_in_one_read_give_one_delta_with_the_joined_text(
    served: Served,
) -> None:
    up = served.upstream
    served.enqueue(*up.opening, Together(*served.texts("Hel", "lo", " 🌍")), *up.closing)
    events = await streams.collect(served.provider.stream_chat(REQUEST))
    assert events == [TextDelta("Hello 🌍"), *up.closing_events]


async def test_pieces_arriving_in_different_reads_stay_separate(served: Served) -> None:
    up = served.upstream
    release = asyncio.Event()
    served.enqueue(
        *up.opening, *served.texts("first"), Hold(release), *served.texts("second"), *up.closing
    )
    stream = served.provider.stream_chat(REQUEST)
    first = await anext(stream)
    release.set()  # "second" is written only now, after "first" was read and passed on
    rest = await streams.collect(stream)
    assert [first, *rest] == [TextDelta("first"), TextDelta("second"), *up.closing_events]


async def test_an_event_between_deltas_of_one_read_keeps_its_place(served: Served) -> None:
    up = served.upstream
    steps = Together(*served.texts("a", "b"), up.between, *served.texts("c", "d"))
    served.enqueue(*up.opening, steps, *up.closing)
    events = await streams.collect(served.provider.stream_chat(REQUEST))
    assert events == [TextDelta("ab"), up.between_event, TextDelta("cd"), *up.closing_events]


async def test_an_error_in_the_same_read_comes_after_the_text_before_it(served: Served) -> None:
    up = served.upstream
    served.enqueue(*up.opening, Together(*served.texts("so ", "far"), up.error))
    events, error = await streams.collect_until_error(served.provider.stream_chat(REQUEST))
    assert events == [TextDelta("so far")]
    assert isinstance(error, up.error_class)


# --- bad JSON in a stream: read as json.loads reads it ------------------------------------------


def raw_json(text: str, *, sse: bool = True, event: str | None = None) -> Raw:
    """One event (or, with ``sse`` False, one line) holding ``text`` as it is."""
    if not sse:
        return Raw(f"{text}\n".encode())
    head = f"event: {event}\n" if event else ""
    return Raw(f"{head}data: {text}\n\n".encode())


async def test_openai_stream_reads_nan_huge_integers_and_non_json_as_before(session) -> None:
    async with FakeProvider() as fake:
        fake.enqueue(
            Role(),
            raw_json("keep-alive"),
            raw_json('{"choices": [{"index": 0, "delta": {"content": "a"}}], "t": NaN}'),
            raw_json(
                f'{{"choices": [], "usage": {{"prompt_tokens": {HUGE}, "completion_tokens": 1}}}}'
            ),
            Chunk("b"),
            Finish(),
            Done(),
        )
        provider = OpenAICompatProvider(
            ProviderConfig(name="openai", base_url=fake.base_url, timeouts=TIMEOUTS), session
        )
        events = await streams.collect(provider.stream_chat(REQUEST))
    assert events == [TextDelta("a"), Usage(HUGE, 1), TextDelta("b"), StreamEnd("stop")]


async def test_anthropic_stream_reads_nan_huge_integers_and_non_json_as_before(session) -> None:
    start = f'{{"type": "message_start", "message": {{"usage": {{"input_tokens": {HUGE}}}}}}}'
    delta = '{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}, "t": NaN}'  # noqa: E501
    async with FakeAnthropic() as fake:
        fake.enqueue(
            raw_json(start, event="message_start"),
            BlockStart(0),
            raw_json(delta, event="content_block_delta"),
            raw_json("not json", event="ping"),
            BlockText(0, "b"),
            BlockStop(0),
            MessageDelta("end_turn", 2),
            MessageStop(),
        )
        config = ProviderConfig(
            name="claude", kind="anthropic", base_url=fake.base_url, timeouts=TIMEOUTS
        )
        events = await streams.collect(AnthropicProvider(config, session).stream_chat(REQUEST))
    assert streams.joined(events) == [TextDelta("ab"), Usage(HUGE, 2), StreamEnd("stop")]


async def test_wrapper_stream_reads_nan_huge_integers_and_non_json_as_before(session) -> None:
    async with FakeWrapper() as fake:
        fake.enqueue(
            raw_json('{"code": 0, "data": "a", "message": "continue", "t": NaN}', sse=False),
            raw_json("not json", sse=False),
            Piece("b"),
            # A code beyond 64 bits is still a non-zero code: a failure, not a line to skip.
            raw_json(
                f'{{"code": {HUGE}, "data": "Request failed with status code 401"}}', sse=False
            ),
            End(),
        )
        config = ProviderConfig(
            name="wrapper", kind="wrapper", base_url=fake.base_url, timeouts=TIMEOUTS
        )
        provider = WrapperProvider(config, session)
        events, error = await streams.collect_until_error(provider.stream_chat(REQUEST))
    assert streams.joined(events) == [TextDelta("ab")]
    assert isinstance(error, Unavailable)
    assert str(HUGE) in error.detail
