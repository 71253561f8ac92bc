"""The tick grid: waits that may end late end together, one timer per tick."""

from __future__ import annotations

import asyncio

import pytest

from bot.ticks import EARLY_SECONDS, TICK_SECONDS, Ticker, next_tick, tick_at, ticker


def test_a_wait_due_on_a_tick_ends_on_it() -> None:
    assert tick_at(10.0) == 10.0
    assert tick_at(10.0 + TICK_SECONDS) == 10.0 + TICK_SECONDS


def test_a_wait_due_just_after_a_tick_ends_on_that_tick() -> None:
    assert tick_at(10.0 + EARLY_SECONDS / 2) == 10.0


def test_a_wait_due_well_after_a_tick_ends_on_the_next() -> None:
    assert tick_at(10.0 + 2 * EARLY_SECONDS) == 10.0 + TICK_SECONDS
    assert tick_at(10.1, period=0.5, early=0.0) == 10.5


def test_the_next_tick_is_always_later() -> None:
    assert next_tick(10.0) == 10.0 + TICK_SECONDS
    assert next_tick(10.01) == 10.0 + TICK_SECONDS
    assert next_tick(10.0 + TICK_SECONDS - 0.001) == 10.0 + TICK_SECONDS


async def test_waiters_of_one_tick_share_one_timer_and_all_wake() -> None:
    clock = asyncio.get_running_loop().time
    ticks = Ticker(period=0.05, clock=clock)
    moment = clock() + 0.03
    waiters = [asyncio.create_task(ticks.until(moment)) for _ in range(5)]
    await asyncio.sleep(0)
    assert ticks.pending == 1
    await asyncio.wait_for(asyncio.gather(*waiters), 2)
    assert ticks.pending == 0


async def test_a_cancelled_waiter_leaves_the_others_waking() -> None:
    ticks = Ticker(period=0.05, clock=asyncio.get_running_loop().time)
    gone = asyncio.create_task(ticks.next())
    staying = asyncio.create_task(ticks.next())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await asyncio.wait_for(staying, 2)


async def test_one_ticker_per_event_loop() -> None:
    assert ticker() is ticker()
