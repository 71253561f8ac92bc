"""The fake provider's own share of the stream bench's overhead: how late it stamps requests
that a client costing next to nothing sends at once.

    python -m bench.provider_floor [--requests 1,20,100] [--rounds 3]

The stream bench's overhead ends when the fake provider has a chat request, stamped by its
aiohttp server in the bench's process. Here a separate process opens one connection per
request and writes each prebuilt request in a tight loop (a few milliseconds for 100), and
this prints when the fake stamped them, counted from the client's first connect: no bot
can be measured below these figures at the same N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from tests.fakes.provider import FakeProvider, paced_stream

SETTLE_SECONDS = 1.0

# Writes every request before reading anything; prints when it began and ended.
CLIENT = r"""
import json, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = json.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
).encode()
head = (
    f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
    f"Content-Type: application/json\r\nAuthorization: Bearer k\r\n"
    f"Content-Length: {len(body)}\r\n\r\n"
).encode()
sockets = []
began = time.monotonic()
for _ in range(count):
    connection = socket.create_connection((host, port))
    connection.sendall(head + body)
    sockets.append(connection)
print(json.dumps([began, time.monotonic()]), flush=True)
sys.stdin.read()
"""


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


async def one_round(count: int) -> tuple[float, list[float]]:
    """Milliseconds the client took to send all, and each stamp after its first connect."""
    async with FakeProvider(default=paced_stream(["a"], 0.1)) as provider:
        address = urlsplit(provider.base_url)
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            str(address.hostname),
            str(address.port),
            str(count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert client.stdout is not None
        assert client.stdin is not None
        began, ended = json.loads(await client.stdout.readline())
        await asyncio.sleep(SETTLE_SECONDS)
        stamps = [(request.at - began) * 1000 for request in provider.requests]
        client.stdin.close()
        await client.wait()
    if len(stamps) != count:
        raise RuntimeError(f"the fake stamped {len(stamps)} of {count} requests")
    return (ended - began) * 1000, stamps


async def measure(counts: Sequence[int], rounds: int) -> None:
    """Print one line per request count: the client's writing time and the fake's stamps."""
    print("requests  client writes ms  fake stamps p50/p95/last ms (median of rounds)")
    for count in counts:
        results = [await one_round(count) for _ in range(rounds)]
        writes = statistics.median(written for written, _ in results)
        p50 = statistics.median(percentile(stamps, 0.5) for _, stamps in results)
        p95 = statistics.median(percentile(stamps, 0.95) for _, stamps in results)
        last = statistics.median(max(stamps) for _, stamps in results)
        print(f"{count:8}  {writes:16.1f}  {p50:.1f}/{p95:.1f}/{last:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.provider_floor", description=__doc__)
    parser.add_argument("--requests", default="1,20,100", help="requests sent at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per count (median)")
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in args.requests.split(",") if part.strip()]
    except ValueError:
        parser.error("--requests takes comma-separated integers")
    if not counts or min(counts) < 1 or args.rounds < 1:
        parser.error("request counts and --rounds must be positive")
    asyncio.run(measure(counts, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
