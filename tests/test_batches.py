"""Calls made at the same moment run together: batches, their order, failures, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bot.storage.batches import Batches


class Recorder:
    """A ``run`` that records each batch, doubles each item, and fails on request."""

    def __init__(self, *, fail_on: int | None = None, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = gate

    async def __call__(self, batch: Sequence[int]) -> list[int]:
        self.batches.append(list(batch))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on in batch:
            raise ValueError(f"item {self.fail_on} is bad")
        return [item * 2 for item in batch]


async def test_calls_made_at_once_run_in_one_batch_each_with_its_own_outcome():
    run = Recorder()
    batches = Batches(run, most=10, name="test")

    outcomes = await asyncio.gather(*(batches(n) for n in range(5)))

    assert outcomes == [0, 2, 4, 6, 8]
    assert run.batches == [[0, 1, 2, 3, 4]]


async def test_calls_made_while_a_batch_runs_wait_for_the_next_and_most_caps_a_batch():
    gate = asyncio.Event()
    run = Recorder(gate=gate)
    batches = Batches(run, most=2, name="test")
    first = asyncio.ensure_future(batches(1))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batches(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    gate.set()

    assert await asyncio.gather(first, *later) == [2, 4, 6, 8]
    assert run.batches == [[1], [2, 3], [4]]


async def test_a_failing_batch_runs_each_alone_so_only_the_bad_item_fails():
    run = Recorder(fail_on=3)
    batches = Batches(run, most=10, name="test")

    outcomes = await asyncio.gather(*(batches(n) for n in (1, 3, 5)), return_exceptions=True)

    assert outcomes[0] == 2
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 10
    assert run.batches == [[1, 3, 5], [1], [3], [5]]


async def test_a_caller_gone_before_its_batch_is_left_out_one_gone_during_it_is_handed_back():
    gate = asyncio.Event()
    run = Recorder(gate=gate)
    orphans: list[int] = []

    async def orphaned(outcome: int) -> None:
        orphans.append(outcome)

    batches = Batches(run, most=10, name="test", orphaned=orphaned)
    running = asyncio.ensure_future(batches(1))
    await asyncio.sleep(0)  # the call is made; its batch begins at the next step
    gone_before = asyncio.ensure_future(batches(2))
    kept = asyncio.ensure_future(batches(3))
    await asyncio.sleep(0)
    gone_before.cancel()
    running.cancel()  # its batch is under way
    gate.set()

    assert await kept == 6
    assert run.batches == [[1], [3]]
    assert orphans == [2]
    assert running.cancelled()
    assert gone_before.cancelled()


async def test_an_orphan_that_cannot_be_handed_back_does_not_stop_the_batches(caplog):
    gate = asyncio.Event()

    async def orphaned(_outcome: int) -> None:
        raise RuntimeError("database gone")

    batches = Batches(Recorder(gate=gate), most=10, name="test", orphaned=orphaned)
    gone = asyncio.ensure_future(batches(1))
    await asyncio.sleep(0)  # the call is made
    await asyncio.sleep(0)  # its batch is under way
    gone.cancel()
    gate.set()
    await asyncio.sleep(0)

    assert await batches(4) == 8
    assert "could not undo" in caplog.text


async def test_when_the_runner_is_cancelled_every_waiting_caller_ends_cancelled():
    gate = asyncio.Event()
    batches = Batches(Recorder(gate=gate), most=1, name="test")
    callers = [asyncio.ensure_future(batches(n)) for n in range(3)]
    await asyncio.sleep(0)
    runner = next(t for t in asyncio.all_tasks() if t.get_name() == "test")

    runner.cancel()

    for caller in callers:
        with pytest.raises(asyncio.CancelledError):
            await caller
