"""Streaming under load: N private chats ask at once; how fast, how paced, how costly.

    python -m bench.stream_bench [--chats 1,20,100,300] [--tokens 400] [--seconds 8]
    python -m bench.stream_bench --chats 100 --answer-chars 600 --seconds 2
    python -m bench.stream_bench --chats 1 --repeat 5       # medians of five runs
    python -m bench.stream_bench --database postgres   # a fresh PostgreSQL database per N
    python -m bench.stream_bench --quotas              # every request counted and reserved
    python -m bench.stream_bench --bare                # the stack's floor (bench.bare_bot)

For each N: fresh fakes in this process (FakeTelegram enforcing Telegram's flood limits,
FakeProvider streaming one fixed answer evenly over --seconds) and a fresh bot process
(``python -m bot run --config``) on a new SQLite file. Users 1..N each send one message at
the same moment; the run ends when every chat shows the whole answer, or at the timeout.
Every time is this process's ``time.monotonic()``, stamped by the fakes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from bench.stream_figures import (
    FLOOD,
    Observed,
    Row,
    Samples,
    figures,
    normalise,
    question,
    shown_text,
    spread,
    table,
)
from tests.fakes.databases import PostgresUnavailable, postgres_database
from tests.fakes.provider import FakeProvider, Step, paced_stream
from tests.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:BENCH-TOKEN-abcdef"
API_KEY = "sk-bench-key-0123456789"
MODEL = "bench-model"

# Plain words: Markdown rendering leaves them as they are.
WORDS = (
    *("alpha", "bravo", "cedar", "delta", "ember", "fjord", "grove", "harbor", "island"),
    *("jasper", "koala", "lemon", "meadow", "nectar", "orbit", "pepper", "quartz", "river"),
    *("saffron", "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zephyr"),
)
PARAGRAPH_WORDS = 60

STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0
# Long enough to keep the bot's idle polling cheap, short enough for a quick shutdown.
POLL_TIMEOUT = 5
CHECK_EVERY = 0.1
GRACE_SECONDS = 1.0
SAMPLE_EVERY = 0.05


class BenchError(Exception):
    """The run could not be measured (the bot did not start, say)."""


@dataclass(frozen=True)
class Options:
    """The command line."""

    chats: list[int]
    """Each N as many times as it is run, in order."""
    tokens: int
    answer_chars: int | None
    seconds: float
    timeout: float | None
    within: float
    logs: Path | None
    database: str
    quotas: bool
    profile: Path | None
    bare: bool = False
    """Run ``bench.bare_bot`` in place of the bot: what the stack costs alone."""


# ------------------------------------------------------------------ the scripted answer


def answer_pieces(tokens: int, chars: int | None) -> list[str]:
    """The streamed pieces of every answer: short words, a paragraph break now and then.

    With ``chars`` the answer is exactly that long, whatever the number of pieces.
    """
    pieces: list[str] = []
    length = 0
    while length < chars if chars is not None else len(pieces) < tokens:
        index = len(pieces)
        separator = "" if index == 0 else "\n\n" if index % PARAGRAPH_WORDS == 0 else " "
        piece = separator + WORDS[index * 7 % len(WORDS)]
        pieces.append(piece)
        length += len(piece)
    if chars is not None and pieces:
        keep = len(pieces[-1]) - (length - chars)
        # Telegram trims trailing whitespace, so the answer must not end in any.
        last = pieces[-1][:keep].rstrip()
        pieces[-1] = last + "." * (keep - len(last))
    return pieces


# ------------------------------------------------------------------ the bot process

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, main_thread: bool = False) -> float:
    """CPU time of a process (all its live threads, or the main one), in nanoseconds' detail.

    Each thread's run time comes from its ``schedstat``: ``/proc/PID/stat`` counts in clock
    ticks (10 ms), as coarse as a whole turn's cost at one chat. A thread that ends within
    the window takes its time with it; ``ended_threads`` tells whether any did.
    """
    return _threads_sum(pid, "schedstat", _run_nanoseconds, main_thread=main_thread) / 1e9


def wake_ups(pid: int, *, main_thread: bool = False) -> int:
    """Times the process's live threads (or the main one) slept and were woken again."""
    return _threads_sum(pid, "status", _voluntary_switches, main_thread=main_thread)


def _run_nanoseconds(schedstat: str) -> int:
    return int(schedstat.split(maxsplit=1)[0])


def _voluntary_switches(status: str) -> int:
    return int(status.split("\nvoluntary_ctxt_switches:", 1)[1].split(maxsplit=1)[0])


