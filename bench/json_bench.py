"""JSON of the Bot API transport: PTB's json against the bot's orjson, in CPU per call.

    python -m bench.json_bench [--updates 100] [--calls 2000]

Parses one getUpdates answer carrying --updates private text messages (English, Chinese,
emoji, as Telegram sends them: UTF-8, not escaped) with PTB's ``BaseRequest`` and with
``CountingRequest``; then encodes the parameters of an editMessageText call (2,000
characters with entities and a stop button) both ways. For scale, the last line is the
cost of turning the parsed answer into PTB's ``Update`` objects, which neither changes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.request import BaseRequest, RequestData
from telegram.request._requestparameter import RequestParameter

from bot import fast_json
from bot.telegram_requests import CountingRequest

TEXT = "How do I stream answers to Telegram? 你好，请详细解释一下。 🙂 "
REPEATS = 5


def get_updates_answer(updates: int) -> bytes:
    """A getUpdates answer as the Bot API sends it."""
    result = [
        {
            "update_id": 800_000_000 + i,
            "message": {
                "message_id": 1000 + i,
                "from": {
                    "id": 7_000_000_000 + i,
                    "is_bot": False,
                    "first_name": "小明",
                    "username": f"user{i}",
                    "language_code": "zh-hans",
                },
                "chat": {"id": 7_000_000_000 + i, "first_name": "小明", "type": "private"},
                "date": 1_764_500_000 + i,
                "text": TEXT * 3,
            },
        }
        for i in range(updates)
    ]
    return json.dumps({"ok": True, "result": result}, ensure_ascii=False).encode()


def edit_parameters() -> dict[str, Any]:
    """What PTB hands the transport for an editMessageText of a long streamed answer."""
    values: dict[str, object] = {
        "chat_id": 7_000_000_001,
        "message_id": 1234,
        "text": (TEXT * 40)[:2000],
        "entities": [MessageEntity(MessageEntity.BOLD, i * 50, 10) for i in range(20)],
        "reply_markup": InlineKeyboardMarkup(
            [[InlineKeyboardButton("停止 Stop", callback_data="stop:1234")]]
        ),
    }
    data = RequestData([RequestParameter.from_input(k, v) for k, v in values.items()])
    return data.parameters


def cpu_per_call(work: Callable[[], object], calls: int) -> float:
    """The least CPU seconds one call took, over a few rounds of ``calls`` calls."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(calls):
            work()
        best = min(best, (time.process_time() - started) / calls)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Print CPU per call of each way, and the ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench.json_bench", description=__doc__)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--calls", type=int, default=2000)
    options = parser.parse_args(argv)
    answer = get_updates_answer(options.updates)
    parameters = edit_parameters()
    bot = Bot("123456:BENCH-TOKEN-abcdef")
    parsed = CountingRequest.parse_json_payload(answer)["result"]
    assert parsed == BaseRequest.parse_json_payload(answer)["result"]
    assert json.loads(fast_json.dumps(parameters)) == json.loads(json.dumps(parameters))

    rows = [
        (
            f"parse getUpdates, {options.updates} updates ({len(answer):,} bytes)",
            cpu_per_call(lambda: BaseRequest.parse_json_payload(answer), options.calls),
            cpu_per_call(lambda: CountingRequest.parse_json_payload(answer), options.calls),
        ),
        (
            "encode editMessageText, 2,000 characters",
            cpu_per_call(lambda: json.dumps(parameters).encode(), options.calls * 10),
            cpu_per_call(lambda: fast_json.dumps(parameters), options.calls * 10),
        ),
    ]
    print(f"{'':52}  {'json µs':>9}  {'orjson µs':>9}  {'ratio':>5}")
    for name, before, after in rows:
        print(f"{name:52}  {before * 1e6:9.1f}  {after * 1e6:9.1f}  {before / after:5.2f}")
    de_list = cpu_per_call(lambda: Update.de_list(parsed, bot), max(1, options.calls // 10))
    print(f"{'for scale: Update.de_list of the parsed answer':52}  {de_list * 1e6:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
