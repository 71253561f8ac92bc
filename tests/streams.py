"""What the provider tests read from a stream of events: all of them, or those before an error."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from bot.errors import ProviderError
from bot.providers.base import StreamEvent, StreamStart, TextDelta


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


def starts(events: Iterable[StreamEvent]) -> list[str]:
    """The providers the events started on, in order."""
    return [e.provider for e in events if isinstance(e, StreamStart)]
