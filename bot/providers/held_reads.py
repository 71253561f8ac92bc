"""Holding back the reads of a connection between two batches, at the fewest wake-ups.

Pausing a transport is what asyncio offers, but uvloop (libuv) keeps a paused socket in its
poll set until the socket's next byte arrives, only then dropping it: one wake-up more per
pause, for nothing. A TCP socket's receive low-water mark holds readiness back in the
kernel instead, and lowering it again makes the socket ready at once if bytes wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Protocol

HELD_LOW_WATER = 256 * 1024
"""Receive low-water mark while a body's reads are held: far beyond what arrives between two
batches, so the socket wakes nobody until the next batch is read."""

TCP_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})


class _HeldByLowWater:
    """Reads held back by a receive low-water mark beyond any batch the bot waits for."""

    __slots__ = ("_socket", "_transport")

    def __init__(self, transport: asyncio.Transport, sock: _Sockopt) -> None:
        self._transport = transport
        self._socket = sock

    def release(self) -> None:
        if self._transport.is_closing():
            return
        # Closed meanwhile after all: asyncio says so with OSError, uvloop with ValueError.
        with contextlib.suppress(OSError, ValueError):
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


class _HeldByPause:
    """Reads held back by pausing the transport."""

    __slots__ = ("_transport",)

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def release(self) -> None:
        if not self._transport.is_closing():
            self._transport.resume_reading()


class _Sockopt(Protocol):
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


def hold(transport: asyncio.Transport) -> _HeldByLowWater | _HeldByPause:
    """Stop the loop from reading ``transport`` until ``release()``, the cheapest way it can."""
    sock = transport.get_extra_info("socket")
    # Only TCP keeps readiness back below the mark; other sockets take the option and
    # ignore it.
    if sock is not None and sock.family in TCP_FAMILIES and _took_low_water(sock):
        return _HeldByLowWater(transport, sock)
    transport.pause_reading()
    return _HeldByPause(transport)


def _took_low_water(sock: _Sockopt) -> bool:
    """Raise the socket's receive low-water mark; False where the platform refuses it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, HELD_LOW_WATER)
    except (OSError, AttributeError):  # a platform without the option
        return False
    return True
