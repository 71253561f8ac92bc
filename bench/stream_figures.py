"""Pure: what one stream-bench run recorded -> a table row, and the notes that explain it.

Every time is the bench process's ``time.monotonic()``, as the fakes stamp it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tests.fakes.provider import FakeProvider, RecordedRequest
from tests.fakes.telegram import Call, FakeTelegram, FloodLimits

FLOOD = FloodLimits()
MESSAGE_METHODS = ("sendMessage", "editMessageText", "sendMessageDraft")
# From this many streams at once, one update a second each needs the whole global budget,
# so a well-paced bot should be using all of it.
BUDGET_BOUND_STREAMS = 30
# A busy window shorter than this gives no meaningful rate.
MIN_WINDOW_SECONDS = 1.0
# A gap this long is worth a note naming the chat.
NOTABLE_GAP_SECONDS = 1.5
LONG_GAP_SECONDS = 3.0
# Above these the fakes (one event loop in the bench process) may set the pace, not the bot.
FAKE_LAG_LIMIT = 0.05
FAKE_CPU_LIMIT = 0.85
# Other processes using this share of a core disturb the figures.
OTHERS_CPU_LIMIT = 0.2
# The bot runs one event loop: this share of a core means it is CPU-bound.
BOT_CPU_LIMIT = 0.9
SHOWN_CHATS = 5
CPU_SECONDS_SHOWN = 40

QUESTION = re.compile(r"question (\d+)")
LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$")
DIGITS = re.compile(r"\d+")


def question(chat: int) -> str:
    """What user ``chat`` asks; the provider side finds the chat again by it."""
    return f"question {chat}"


def chat_of(request: RecordedRequest) -> int | None:
    """The chat whose question a provider request carries as its last user message."""
    body = request.json if isinstance(request.json, dict) else {}
    users = [m.get("content") for m in body.get("messages") or [] if m.get("role") == "user"]
    match = QUESTION.fullmatch(str(users[-1])) if users else None
    return int(match[1]) if match else None


def normalise(text: str) -> str:
    """Whitespace collapsed: how answers are compared with what Telegram shows."""
    return " ".join(text.split())


def shown_text(telegram: FakeTelegram, chat: int) -> str:
    """Everything the bot's messages in ``chat`` show now, normalised."""
    return normalise(" ".join(m.text for m in telegram.messages(chat, from_bot=True)))


@dataclass
class Samples:
    """Taken about 20 times a second during a run: the bench loop's lag, the bot's CPU time."""

    lags: list[float] = field(default_factory=list)
    bot_cpu: list[tuple[float, float]] = field(default_factory=list)

    def cpu_share_per_second(self, start: float) -> list[float]:
        """The bot's CPU use in each whole second from ``start``, as a share of one core."""
        if not self.bot_cpu:
            return []
        times = [at for at, _ in self.bot_cpu]

        def cpu_at(moment: float) -> float:
            return self.bot_cpu[max(0, bisect.bisect_right(times, moment) - 1)][1]

        seconds = int(times[-1] - start)
        return [cpu_at(start + k + 1) - cpu_at(start + k) for k in range(seconds)]


@dataclass
class Observed:
    """What one run left behind: the fakes' records and the bot process's figures."""

    n: int
    answer: str
    seconds: float
    within: float
    telegram: FakeTelegram
    provider: FakeProvider
    sent_at: float
    stopped_at: float
    update_ids: dict[int, int]
    done_at: dict[int, float]
    bot_cpu: float
    bot_main_cpu: float
    ended_threads: int
    bot_wake_ups: tuple[int, int]
    """Times the bot's threads (and its main thread) slept and were woken in the window."""
    bot_peak_mb: float
    own_cpu: float
    machine_cpu: float
    samples: Samples
    bot_exit: int | None
    log: str
    fake_errors: list[tuple[float, str]]


@dataclass(frozen=True)
class Row:
    """The figures of one N, and the evidence behind them."""

    n: int
    complete: int
    lost: list[int]
    truncated: list[int]
    last_done: float | None
    overhead_ms: tuple[float, float] | None
    first_visible_ms: tuple[float, float] | None
    final_lag_ms: tuple[float, float] | None
    message_calls: float
    chat_actions: float
    too_many: int
    busy_rate: float | None
    overall_rate: float | None
    max_gap: float | None
    cpu_per_turn: float | None
    wake_ups_per_turn: float | None
    peak_mb: float
    notes: list[str]


