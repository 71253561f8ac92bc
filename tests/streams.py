"""What the provider tests read from a stream of events: all of them, or those before an error."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import replace

from bot.errors import ProviderError
from bot.providers.anthropic_decoder import AnthropicStreamParser
from bot.providers.base import StreamEvent, StreamStart, TextDelta, ToolCallDelta
from bot.providers.decoders import OpenAIStreamParser, SSEDecoder, SSEMessage


async def collect(stream: AsyncIterable[StreamEvent]) -> list[StreamEvent]:
    """Every event of a stream that ends without an error."""
    return [event async for event in stream]


async def collect_until_error(
    stream: AsyncIterable[StreamEvent],
) -> tuple[list[StreamEvent], ProviderError]:
    """The events before the stream's ProviderError, and that error; fails if none is raised."""
    events: list[StreamEvent] = []
    try:
        async for event in stream:
            events.append(event)  # noqa: PERF401 - the events before the error are the point
    except ProviderError as exc:
        return events, exc
    raise AssertionError(f"no error was raised; events: {events}")


def text_of(events: Iterable[StreamEvent]) -> str:
    """The text of the events, joined."""
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def joined(events: Iterable[StreamEvent]) -> list[StreamEvent]:
    """The events with every run of text pieces, and of argument fragments of one tool call,
    joined: what a stream over HTTP gives whichever reads its body arrived in."""
    out: list[StreamEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta):
            out[-1] = TextDelta(last.text + event.text)
        elif (
            isinstance(event, ToolCallDelta)
            and isinstance(last, ToolCallDelta)
            and event.index == last.index
            and event.id is None
            and event.name is None
        ):
            out[-1] = replace(last, arguments=last.arguments + event.arguments)
        else:
            out.append(event)
    return out


def starts(events: Iterable[StreamEvent]) -> list[str]:
    """The providers the events started on, in order."""
    return [e.provider for e in events if isinstance(e, StreamStart)]


def decode_sse(feeds: Iterable[bytes]) -> list[SSEMessage]:
    """The server-sent events of ``feeds``, fed to one decoder piece by piece."""
    decoder = SSEDecoder()
    messages: list[SSEMessage] = []
    for feed in feeds:
        messages += decoder.feed(feed)
    return messages + decoder.flush()


def parse_openai(messages: Iterable[SSEMessage]) -> list[StreamEvent]:
    """The events of an OpenAI-format stream's messages, closed at the end."""
    parser = OpenAIStreamParser()
    return _parsed(messages, lambda message: parser.feed(message.data), parser.close)


def parse_anthropic(messages: Iterable[SSEMessage]) -> list[StreamEvent]:
    """The events of an Anthropic Messages stream's messages, closed at the end."""
    parser = AnthropicStreamParser()
    return _parsed(messages, parser.feed_message, parser.close)


def _parsed(
    messages: Iterable[SSEMessage],
    feed: Callable[[SSEMessage], list[StreamEvent]],
    close: Callable[[], list[StreamEvent]],
) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for message in messages:
        events += feed(message)
    return events + close()
