"""When the next batch of a streamed body is read: when its text can next be shown.

Reading a body costs a wake-up of the bot, most of it the cold start after sleeping, so
reads whose text nobody shows are waste. The consumer of a stream (the chat's editor) knows
when the chat may next show new text and how often; it sets a ``Pace`` in its task, and the
provider layer reads then: a moment before an update already waiting for that moment, or a
moment after the chat's slot opens, so that the update goes out in the read's own wake-up.
The stream's end is noticed at the next read only, so no hold is longer than the pace's
``max_hold``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

NextUse = Callable[[], tuple[float, float, bool]]
"""Seconds until the text can next be shown, seconds between two showings, and whether an
update is already waiting for that moment."""

DEFAULT_HOLD_SECONDS = 0.25
"""The hold when no consumer says when it shows text."""

LEAD_SECONDS = 0.002
"""How long before a waiting update goes the body is read, so the update finds the text."""

LAG_SECONDS = 0.002
"""How long after the chat's slot opens the body is read when no update waits: the text
read then goes out at once, in the same wake-up, rather than after a timer of its own."""

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


def hold_seconds(
    until_shown: float, spacing: float, max_hold: float, *, update_waiting: bool
) -> float:
    """How long to leave the body unread, given when its text is next shown and how often.

    A read within ``FEEDS_WITHIN_SECONDS`` of a showing feeds that one; the next read then
    aims at the showing after, for which no update waits yet.
    """
    if until_shown < FEEDS_WITHIN_SECONDS:
        until_shown += spacing
        update_waiting = False
    aim = until_shown - LEAD_SECONDS if update_waiting else until_shown + LAG_SECONDS
    return max(0.0, min(aim, max_hold))


def next_hold() -> float:
    """``hold_seconds`` for the stream read in the current task."""
    pace = PACE.get()
    if pace is None:
        return DEFAULT_HOLD_SECONDS
    until_shown, spacing, update_waiting = pace.next_use()
    return hold_seconds(until_shown, spacing, pace.max_hold, update_waiting=update_waiting)