def _threads_sum(pid: int, name: str, value: Callable[[str], int], *, main_thread: bool) -> int:
    """``value`` of each live thread's ``/proc/PID/task/TID/<name>`` (or the main one's), summed."""
    total = 0
    for tid in [pid] if main_thread else thread_ids(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it just ended
            total += value(Path(f"/proc/{pid}/task/{tid}/{name}").read_text())
    return total


def thread_ids(pid: int) -> set[int]:
    """The ids of the process's live threads."""
    return {int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()}


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used, from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


# Limits no bench run reaches: each request is still reserved, counted and settled.
QUOTAS = {
    "roles": {"default": {"requests_per_day": 1_000_000, "tokens_per_day": 1_000_000_000}},
}


def write_config(
    path: Path, telegram: FakeTelegram, provider: FakeProvider, db: str, *, quotas: bool
) -> None:
    """A bot configuration pointing at both fakes, otherwise the shipped defaults (with
    ``quotas``, limits far above what the run asks for)."""
    config = {
        "telegram": {
            "token": TOKEN,
            "base_url": telegram.base_url,
            "base_file_url": telegram.base_file_url,
            "poll_timeout": POLL_TIMEOUT,
        },
        "database": {"url": db},
        "providers": [
            {"name": "fake", "kind": "openai", "base_url": provider.base_url, "api_key": API_KEY}
        ],
        "models": {"chat": MODEL},
    }
    if quotas:
        config["quotas"] = QUOTAS
    path.write_text(yaml.safe_dump(config))


@contextlib.asynccontextmanager
async def fresh_database(kind: str, directory: Path) -> AsyncIterator[str]:
    """The URL of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'bot.db'}"
        return
    try:
        async with postgres_database() as url:
            yield url
    except PostgresUnavailable as exc:
        raise BenchError(f"no PostgreSQL server: {exc}") from None


class ErrorTally(logging.Handler):
    """Collects what the fake servers' aiohttp logs (a failed handler, say) instead of printing."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the time and the message with its exception type."""
        exc = record.exc_info[1] if record.exc_info else None
        reason = f" ({type(exc).__name__}: {exc})" if exc else ""
        self.records.append((time.monotonic(), record.getMessage() + reason))


@contextlib.contextmanager
def fake_errors_tallied() -> Iterator[ErrorTally]:
    """Route aiohttp's log records of this process into an ErrorTally for the run."""
    logger = logging.getLogger("aiohttp")
    tally = ErrorTally()
    saved = logger.propagate
    logger.addHandler(tally)
    logger.propagate = False
    try:
        yield tally
    finally:
        logger.removeHandler(tally)
        logger.propagate = saved


def open_log(path: Path) -> IO[bytes]:
    """The file the bot's stdout and stderr go to."""
    return path.open("wb")


async def start_bot(
    config: Path, log_path: Path, profile: Path | None, *, bare: bool = False
) -> asyncio.subprocess.Process:
    """``python -m bot run --config`` with its output in ``log_path``.

    With ``profile``, under ``bench.profiled``: cProfile runs between SIGUSR1 and SIGUSR2.
    With ``bare``, ``bench.bare_bot`` instead of the bot.
    """
    if bare:
        module: tuple[str, ...] = ("bench.bare_bot",)
    elif profile is not None:
        module = ("bench.profiled", str(profile))
    else:
        module = ("bot",)
    with open_log(log_path) as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *module,
            "run",
            "--config",
            str(config),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )


async def wait_until_polling(telegram: FakeTelegram, process: asyncio.subprocess.Process) -> None:
    """Return once the bot long-polls; fail if it exits or takes too long first."""
    polling = asyncio.ensure_future(telegram.wait_until_polling(timeout=STARTUP_SECONDS))
    exited = asyncio.ensure_future(process.wait())
    await asyncio.wait({polling, exited}, return_when=asyncio.FIRST_COMPLETED)
    exited.cancel()
    if not polling.done():
        polling.cancel()
        raise BenchError(f"the bot exited with code {process.returncode} before polling")
    try:
        polling.result()
    except AssertionError as exc:
        raise BenchError(str(exc)) from None


