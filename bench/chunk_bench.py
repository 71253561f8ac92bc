"""CPU per answer of the path from a provider's bytes to events, without the network.

    python -m bench.chunk_bench [--chunks 400] [--reads 80] [--answers 200] [--rounds 5]

For each provider kind, one answer of --chunks text pieces in that provider's wire format
(OpenAI-compatible server-sent events, Anthropic's, the wrapper's JSON lines) is cut into
--reads reads of whole events and fed, read by read, to the real decoder and parser as
``ProviderHTTP.stream`` feeds them (``parse_batch``). Prints the CPU time (process_time) per
answer, the best of --rounds rounds of --answers answers each, and the events an answer
gives. Compare figures taken back to back on one machine only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.providers.anthropic_decoder import AnthropicStreamParser
from bot.providers.decoders import OpenAIStreamParser, SSEDecoder
from bot.providers.http import MessageDecoder, StreamParser, parse_batch
from bot.providers.wrapper_decoder import WrapperLineDecoder, WrapperStreamParser

WORDS = ("alpha ", "bravo ", "cedar ", "delta ", "ember ", "fjord ", "grove ", "harbor ")


@dataclass(frozen=True)
class Kind:
    """A provider kind: how its answer looks on the wire and what reads it."""

    name: str
    events: Callable[[Sequence[str]], list[bytes]]
    decoder: Callable[[], MessageDecoder]
    parser: Callable[[], StreamParser]


def _sse(payload: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def openai_events(pieces: Sequence[str]) -> list[bytes]:
    """A ``chat.completion.chunk`` per piece, then the finish reason and ``[DONE]``."""

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": "bench-model",
                "choices": [choice],
            }
        )

    return [
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"content": piece}) for piece in pieces),
        chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]


def anthropic_events(pieces: Sequence[str]) -> list[bytes]:
    """A Messages stream: start, one text block with a delta per piece, stop."""
    usage = {"input_tokens": 12, "output_tokens": 1}
    message = {"id": "msg_bench", "type": "message", "role": "assistant", "usage": usage}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    return [
        _sse({"type": "message_start", "message": message}, "message_start"),
        _sse(block, "content_block_start"),
        *(
            _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                "content_block_delta",
            )
            for piece in pieces
        ),
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": len(pieces)},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]


def wrapper_events(pieces: Sequence[str]) -> list[bytes]:
    """The wrapper's lines: a ``continue`` line per piece, the chatcode, ``end``."""

    def line(data: str, message: str) -> bytes:
        return json.dumps({"code": 0, "data": data, "message": message}).encode() + b"\n"

    return [
        *(line(piece, "continue") for piece in pieces),
        line("MjAyMy0wNS0zMA==", "code"),
        line("[DONE]", "end"),
    ]


KINDS = (
    Kind("openai", openai_events, SSEDecoder, OpenAIStreamParser),
    Kind("anthropic", anthropic_events, SSEDecoder, AnthropicStreamParser),
    Kind("wrapper", wrapper_events, WrapperLineDecoder, WrapperStreamParser),
)


def reads_of(events: list[bytes], reads: int) -> list[bytes]:
    """``events`` cut into ``reads`` reads of whole events, as even as they divide."""
    size = -(-len(events) // reads)
    return [b"".join(events[i : i + size]) for i in range(0, len(events), size)]


def answer(kind: Kind, reads: list[bytes]) -> int:
    """Decode and parse one answer read by read; the number of events it gave."""
    decoder, parser = kind.decoder(), kind.parser()
    count = 0
    for data in reads:
        events, error = parse_batch(parser, decoder.feed(data))
        if error is not None:
            raise error
        count += len(events)
    events, error = parse_batch(parser, decoder.flush())
    if error is not None:
        raise error
    return count + len(events) + len(parser.close())


def measure(kind: Kind, reads: list[bytes], answers: int, rounds: int) -> float:
    """Seconds of CPU per answer, the best of ``rounds`` rounds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(answers):
            answer(kind, reads)
        best = min(best, (time.process_time() - started) / answers)
    return best


def main() -> None:
    """Print the figures of every provider kind."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=400, help="text pieces per answer")
    parser.add_argument("--reads", type=int, default=80, help="reads an answer arrives in")
    parser.add_argument("--answers", type=int, default=200, help="answers per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is shown")
    args = parser.parse_args()
    pieces = [WORDS[i % len(WORDS)] for i in range(args.chunks)]
    print(f"{args.chunks} pieces in {args.reads} reads, best of {args.rounds} x {args.answers}")
    print("kind        CPU/answer ms  events/answer")
    for kind in KINDS:
        reads = reads_of(kind.events(pieces), args.reads)
        seconds = measure(kind, reads, args.answers, args.rounds)
        print(f"{kind.name:<10} {seconds * 1000:>14.3f} {answer(kind, reads):>14}")


if __name__ == "__main__":
    main()
