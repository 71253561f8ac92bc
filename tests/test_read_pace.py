"""Reading a streamed body when its text can next be shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.config import ProviderConfig, TimeoutConfig
from bot.providers import read_pace
from bot.providers.base import ChatMessage, ChatRequest, StreamEnd, TextDelta
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.read_pace import (
    FEEDS_WITHIN_SECONDS,
    LAG_SECONDS,
    LEAD_SECONDS,
    Pace,
    hold_seconds,
)
from tests.fakes.provider import FakeProvider

REQUEST = ChatRequest(model="gpt-test", messages=(ChatMessage("user", "hi"),))
CAP = 1.0


def test_the_body_is_read_a_moment_before_an_update_waiting_for_its_slot():
    assert hold_seconds(0.6, 1.0, CAP, update_waiting=True) == pytest.approx(0.6 - LEAD_SECONDS)


def test_the_body_is_read_a_moment_after_a_slot_no_update_waits_for():
    # The text read then goes out at once, in the read's own wake-up.
    assert hold_seconds(0.6, 1.0, CAP, update_waiting=False) == pytest.approx(0.6 + LAG_SECONDS)


def test_a_read_that_feeds_the_showing_at_hand_aims_at_the_one_after():
    # The text read now goes out with the showing due in 10 ms (or at once): the next
    # read is wanted at the following showing, for which no update waits yet.
    for waiting in (True, False):
        assert hold_seconds(0.0, 0.8, CAP, update_waiting=waiting) == pytest.approx(
            0.8 + LAG_SECONDS
        )
        assert hold_seconds(
            FEEDS_WITHIN_SECONDS / 5, 0.8, CAP, update_waiting=waiting
        ) == pytest.approx(FEEDS_WITHIN_SECONDS / 5 + 0.8 + LAG_SECONDS)


def test_no_hold_is_longer_than_the_cap_so_a_streams_end_is_noticed_soon():
    assert hold_seconds(3.0, 3.0, CAP, update_waiting=False) == CAP
    assert hold_seconds(0.0, 20.0, 0.4, update_waiting=True) == 0.4
    assert hold_seconds(0.5, 1.0, 0.0, update_waiting=True) == 0.0, (
        "no cap at all: read as the pieces come"
    )


def test_without_a_consumer_the_default_hold_applies():
    assert read_pace.PACE.get() is None
    assert read_pace.next_hold() == read_pace.DEFAULT_HOLD_SECONDS


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


async def deltas_of_a_stream(fake: FakeProvider, next_use: read_pace.NextUse) -> list[str]:
    """The text deltas of 10 pieces streamed 0.04 s apart, read at the pace of ``next_use``."""
    fake.enqueue_stream([f"{i} " for i in range(10)], delay=0.04)
    timeouts = TimeoutConfig(connect=2.0, first_chunk=2.0, idle=2.0, total=10.0)
    config = ProviderConfig(name="fake", base_url=fake.base_url, api_key="k", timeouts=timeouts)

    async def consume() -> list[str]:
        read_pace.PACE.set(Pace(next_use, CAP))
        async with aiohttp.ClientSession() as session:
            provider = OpenAICompatProvider(config, session)
            events = [event async for event in provider.stream_chat(REQUEST)]
        assert events[-1] == StreamEnd("stop")
        return [event.text for event in events if isinstance(event, TextDelta)]

    # Its own task, as the chat's consumer is: the pace it sets stays with it.
    return await asyncio.create_task(consume())


async def test_pieces_wait_in_the_socket_until_the_consumer_can_show_them(fake):
    # The consumer shows text next in 0.9 s: after the first piece (shown at once) the
    # other nine, 0.36 s of stream, arrive while the body is held, and come in one read.
    deltas = await deltas_of_a_stream(fake, lambda: (0.9, 1.0, False))
    assert "".join(deltas) == "".join(f"{i} " for i in range(10))
    assert deltas == ["0 ", "".join(f"{i} " for i in range(1, 10))]


async def test_a_consumer_ready_at_once_gets_the_pieces_in_more_reads(fake):
    # Ready at once, with no spacing: the body is read as the pieces come.
    deltas = await deltas_of_a_stream(fake, lambda: (0.0, 0.0, False))
    assert "".join(deltas) == "".join(f"{i} " for i in range(10))
    assert len(deltas) > 2
    assert read_pace.PACE.get() is None, "the pace stayed in the consumer's task"
