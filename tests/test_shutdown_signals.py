"""Stopping the process: queued turns give up, running ones get a grace period, then a stop."""

from __future__ import annotations

import asyncio

import pytest

from bot.inflight import ConversationLocks, StopSignals, unless_stopped

KEY = (42, None)


async def settle() -> None:
    """Let every task run as far as it can without waiting on I/O."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_turn_queued_behind_another_gives_up_when_the_process_closes():
    stops, locks = StopSignals(), ConversationLocks()
    release = asyncio.Event()
    outcomes: list[str] = []

    async def first() -> None:
        async with stops.turn(locks.hold(KEY)) as free:
            outcomes.append(f"first {free}")
            await release.wait()

    async def second() -> None:
        async with stops.turn(locks.hold(KEY)) as free:
            outcomes.append(f"second {free}")

    running = asyncio.create_task(first())
    await settle()
    queued = asyncio.create_task(second())
    await settle()
    assert outcomes == ["first True"]

    stops.close()
    await queued
    # The first still holds the conversation: the second did not wait for it.
    assert outcomes == ["first True", "second False"]
    assert not running.done()
    release.set()
    await running


async def test_turns_giving_up_at_the_close_keep_their_messages_in_the_order_they_came():
    stops, locks = StopSignals(), ConversationLocks()
    release = asyncio.Event()
    kept: list[int] = []

    async def first() -> None:
        async with stops.turn(locks.hold(KEY)):
            await release.wait()

    async def queued(n: int, store_steps: int) -> None:
        async with stops.turn(locks.hold(KEY)) as free:
            assert not free
            # Storing takes a few round trips; the earliest arrival takes the most here.
            for _ in range(store_steps):
                await asyncio.sleep(0)
            kept.append(n)

    running = asyncio.create_task(first())
    await settle()
    waiting = [asyncio.create_task(queued(n, 3 - n)) for n in range(3)]
    await settle()

    stops.close()
    await asyncio.gather(*waiting)
    assert kept == [0, 1, 2]
    release.set()
    await running


async def test_no_turn_starts_once_the_process_closes():
    stops, locks = StopSignals(), ConversationLocks()
    stops.close()
    async with stops.turn(locks.hold(KEY)) as free:
        assert not free
        # Nothing was taken: the conversation stays free for whoever comes next.
        assert not locks.busy(KEY)


async def test_an_error_while_waiting_is_not_mistaken_for_the_close():
    stops = StopSignals()

    class Broken:
        async def __aenter__(self) -> None:
            raise TimeoutError("the database did not answer")

        async def __aexit__(self, *exc: object) -> None:
            return None

    with pytest.raises(TimeoutError, match="database"):
        async with stops.turn(Broken()):
            raise AssertionError("the turn must not start without its lock")


async def test_drained_tells_whether_the_turns_under_way_ended_within_the_grace():
    stops, locks = StopSignals(), ConversationLocks()
    assert await stops.drained(0)
    release = asyncio.Event()

    async def turn() -> None:
        async with stops.turn(locks.hold(KEY)):
            await release.wait()

    task = asyncio.create_task(turn())
    await settle()
    assert not await stops.drained(0)
    release.set()
    assert await stops.drained(5)
    await task


async def test_interrupt_stops_every_answer_streaming_and_any_that_starts_later():
    stops = StopSignals()
    with stops.track(1, owner_id=7) as first:
        assert not first.is_set()
        stops.interrupt()
        assert first.is_set()
        assert stops.interrupted
        with stops.track(2, owner_id=8) as late:
            assert late.is_set()


async def test_a_stop_button_press_is_not_an_interruption():
    stops = StopSignals()
    with stops.track(1, owner_id=7) as event:
        stops.request(1, 7, privileged=False)
        assert event.is_set()
    assert not stops.interrupted
    assert not stops.closing


async def test_unless_stopped_cancels_the_work_once_stopped_and_else_returns_its_result():
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def quick() -> str:
        return "done"

    assert await unless_stopped(quick(), stop) == "done"
    waiting = asyncio.create_task(unless_stopped(slow(), stop))
    await settle()
    stop.set()
    assert await waiting is None
    assert cancelled.is_set()
