"""When the next batch of a streamed body is read: just before its text can next be shown.

Reading a body costs a wake-up of the bot, most of it the cold start after sleeping, so
reads whose text nobody shows are waste. The consumer of a stream (the chat's editor) knows
when the chat may next show new text and how often; the provider layer asks it through
``NEXT_USE``, set in the consuming task, and reads a moment before that. The stream's end
is noticed at the next read only, so no hold is longer than ``MAX_HOLD_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

NextUse = Callable[[], tuple[float, float]]
"""Seconds until the text can next be shown, and seconds between two showings."""

NEXT_USE: ContextVar[NextUse | None] = ContextVar("read_pace_next_use", default=None)
"""The consumer of the stream read in this task, if it says when it shows text."""

MAX_HOLD_SECONDS = 1.0
"""The longest a body waits unread: how late the end of a stream may be noticed."""

DEFAULT_HOLD_SECONDS = 0.25
"""The hold when no consumer says when it shows text."""

LEAD_SECONDS = 0.002
"""How long before the text's next showing the body is read, so the showing finds it."""

FEEDS_WITHIN_SECONDS = 0.05
"""A read this close to a showing feeds that one: the next read aims at the showing after."""


def hold_seconds(until_shown: float, spacing: float) -> float:
    """How long to leave the body unread, given when its text is next shown and how often.

    A read within ``LEAD_SECONDS`` of a showing feeds that one; the next read then aims at
    the showing after.
    """
    if until_shown < FEEDS_WITHIN_SECONDS:
        until_shown += spacing
    return max(0.0, min(until_shown - LEAD_SECONDS, MAX_HOLD_SECONDS))


def next_hold() -> float:
    """``hold_seconds`` for the stream read in the current task."""
    next_use = NEXT_USE.get()
    if next_use is None:
        return DEFAULT_HOLD_SECONDS
    return hold_seconds(*next_use())