# ------------------------------------------------------------------ small statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def p50_p95_ms(values: Sequence[float]) -> tuple[float, float] | None:
    """Median and 95th percentile of durations in seconds, as milliseconds."""
    if not values:
        return None
    return percentile(values, 0.5) * 1000, percentile(values, 0.95) * 1000


def _events(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, int]]:
    # At equal times an end sorts before a start: touching intervals do not overlap.
    pairs = list(intervals)
    return sorted([(start, 1) for start, _ in pairs] + [(end, -1) for _, end in pairs])


def busy_periods(
    intervals: Iterable[tuple[float, float]], at_least: int
) -> list[tuple[float, float]]:
    """The periods during which at least ``at_least`` of the intervals overlap."""
    periods: list[tuple[float, float]] = []
    active = 0
    opened = 0.0
    for at, change in _events(intervals):
        before, active = active, active + change
        if before < at_least <= active:
            opened = at
        elif active < at_least <= before:
            periods.append((opened, at))
    return periods


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    return max(itertools.accumulate(change for _, change in _events(intervals)), default=0)


def count_within(times: Sequence[float], periods: Iterable[tuple[float, float]]) -> int:
    """How many of the sorted ``times`` fall inside the periods."""
    return sum(bisect.bisect_right(times, b) - bisect.bisect_left(times, a) for a, b in periods)


# ------------------------------------------------------------------ per chat


class Timeline:
    """Each chat's moments: update delivered, provider request, chunks, what Telegram showed."""

    def __init__(self, obs: Observed) -> None:
        self.obs = obs
        self.chats = range(1, obs.n + 1)
        self.request_of: dict[int, int] = {}
        self.repeated = 0
        for index, request in enumerate(obs.provider.requests):
            chat = chat_of(request)
            if chat in self.request_of:
                self.repeated += 1
            elif chat is not None:
                self.request_of[chat] = index
        drafts: dict[int, list[float]] = {}
        for draft in obs.telegram.drafts():
            if draft.text.strip():
                drafts.setdefault(draft.chat_id, []).append(draft.at)
        self.visible = {chat: self._visible(chat, drafts.get(chat, [])) for chat in self.chats}
        # The fake charges every counted call on arrival except the ones it refuses with a 429.
        self.spent = sorted(
            c.at
            for c in obs.telegram.calls
            if c.method in FLOOD.counted_methods and c.error_code != 429
        )
        # A stream is active from its first chunk until its answer is shown complete.
        self.active = [
            (start, obs.done_at.get(chat, times[-1]))
            for chat, times in self.visible.items()
            if times and (start := self.first_chunk(chat)) is not None
        ]
        self.typing_at: dict[int, float] = {}
        for call in obs.telegram.calls_to("sendChatAction"):
            if isinstance(call.chat_id, int):
                self.typing_at[call.chat_id] = min(
                    call.at, self.typing_at.get(call.chat_id, math.inf)
                )

    def _visible(self, chat: int, drafts: list[float]) -> list[float]:
        """When the chat's screen changed (texts sent or edited, drafts), up to completion."""
        messages = self.obs.telegram.messages(chat, from_bot=True, include_deleted=True)
        times = sorted([v.at for m in messages for v in m.versions if v.text.strip()] + drafts)
        done = self.obs.done_at.get(chat)
        return times if done is None else times[: bisect.bisect_right(times, done)]

    def delivered(self, chat: int) -> float | None:
        """When a getUpdates answer carried the chat's message to the bot."""
        return self.obs.telegram.delivered_at(self.obs.update_ids[chat])

    def requested(self, chat: int) -> float | None:
        """When the provider had the chat's request."""
        index = self.request_of.get(chat)
        return None if index is None else self.obs.provider.requests[index].at

    def first_chunk(self, chat: int) -> float | None:
        """When the provider wrote the first chunk of the chat's answer."""
        index = self.request_of.get(chat)
        return None if index is None else self.obs.provider.first_chunk_at.get(index)

    def ended(self, chat: int) -> float | None:
        """When the provider finished the chat's stream."""
        index = self.request_of.get(chat)
        return None if index is None else self.obs.provider.ended_at.get(index)


def _durations(pairs: Iterable[tuple[float | None, float | None]]) -> list[float]:
    return [end - start for start, end in pairs if start is not None and end is not None]


def _gaps(timeline: Timeline) -> dict[int, tuple[float, float]]:
    """Per chat with two visible updates or more: the longest gap and when it began."""
    gaps = {}
    for chat, times in timeline.visible.items():
        if len(times) > 1:
            gap, began = max((b - a, a) for a, b in itertools.pairwise(times))
            gaps[chat] = (gap, began)
    return gaps


