"""The stream bench runs end to end: the bot, or the bare one, answers every chat under the
fakes, and the figures say so. Only completeness is checked here, never a time."""

from __future__ import annotations

import pytest

from bench import stream_bench


@pytest.mark.parametrize("bare", [False, True], ids=["bot", "bare bot"])
async def test_the_stream_bench_sees_every_chat_answered_whole(bare: bool) -> None:
    arguments = ["--chats", "3", "--tokens", "30", "--seconds", "0.5"]
    options = stream_bench.parse_args([*arguments, *(["--bare"] if bare else [])])
    (row,) = await stream_bench.bench(options)
    assert (row.n, row.complete, row.lost, row.truncated) == (3, 3, [], [])
    assert row.too_many == 0
    assert row.overhead_ms is not None
    assert row.cpu_per_turn is not None
    assert row.cpu_per_turn > 0
