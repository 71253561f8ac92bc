"""Runs ``python -m bot`` with cProfile switched on and off by signals, for the bench.

    python -m bench.profiled OUT.prof run --config FILE

SIGUSR1 starts profiling the main thread (the event loop), SIGUSR2 stops it and writes
``OUT.prof``; so a profile covers the measured window only, not start-up or shutdown.
Times are the thread's CPU time, so other processes' load does not show up in them.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time
from types import FrameType


def main() -> None:
    """Install the switches, then run the bot as ``python -m bot`` would."""
    out, *args = sys.argv[1:]
    profile = cProfile.Profile(time.thread_time)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profile.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profile.disable()
        profile.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["bot", *args]
    runpy.run_module("bot", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
