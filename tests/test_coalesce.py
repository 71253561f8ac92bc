"""coalesce: the deltas of one read joined, every other event kept in its place."""

from __future__ import annotations

import pytest

from bot.providers.base import (
    ProviderSession,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from bot.providers.coalesce import coalesce
from tests.streams import text_of

# A read with every kind of run: text, a call's fragments, a second call, events between.
MIXED: list[StreamEvent] = [
    TextDelta("Hel"),
    TextDelta("lo"),
    ToolCallDelta(index=0, id="call_1", name="lookup"),
    ToolCallDelta(index=0, arguments='{"q": '),
    ToolCallDelta(index=0, arguments='"x"}'),
    ToolCallDelta(index=1, id="call_2", name="fetch", arguments="{"),
    ToolCallDelta(index=1, arguments="}"),
    TextDelta(" again"),
    ProviderSession("MjAy"),
    TextDelta("!"),
    TextDelta("!"),
    Usage(3, 4),
    StreamEnd("stop"),
]


def test_consecutive_text_deltas_become_one_with_the_joined_text() -> None:
    assert coalesce([TextDelta("a"), TextDelta("b"), TextDelta("c")]) == [TextDelta("abc")]


def test_an_event_between_text_deltas_keeps_its_place_and_splits_the_runs() -> None:
    events: list[StreamEvent] = [TextDelta("a"), Usage(1, 2), TextDelta("b"), TextDelta("c")]
    assert coalesce(events) == [TextDelta("a"), Usage(1, 2), TextDelta("bc")]


def test_fragments_of_one_tool_call_join_their_arguments() -> None:
    events: list[StreamEvent] = [
        ToolCallDelta(index=0, id="call_1", name="lookup", arguments=""),
        ToolCallDelta(index=0, arguments='{"q": '),
        ToolCallDelta(index=0, arguments='"x"}'),
    ]
    assert coalesce(events) == [
        ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"q": "x"}')
    ]


@pytest.mark.parametrize(
    "second",
    [
        ToolCallDelta(index=1, arguments="{}"),  # another call
        ToolCallDelta(index=0, id="call_2", arguments="{}"),  # a new call at the same index
        ToolCallDelta(index=0, name="fetch", arguments="{}"),
    ],
    ids=["other index", "new id", "new name"],
)
def test_a_fragment_that_starts_or_belongs_to_another_call_is_not_joined(
    second: ToolCallDelta,
) -> None:
    first = ToolCallDelta(index=0, id="call_1", name="lookup", arguments="{")
    assert coalesce([first, second]) == [first, second]


def test_text_and_tool_call_fragments_are_never_joined_with_each_other() -> None:
    events: list[StreamEvent] = [
        TextDelta("a"),
        ToolCallDelta(index=0, arguments="{"),
        TextDelta("b"),
    ]
    assert coalesce(events) == events


def test_a_mixed_read_keeps_its_order_and_its_text() -> None:
    assert coalesce(MIXED) == [
        TextDelta("Hello"),
        ToolCallDelta(index=0, id="call_1", name="lookup", arguments='{"q": "x"}'),
        ToolCallDelta(index=1, id="call_2", name="fetch", arguments="{}"),
        TextDelta(" again"),
        ProviderSession("MjAy"),
        TextDelta("!!"),
        Usage(3, 4),
        StreamEnd("stop"),
    ]
    assert text_of(coalesce(MIXED)) == text_of(MIXED)


@pytest.mark.parametrize("cut", range(len(MIXED) + 1))
def test_joining_two_reads_apart_then_together_equals_joining_them_at_once(cut: int) -> None:
    apart = coalesce(coalesce(MIXED[:cut]) + coalesce(MIXED[cut:]))
    assert apart == coalesce(MIXED)


@pytest.mark.parametrize(
    "events",
    [[], [TextDelta("a")], [StreamEnd("stop")], [Usage(1, 1), StreamEnd("stop")]],
    ids=["empty", "one delta", "one end", "no deltas"],
)
def test_a_read_without_a_run_to_join_is_unchanged(events: list[StreamEvent]) -> None:
    assert coalesce(events) == events