def _incomplete(obs: Observed) -> tuple[list[int], list[int]]:
    """Chats whose answer is lost (nothing of it shown) and truncated (a part shown)."""
    first_word = normalise(obs.answer).split(" ", 1)[0]
    lost: list[int] = []
    truncated: list[int] = []
    for chat in range(1, obs.n + 1):
        if chat not in obs.done_at:
            # An error reply alone shows nothing of the answer.
            shown = shown_text(obs.telegram, chat)
            (truncated if shown.startswith(first_word) else lost).append(chat)
    return lost, truncated


def _budget_rates(obs: Observed, timeline: Timeline) -> tuple[float | None, float | None]:
    """Budget-spending calls a second while >= 30 streams were active, and over the run."""
    spent = timeline.spent
    periods = busy_periods(timeline.active, BUDGET_BOUND_STREAMS)
    busy_seconds = sum(b - a for a, b in periods)
    busy = (
        count_within(spent, periods) / busy_seconds if busy_seconds >= MIN_WINDOW_SECONDS else None
    )
    last = max((times[-1] for times in timeline.visible.values() if times), default=obs.sent_at)
    overall = None
    if last - obs.sent_at >= MIN_WINDOW_SECONDS:
        overall = count_within(spent, [(obs.sent_at, last)]) / (last - obs.sent_at)
    return busy, overall


def _per_second(obs: Observed, timeline: Timeline) -> str:
    """Budget-spending calls, and (streams active), in each second after sending."""
    end = max((b for _, b in timeline.active), default=obs.sent_at)
    seconds = []
    for k in range(math.ceil(end - obs.sent_at)):
        start = obs.sent_at + k
        calls = count_within(timeline.spent, [(start, start + 1)])
        active = sum(a < start + 1 and b > start for a, b in timeline.active)
        seconds.append(f"{calls}({active})")
    return " ".join(seconds)


def figures(obs: Observed) -> Row:
    """Turn one run's records into a table row and the notes that explain it."""
    timeline = Timeline(obs)
    chats = timeline.chats
    per_method = Counter(c.method for c in obs.telegram.calls)
    lost, truncated = _incomplete(obs)
    gaps = _gaps(timeline)
    busy_rate, overall_rate = _budget_rates(obs, timeline)
    complete = len(obs.done_at)
    return Row(
        n=obs.n,
        complete=complete,
        lost=lost,
        truncated=truncated,
        last_done=max(obs.done_at.values()) - obs.sent_at if obs.done_at else None,
        overhead_ms=p50_p95_ms(
            _durations((timeline.delivered(c), timeline.requested(c)) for c in chats)
        ),
        first_visible_ms=p50_p95_ms(
            _durations(
                (timeline.first_chunk(c), timeline.visible[c][0] if timeline.visible[c] else None)
                for c in chats
            )
        ),
        final_lag_ms=p50_p95_ms(_durations((timeline.ended(c), obs.done_at.get(c)) for c in chats)),
        message_calls=sum(per_method[m] for m in MESSAGE_METHODS) / obs.n,
        chat_actions=per_method["sendChatAction"] / obs.n,
        too_many=sum(1 for c in obs.telegram.calls if c.error_code == 429),
        busy_rate=busy_rate,
        overall_rate=overall_rate,
        max_gap=max((gap for gap, _ in gaps.values()), default=None),
        cpu_per_turn=obs.bot_cpu / complete if complete else None,
        wake_ups_per_turn=obs.bot_wake_ups[0] / complete if complete else None,
        peak_mb=obs.bot_peak_mb,
        notes=[
            *_delivery_notes(obs, timeline, lost, truncated),
            *_call_notes(obs, timeline, per_method, gaps),
            *_log_notes(obs.log),
            *_load_notes(obs),
        ],
    )


# ------------------------------------------------------------------ notes


def _first(items: Sequence[int]) -> str:
    shown = ", ".join(map(str, items[:SHOWN_CHATS]))
    return shown + (", ..." if len(items) > SHOWN_CHATS else "")


