"""CPU and trips to aiosqlite's thread per store write, with SQLAlchemy's adapter and ours.

    python -m bench.store_bench [--turns 200] [--rounds 3]

On a fresh SQLite file per driver, begins --turns turns, checkpoints each answer once and
finishes it. Prints, per operation, the process CPU time (all threads, process_time) per
call, the best of --rounds rounds, and the trips to the connection's thread one call took.
"stock" is SQLAlchemy's own aiosqlite adapter, "one trip" bot/storage/sqlite_driver.py.
Compare figures taken back to back on one machine only.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import aiosqlite.core
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

from bot.event_loop import loop_from, run
from bot.storage.db import create_engine, migrate
from bot.storage.records import BegunTurn, MessageStatus, TurnPlan, TurnStart
from bot.storage.sqlite_driver import one_trip_dbapi
from bot.storage.store import Store

OPERATIONS = ("begin_turn", "checkpoint_answer", "finish_answer")
DRIVERS: dict[str, Callable[[], Any]] = {
    "stock": lambda: AsyncAdapt_aiosqlite_dbapi(aiosqlite, sqlite3),
    "one trip": one_trip_dbapi,
}

trips = 0
_real_execute: Any = aiosqlite.core.Connection._execute


async def _counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
    global trips  # noqa: PLW0603 - one counter for the whole process
    trips += 1
    return await _real_execute(self, fn, *args, **kwargs)


def plan(_chat: object) -> TurnPlan:
    return TurnPlan("default", "Be helpful.", "bench-model")


def checkpointer(store: Store, answer_id: int) -> Callable[[], Awaitable[None]]:
    return lambda: store.checkpoint_answer(answer_id, "some text " * 50, (5,))


def finisher(store: Store, answer_id: int) -> Callable[[], Awaitable[None]]:
    text = "some text " * 60
    return lambda: store.finish_answer(answer_id, text=text, status=MessageStatus.COMPLETE)


async def timed(calls: Sequence[Callable[[], Awaitable[Any]]]) -> tuple[float, float, list[Any]]:
    """CPU seconds and trips per call of ``calls`` run one after another, and their results."""
    global trips  # noqa: PLW0603
    trips = 0
    started = time.process_time()
    results = [await call() for call in calls]
    return (time.process_time() - started) / len(calls), trips / len(calls), results


async def measure(driver: str, turns: int, rounds: int) -> dict[str, tuple[float, float]]:
    """The best CPU per call, and trips per call, of each operation with ``driver``."""
    best = {name: (float("inf"), 0.0) for name in OPERATIONS}
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        await migrate(url)
        engine = create_engine(url, module=DRIVERS[driver]())
        store = Store(engine)
        await store.warm_up()
        try:
            for round_ in range(rounds):
                first = (round_ + 1) * 1_000_000

                def beginner(chat: int) -> Callable[[], Awaitable[BegunTurn]]:
                    start = TurnStart(
                        chat_id=chat,
                        chat_type="private",
                        text="hi",
                        history_limit=20,
                        user_id=chat,
                        telegram_message_id=1,
                    )
                    return lambda: store.begin_turn(start, plan)

                cpu, per, begun = await timed([beginner(first + i) for i in range(turns)])
                best["begin_turn"] = min(best["begin_turn"], (cpu, per))
                ids = [turn.answer_id for turn in begun]
                cpu, per, _ = await timed([checkpointer(store, i) for i in ids])
                best["checkpoint_answer"] = min(best["checkpoint_answer"], (cpu, per))
                cpu, per, _ = await timed([finisher(store, i) for i in ids])
                best["finish_answer"] = min(best["finish_answer"], (cpu, per))
        finally:
            await engine.dispose()
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Print CPU and trips per store write with each driver."""
    parser = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args(argv)
    aiosqlite.core.Connection._execute = _counted  # type: ignore[method-assign]
    figures = {
        driver: run(measure(driver, options.turns, options.rounds), loop_from(os.environ))
        for driver in DRIVERS
    }
    print(f"{'':18}" + "".join(f"  {driver + ' ms':>11}  {'trips':>5}" for driver in DRIVERS))
    for name in OPERATIONS:
        cells = "".join(
            f"  {figures[d][name][0] * 1e3:11.3f}  {figures[d][name][1]:5.1f}" for d in DRIVERS
        )
        print(f"{name:18}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
