"""When the next batch of a streamed body is read: just before its text can next be shown.

Reading a body costs a wake-up of the bot, most of it the cold start after sleeping, so
reads whose text nobody shows are waste. The consumer of a stream (the chat's editor) knows
when the chat may next show new text and how often; it sets a ``Pace`` in its task, and the
provider layer reads a moment before that. The stream's end is noticed at the next read
only, so no hold is longer than the pace's ``max_hold``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

NextUse = Callable[[], tuple[float, float]]
"""Seconds until the text can next be shown, and seconds between two showings."""

DEFAULT_HOLD_SECONDS = 0.25
"""The hold when no consumer says when it shows text."""

LEAD_SECONDS = 0.002
"""How long before the text's next showing the body is read, so the showing finds it."""

FEEDS_WITHIN_SECONDS = 0.05
"""A read this close to a showing feeds that one: the next read aims at the showing after."""


@dataclass(frozen=True, slots=True)
class Pace:
    """How the consumer of a stream wants it read."""

    next_use: NextUse
    max_hold: float
    """The longest the body waits unread: how late the stream's end may be noticed."""


PACE: ContextVar[Pace | None] = ContextVar("read_pace", default=None)
"""The pace of the stream read in this task, set by its consumer."""


def hold_seconds(until_shown: float, spacing: float, max_hold: float) -> float:
    """How long to leave the body unread, given when its text is next shown and how often.

    A read within ``FEEDS_WITHIN_SECONDS`` of a showing feeds that one; the next read then
    aims at the showing after.
    """
    if until_shown < FEEDS_WITHIN_SECONDS:
        until_shown += spacing
    return max(0.0, min(until_shown - LEAD_SECONDS, max_hold))


def next_hold() -> float:
    """``hold_seconds`` for the stream read in the current task."""
    pace = PACE.get()
    if pace is None:
        return DEFAULT_HOLD_SECONDS
    return hold_seconds(*pace.next_use(), pace.max_hold)