def _delivery_notes(
    obs: Observed, timeline: Timeline, lost: list[int], truncated: list[int]
) -> list[str]:
    """Did every answer arrive, and where did the time before the provider call go."""
    notes = []
    if obs.bot_exit is not None:
        notes.append(f"the bot process exited during the run with code {obs.bot_exit}")
    complete = len(obs.done_at)
    if obs.done_at:
        last = max(obs.done_at.values()) - obs.sent_at
        verdict = "yes" if complete == obs.n and last <= obs.within else "no"
        notes.append(
            f"all {obs.n} answers complete within {obs.within:g} s of sending: {verdict}"
            f" ({complete}/{obs.n} complete, the last {last:.1f} s after sending)"
        )
    missing = [chat for chat in timeline.chats if chat not in timeline.request_of]
    if missing:
        notes.append(f"{len(missing)} chats never reached the provider: {_first(missing)}")
    provider = obs.provider
    streams = [
        (request.at, provider.ended_at.get(index, obs.stopped_at))
        for index, request in enumerate(provider.requests)
        if request.path.endswith("/chat/completions")
    ]
    notes.append(
        f"provider: {len(streams)} chat requests, at most {max_overlap(streams)} open at once"
    )
    if timeline.repeated:
        notes.append(f"{timeline.repeated} repeated provider requests for a chat (retries?)")
    # The first "typing" marks the end of the bot's own work before the provider call, so it
    # splits the overhead into that work and the wait of the HTTP request itself.
    typing = [
        (delivered, typed, requested)
        for chat in timeline.chats
        if (delivered := timeline.delivered(chat)) is not None
        and (typed := timeline.typing_at.get(chat)) is not None
        and (requested := timeline.requested(chat)) is not None
        and typed <= requested
    ]
    if typing:
        before = p50_p95_ms([typed - delivered for delivered, typed, _ in typing])
        after = p50_p95_ms([requested - typed for _, typed, requested in typing])
        notes.append(
            f"overhead split at the first sendChatAction: update -> action p50/p95"
            f" {_pair(before)} ms, action -> provider request {_pair(after)} ms"
        )
    expected = normalise(obs.answer)
    changed = [chat for chat in obs.done_at if shown_text(obs.telegram, chat) != expected]
    if changed:
        notes.append(
            f"{len(changed)} chats showed the whole answer and then changed (an error reply"
            f" after it, say): {_first(changed)}; chat {changed[0]} now ends"
            f" {shown_text(obs.telegram, changed[0])[-60:]!r}"
        )
    for kind, which in (("lost", lost), ("truncated", truncated)):
        notes.extend(f"{kind}: chat {chat}: {_shown(obs, timeline, chat)}" for chat in which[:3])
        if len(which) > 3:
            notes.append(f"{kind}: ... and {len(which) - 3} more")
    return notes


def _shown(obs: Observed, timeline: Timeline, chat: int) -> str:
    """What an incomplete chat shows, and how far its provider stream got."""
    shown = shown_text(obs.telegram, chat)
    tail = f"...{shown[-50:]!r}" if len(shown) > 50 else repr(shown)
    if timeline.requested(chat) is None:
        stream = "no provider request"
    else:
        stream = "provider stream ended" if timeline.ended(chat) else "provider stream not ended"
    count = len(obs.telegram.messages(chat, from_bot=True))
    return f"{count} message(s), {len(shown)} chars shown {tail}; {stream}"


def _call_notes(
    obs: Observed,
    timeline: Timeline,
    per_method: Counter[str],
    gaps: dict[int, tuple[float, float]],
) -> list[str]:
    """Which calls the bot made, which failed, and where an answer stood still longest."""
    calls = obs.telegram.calls
    counts = ", ".join(
        f"{m} {per_method[m]}" for m in (*MESSAGE_METHODS, "sendChatAction") if per_method[m]
    )
    notes = [
        f"calls: {counts or 'none'}",
        f"budget-spending calls (streams active) in each second after sending:"
        f" {_per_second(obs, timeline)}",
    ]
    too_many = [c for c in calls if c.error_code == 429]
    if too_many:
        by_chat = Counter(c.chat_id for c in too_many)
        notes.append(
            f"429s by method {dict(Counter(c.method for c in too_many))}, in {len(by_chat)}"
            f" chats; first: {_at(obs, too_many[0])}"
        )
    failed = Counter(
        (c.method, (c.description or "")[:70]) for c in calls if not c.ok and c.error_code != 429
    )
    notes.extend(f"{n} x {method} -> {why}" for (method, why), n in failed.most_common(4))
    if gaps:
        worst = max(gaps, key=lambda chat: gaps[chat][0])
        gap, began = gaps[worst]
        if gap >= NOTABLE_GAP_SECONDS:
            long_gaps = sum(g >= LONG_GAP_SECONDS for g, _ in gaps.values())
            notes.append(
                f"longest gap: chat {worst}, {gap:.2f} s without a visible update from"
                f" +{began - obs.sent_at:.2f} s; answers with a gap >= {LONG_GAP_SECONDS:g} s:"
                f" {long_gaps} of {len(gaps)}"
            )
    return notes