async def stop_bot(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if it has not stopped in time."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


async def take_samples(pid: int, samples: Samples) -> None:
    """Sample until cancelled; a late wake-up is congestion of the fakes' event loop."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(SAMPLE_EVERY)
        now = time.monotonic()
        samples.lags.append(now - start - SAMPLE_EVERY)
        with contextlib.suppress(OSError):  # the bot has just exited
            samples.bot_cpu.append((now, cpu_seconds(pid)))


# ------------------------------------------------------------------ one run


def default_timeout(n: int, seconds: float) -> float:
    """Generous: the stream, plus four message calls per answer at the global rate."""
    return seconds + 30 + 4 * n / FLOOD.global_per_second


async def run_one(n: int, options: Options, script: Sequence[Step], answer: str) -> Observed:
    """Start fresh fakes and a fresh bot, have ``n`` chats ask at once, collect records."""
    timeout = options.timeout or default_timeout(n, options.seconds)
    expected = normalise(answer)
    with (
        tempfile.TemporaryDirectory(prefix="stream-bench-") as tmp,
        fake_errors_tallied() as tally,
    ):
        directory = Path(tmp)
        log_path = directory / "bot.log"
        async with (
            fresh_database(options.database, directory) as database,
            FakeTelegram(token=TOKEN, flood=FLOOD) as telegram,
            FakeProvider(default=script) as provider,
        ):
            write_config(
                directory / "config.yaml", telegram, provider, database, quotas=options.quotas
            )
            profile = None
            if options.profile is not None:
                options.profile.mkdir(parents=True, exist_ok=True)
                profile = options.profile / f"bot-{n}.prof"
            process = await start_bot(
                directory / "config.yaml", log_path, profile, bare=options.bare
            )
            samples = Samples()
            sampling: asyncio.Task[None] | None = None
            try:
                try:
                    await wait_until_polling(telegram, process)
                except BenchError as exc:
                    await stop_bot(process)
                    tail = log_path.read_text(errors="replace").splitlines()[-15:]
                    raise BenchError("\n".join([str(exc), "the bot's log ends:", *tail])) from None
                cpu_before, own_before = cpu_seconds(process.pid), time.process_time()
                main_before = cpu_seconds(process.pid, main_thread=True)
                threads_before = thread_ids(process.pid)
                wakes_before = wake_ups(process.pid), wake_ups(process.pid, main_thread=True)
                machine_before = machine_busy_seconds()
                if profile is not None:
                    process.send_signal(signal.SIGUSR1)
                sampling = asyncio.create_task(take_samples(process.pid, samples))
                sent_at = time.monotonic()
                update_ids: dict[int, int] = {}
                # No await in between: every update is queued before the bot can fetch one.
                for chat in range(1, n + 1):
                    telegram.user_sends(question(chat), user_id=chat, first_name=f"User{chat}")
                    update_ids[chat] = int(telegram.pending_updates[-1]["update_id"])
                done_at = await wait_for_answers(telegram, process, n, expected, sent_at + timeout)
                stopped_at = time.monotonic()
                alive = process.returncode is None
                bot_cpu = cpu_seconds(process.pid) - cpu_before if alive else math.nan
                main_cpu = (
                    cpu_seconds(process.pid, main_thread=True) - main_before if alive else math.nan
                )
                peak_mb = peak_rss_mb(process.pid) if alive else math.nan
                ended_threads = len(threads_before - thread_ids(process.pid)) if alive else 0
                wakes = (
                    (
                        wake_ups(process.pid) - wakes_before[0],
                        wake_ups(process.pid, main_thread=True) - wakes_before[1],
                    )
                    if alive
                    else (0, 0)
                )
                own_cpu = time.process_time() - own_before
                machine_cpu = machine_busy_seconds() - machine_before
                if profile is not None and alive:
                    process.send_signal(signal.SIGUSR2)
                # Whatever the bot still sends after an answer looks complete (an error
                # reply, say) belongs in the figures too.
                await asyncio.sleep(GRACE_SECONDS)
            finally:
                if sampling is not None:
                    sampling.cancel()
                await stop_bot(process)
        log = log_path.read_text(errors="replace")
        if options.logs is not None:
            options.logs.mkdir(parents=True, exist_ok=True)
            (options.logs / f"bot-{n}.log").write_text(log)
    return Observed(
        n=n,
        answer=answer,
        seconds=options.seconds,
        within=options.within,
        telegram=telegram,
        provider=provider,
        sent_at=sent_at,
        stopped_at=stopped_at,
        update_ids=update_ids,
        done_at=done_at,
        bot_cpu=bot_cpu,
        bot_main_cpu=main_cpu,
        ended_threads=ended_threads,
        bot_wake_ups=wakes,
        bot_peak_mb=peak_mb,
        own_cpu=own_cpu,
        machine_cpu=machine_cpu,
        samples=samples,
        bot_exit=None if alive else process.returncode,
        log=log,
        fake_errors=tally.records,
    )


async def wait_for_answers(
    telegram: FakeTelegram,
    process: asyncio.subprocess.Process,
    n: int,
    expected: str,
    deadline: float,
) -> dict[int, float]:
    """Chat -> when its whole answer became visible; stops at the deadline or a bot exit."""
    done_at: dict[int, float] = {}
    pending = set(range(1, n + 1))
    while pending and time.monotonic() < deadline and process.returncode is None:
        await asyncio.sleep(CHECK_EVERY)
        for chat in list(pending):
            if shown_text(telegram, chat) == expected:
                messages = telegram.messages(chat, from_bot=True)
                done_at[chat] = max(m.versions[-1].at for m in messages)
                pending.discard(chat)
    return done_at


# ------------------------------------------------------------------ command line


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.stream_bench", description=__doc__)
    parser.add_argument("--chats", default="1,20,100,300", help="concurrent chat counts")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each N this many times; medians at the end"
    )
    parser.add_argument("--tokens", type=int, default=400, help="words in each answer")
    parser.add_argument(
        "--answer-chars", type=int, help="each answer exactly this long instead (characters)"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="each answer streams this long")
    parser.add_argument("--timeout", type=float, help="per-N wait for the answers (s)")
    parser.add_argument(
        "--within", type=float, default=10.0, help="report whether all answers end this soon (s)"
    )
    parser.add_argument("--logs", type=Path, help="keep each run's bot log in this directory")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="a fresh SQLite file, or a fresh database on PostgreSQL at 127.0.0.1:5432",
    )
    parser.add_argument(
        "--quotas",
        action="store_true",
        help="turn quotas on (limits no run reaches): each request reserved, counted, settled",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile the bot's main thread with cProfile while the messages are answered"
        " (not start-up or shutdown), keeping bot-N.prof here (slower: figures then show"
        " the profiler's cost too)",
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="run bench.bare_bot instead of the bot: the same stack answering each message"
        " whole, with no store, streaming or logic, for the floor the stack sets",
    )
    args = parser.parse_args(argv)
    if args.bare and (args.profile or args.quotas or args.database != "sqlite"):
        parser.error("--bare takes no --profile, --quotas or --database")
    try:
        chats = [int(part) for part in args.chats.split(",") if part.strip()]
    except ValueError:
        parser.error("--chats takes comma-separated integers")
    if not chats or min(chats) < 1 or args.tokens < 1 or (args.answer_chars or 1) < 1:
        parser.error("chat counts, --tokens and --answer-chars must be positive")
    if args.seconds <= 0:
        parser.error("--seconds must be above zero")
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    return Options(
        chats=[n for n in chats for _ in range(args.repeat)],
        tokens=args.tokens,
        answer_chars=args.answer_chars,
        seconds=args.seconds,
        timeout=args.timeout,
        within=args.within,
        logs=args.logs,
        database=args.database,
        quotas=args.quotas,
        profile=args.profile,
        bare=args.bare,
    )


def revision() -> str:
    """The commit measured, and whether bot/ differs from it: others change it meanwhile."""

    def git(*args: str) -> str:
        # No check: outside a git checkout the revision is just unknown.
        result = subprocess.run(
            ["git", *args], check=False, cwd=ROOT, capture_output=True, text=True
        )
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "bot")
    return f"{commit}{' with uncommitted changes in bot/' if dirty else ''}"


async def bench(options: Options) -> list[Row]:
    """Run every N in turn, each on fresh fakes and a fresh bot."""
    pieces = answer_pieces(options.tokens, options.answer_chars)
    answer = "".join(pieces)
    script = paced_stream(pieces, options.seconds)
    print(f"bot: {'bench.bare_bot, the stack alone, at ' if options.bare else ''}{revision()}")
    print(
        f"answer: {len(answer)} characters in {len(pieces)} chunks over {options.seconds:g} s;"
        f" flood limits enforced; {options.database} database;"
        f"{' quotas on;' if options.quotas else ''}"
        f" {os.cpu_count()} CPUs shared by the bot and the fakes"
    )
    rows = []
    for n in options.chats:
        print(f"N={n}: running ...", flush=True)
        try:
            observed = await run_one(n, options, script, answer)
        except BenchError as exc:
            # The other N still deserve their figures.
            print(f"N={n}: not measured: {exc}", file=sys.stderr, flush=True)
            continue
        row = figures(observed)
        rows.append(row)
        print(
            f"N={n}: {row.complete}/{n} complete in {observed.stopped_at - observed.sent_at:.1f} s",
            flush=True,
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run, then print the table."""
    options = parse_args(argv)
    rows = asyncio.run(bench(options))
    if rows:
        print()
        print(table(rows))
        summary = spread(rows)
        if summary:
            print()
            print(summary)
    return 0 if len(rows) == len(options.chats) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
