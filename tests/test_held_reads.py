"""Held reads: bytes wait in the socket until released, on both event loops."""

from __future__ import annotations

import asyncio
import errno
import socket
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from bot.providers import held_reads

LOOPS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}
PAYLOAD = b"data: piece\n\n" * 20


class Collected(asyncio.Protocol):
    """Keeps what the loop reads off the connection."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= len(PAYLOAD):
            self.arrived.set()


class Observed:
    """What a held connection showed: bytes read while held and after, the socket's mark."""

    before: bytes = b""
    after: bytes = b""
    reading_while_held = False
    low_water_while_held = 0
    low_water_after = 0


class RefusingSocket:
    """A TCP socket on a platform without the receive low-water mark: it refuses the option."""

    family = socket.AF_INET

    def setsockopt(self, level: int, option: int, value: int, /) -> None:
        raise OSError(errno.ENOPROTOOPT, "Protocol not available")


class WithoutLowWater:
    """The real transport, except that its socket refuses the low-water mark."""

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return RefusingSocket()
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def hold_while_the_peer_writes(
    unix_path: Path | None, *, refuse_low_water: bool = False
) -> Observed:
    """Connect, hold the reads, let the peer write, wait, release, read."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)

    if unix_path is None:
        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await loop.create_connection(Collected, "127.0.0.1", port)
    else:
        server = await asyncio.start_unix_server(accept, path=str(unix_path))
        transport, protocol = await loop.create_unix_connection(Collected, str(unix_path))
    observed = Observed()
    sock = transport.get_extra_info("socket")
    try:
        writer = await asyncio.wait_for(accepted.get(), 5)
        held = held_reads.hold(
            cast(asyncio.Transport, WithoutLowWater(transport)) if refuse_low_water else transport
        )
        observed.reading_while_held = transport.is_reading()
        observed.low_water_while_held = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        writer.write(PAYLOAD)
        await writer.drain()
        # Long enough for the loop to have read the bytes, had they been readable.
        await asyncio.sleep(0.2)
        observed.before = bytes(protocol.received)
        held.release()
        observed.low_water_after = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        await asyncio.wait_for(protocol.arrived.wait(), 5)
        observed.after = bytes(protocol.received)
        writer.close()
    finally:
        transport.close()
        server.close()
    return observed


def run(loop: str, unix_path: Path | None = None, *, refuse_low_water: bool = False) -> Observed:
    observed: Observed = LOOPS[loop](
        asyncio.wait_for(
            hold_while_the_peer_writes(unix_path, refuse_low_water=refuse_low_water), 15
        )
    )
    return observed


@pytest.mark.parametrize("loop", LOOPS)
def test_a_tcp_connection_is_held_by_its_low_water_mark_not_paused(loop: str) -> None:
    observed = run(loop)
    assert (observed.before, observed.after) == (b"", PAYLOAD)
    assert observed.low_water_while_held > len(PAYLOAD)
    assert observed.low_water_after == 1
    # Not paused: uvloop keeps a paused socket polled and would wake for its next byte.
    assert observed.reading_while_held


@pytest.mark.parametrize("loop", LOOPS)
def test_a_socket_that_ignores_the_mark_is_paused_instead(loop: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        observed = run(loop, Path(directory) / "socket")
    assert (observed.before, observed.after) == (b"", PAYLOAD)
    assert not observed.reading_while_held


@pytest.mark.parametrize("loop", LOOPS)
def test_a_tcp_socket_that_refuses_the_mark_is_paused_instead(loop: str) -> None:
    observed = run(loop, refuse_low_water=True)
    assert (observed.before, observed.after) == (b"", PAYLOAD)
    assert not observed.reading_while_held
    assert observed.low_water_while_held == 1, "the real socket's mark was left alone"


@pytest.mark.parametrize("loop", LOOPS)
def test_releasing_a_connection_closed_meanwhile_is_quiet(loop: str) -> None:
    async def scenario() -> None:
        async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await asyncio.get_running_loop().create_connection(
            Collected, "127.0.0.1", port
        )
        held = held_reads.hold(transport)
        transport.close()
        await asyncio.sleep(0.05)
        held.release()
        server.close()
        await server.wait_closed()

    LOOPS[loop](asyncio.wait_for(scenario(), 15))