def _at(obs: Observed, call: Call) -> str:
    return f"{call.summary()} at +{call.at - obs.sent_at:.2f} s"


def _log_notes(log: str) -> list[str]:
    """Warnings and errors the bot logged, grouped by their text with digits masked."""
    kinds: Counter[str] = Counter()
    for line in log.splitlines():
        if match := LOG_LINE.match(line):
            kinds[f"{match[1]} {match[2]}: {DIGITS.sub('N', match[3])[:90]}"] += 1
    return [f"bot log: {count} x {kind}" for kind, count in kinds.most_common(4)]


def _load_notes(obs: Observed) -> list[str]:
    """Who used the CPU: the bot process, and the fakes in the bench process."""
    wall = obs.stopped_at - obs.sent_at
    provider = obs.provider
    lateness = [
        provider.ended_at[index] - (request.at + obs.seconds)
        for index, request in enumerate(provider.requests)
        if index in provider.ended_at
    ]
    lags = obs.samples.lags
    lag95 = percentile(lags, 0.95) if lags else 0.0
    own = obs.own_cpu / wall if wall > 0 else 0.0
    bot = obs.bot_cpu / wall if wall > 0 else math.nan
    others = (obs.machine_cpu - obs.bot_cpu - obs.own_cpu) / wall if wall > 0 else 0.0
    notes = [
        f"load over {wall:.1f} s: bot process {bot:.0%} of a core ({obs.bot_cpu * 1000:.0f} ms"
        f" CPU, of which the main thread {obs.bot_main_cpu * 1000:.0f} ms; {obs.bot_wake_ups[0]}"
        f" wake-ups, {obs.bot_wake_ups[1]} of the main thread); fakes (bench process)"
        f" {own:.0%} of a core, event-loop lag p95 {lag95 * 1000:.0f} ms, max"
        f" {max(lags, default=0.0) * 1000:.0f} ms; provider streams ended late by p95"
        f" {(percentile(lateness, 0.95) if lateness else 0.0) * 1000:.0f} ms; other processes"
        f" {others:.0%} of a core"
    ]
    for label, texts in (
        ("while the bot ran", [text for at, text in obs.fake_errors if at <= obs.stopped_at]),
        ("while the bot stopped", [text for at, text in obs.fake_errors if at > obs.stopped_at]),
    ):
        notes.extend(
            f"fake servers logged {count} x {text[:110]} {label}"
            for text, count in Counter(texts).most_common(2)
        )
    if obs.ended_threads:
        notes.append(
            f"{obs.ended_threads} thread(s) of the bot ended in the window, taking their CPU"
            " time out of the figures"
        )
    if others >= OTHERS_CPU_LIMIT:
        notes.append(
            "WARNING: other processes (a database server, another job) competed for the CPU:"
            " the figures are disturbed"
        )
    if own >= FAKE_CPU_LIMIT or lag95 >= FAKE_LAG_LIMIT:
        notes.append(
            f"WARNING: the fake servers may be the bottleneck at N={obs.n}: they share the"
            " cores with the bot and their event loop is congested; latencies include that"
        )
    shares = obs.samples.cpu_share_per_second(obs.sent_at)
    if shares:
        shown = " ".join(f"{share:.0%}" for share in shares[:CPU_SECONDS_SHOWN])
        more = " ..." if len(shares) > CPU_SECONDS_SHOWN else ""
        notes.append(f"bot CPU in each second after sending (of one core): {shown}{more}")
    if saturated := [k for k, share in enumerate(shares) if share >= BOT_CPU_LIMIT]:
        notes.append(
            f"the bot was CPU-bound (>= {BOT_CPU_LIMIT:.0%} of a core, its one event loop)"
            f" in {len(saturated)} of {len(shares)} seconds: {_first(saturated)}"
        )
    return notes


# ------------------------------------------------------------------ the table


def _pair(value: tuple[float, float] | None) -> str:
    return "-" if value is None else f"{value[0]:.0f}/{value[1]:.0f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} ({value / FLOOD.global_per_second:.0%})"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


COLUMNS: tuple[tuple[str, str, Callable[[Row], str]], ...] = (
    ("N", "", lambda r: str(r.n)),
    ("done", "", lambda r: str(r.complete)),
    ("lost", "", lambda r: str(len(r.lost))),
    ("trunc", "", lambda r: str(len(r.truncated))),
    ("last done", "s", lambda r: _number(r.last_done, ".1f")),
    ("overhead", "p50/p95 ms", lambda r: _pair(r.overhead_ms)),
    ("chunk→visible", "p50/p95 ms", lambda r: _pair(r.first_visible_ms)),
    ("end→final", "p50/p95 ms", lambda r: _pair(r.final_lag_ms)),
    ("msg calls", "per answer", lambda r: f"{r.message_calls:.1f}"),
    ("actions", "per answer", lambda r: f"{r.chat_actions:.1f}"),
    ("429s", "", lambda r: str(r.too_many)),
    ("calls/s ≥30 act", "(budget)", lambda r: _rate(r.busy_rate)),
    ("calls/s all", "(budget)", lambda r: _rate(r.overall_rate)),
    ("max gap", "s", lambda r: _number(r.max_gap, ".2f")),
    ("CPU/turn", "s", lambda r: _number(r.cpu_per_turn, ".3f")),
    ("peak RSS", "MB", lambda r: _number(r.peak_mb, ".0f")),
)

LEGEND = """\
overhead: getUpdates answer carrying the message -> provider has the chat request.
chunk→visible: provider wrote the first chunk -> first non-empty sendMessage/draft shown.
end→final: provider finished the stream -> the complete answer shown in Telegram.
msg calls: sendMessage + editMessageText + sendMessageDraft, every attempt; actions:
sendChatAction. calls/s: budget-spending calls (429s excluded) against the 30/s global
budget, while >=30 streams were active (first chunk .. final text) and over the whole run.
max gap: longest time between two visible updates of one answer, worst answer.
CPU/turn: user+sys CPU of the bot process over the run / complete answers."""


def table(rows: Sequence[Row]) -> str:
    """One row per N, the legend, then each N's notes."""
    cells = [[column(row) for _, _, column in COLUMNS] for row in rows]
    widths = [
        max(len(name), len(unit), *(len(line[i]) for line in cells))
        for i, (name, unit, _) in enumerate(COLUMNS)
    ]
    header = [name for name, _, _ in COLUMNS], [unit for _, unit, _ in COLUMNS]
    lines = _aligned([*header, ["-" * width for width in widths], *cells])
    lines += ["", LEGEND]
    for row in rows:
        lines += ["", f"N={row.n}:", *(f"  - {note}" for note in row.notes)]
    return "\n".join(lines)


SPREAD_FIGURES: tuple[tuple[str, str, Callable[[Row], float | None]], ...] = (
    ("overhead p95", ".0f", lambda r: r.overhead_ms[1] if r.overhead_ms else None),
    ("end→final p50", ".0f", lambda r: r.final_lag_ms[0] if r.final_lag_ms else None),
    ("max gap s", ".2f", lambda r: r.max_gap),
    ("CPU/turn ms", ".0f", lambda r: None if r.cpu_per_turn is None else r.cpu_per_turn * 1000),
    ("wake-ups/turn", ".0f", lambda r: r.wake_ups_per_turn),
)


def spread(rows: Sequence[Row]) -> str:
    """For each N run more than once, the median of the figures that vary most (min-max).

    One run says little: at one chat, CPU per turn moves by a third between runs of one
    commit on a shared machine.
    """
    by_n: dict[int, list[Row]] = {}
    for row in rows:
        by_n.setdefault(row.n, []).append(row)
    repeated = {n: runs for n, runs in by_n.items() if len(runs) > 1}
    if not repeated:
        return ""
    table_rows = [["N", "runs", *(name for name, _, _ in SPREAD_FIGURES)]]
    for n, runs in repeated.items():
        cells = [str(n), str(len(runs))]
        for _, spec, figure in SPREAD_FIGURES:
            values = sorted(v for v in (figure(r) for r in runs) if v is not None)
            cells.append(
                f"{format(statistics.median(values), spec)}"
                f" ({format(values[0], spec)}-{format(values[-1], spec)})"
                if values
                else "-"
            )
        table_rows.append(cells)
    lines = ["Medians of repeated runs (min-max):", *_aligned(table_rows)]
    return "\n".join(lines)


def _aligned(lines: Sequence[Sequence[str]]) -> list[str]:
    """The cells of each line right-aligned in columns as wide as their widest cell."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
