"""Pure: cut rendered text into Telegram-sized messages at the most natural boundary.

Cuts fall on a paragraph break, else a line break, else a space, within the limit in
UTF-16 units. An entity that spans a cut (a code block, say) is closed at the end of one
part and reopened at the start of the next, keeping its language.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate

from telegram.constants import MessageLimit

from bot.streaming.render import Entity, Rendered, utf16_len

MAX_MESSAGE_UTF16 = MessageLimit.MAX_TEXT_LENGTH
# A cut in the first half of the window would leave a needlessly short message.
_MIN_FILL = 0.5


def split_rendered(rendered: Rendered, limit: int = MAX_MESSAGE_UTF16) -> list[Rendered]:
    """Split ``rendered`` into parts of at most ``limit`` UTF-16 units each."""
    text = rendered.text
    # Most answers fit in one message, and every streamed update asks again: the length
    # alone (in C) is enough for them.
    if len(text) <= limit // 2 or utf16_len(text) <= limit:
        return [rendered]
    # offsets[i] is the UTF-16 offset of code point i; offsets[-1] is the total length.
    offsets = [0, *accumulate(2 if ord(c) > 0xFFFF else 1 for c in text)]
    pre_spans = [
        (bisect_left(offsets, e.offset), bisect_left(offsets, e.offset + e.length))
        for e in rendered.entities
        if e.type in ("pre", "code")
    ]
    parts: list[Rendered] = []
    start = 0
    while offsets[-1] - offsets[start] > limit:
        end = bisect_right(offsets, offsets[start] + limit) - 1
        cut = _choose_cut(text, start, end, pre_spans)
        parts.append(_slice(rendered, offsets, start, cut))
        start = cut
        while start < len(text) and text[start].isspace():
            start += 1
    if start < len(text):
        parts.append(_slice(rendered, offsets, start, len(text)))
    return parts


def _choose_cut(text: str, start: int, end: int, pre_spans: list[tuple[int, int]]) -> int:
    """The code-point index to cut at, in (start, end]."""
    floor = start + int((end - start) * _MIN_FILL)

    def inside_code(index: int) -> bool:
        return any(a < index < b for a, b in pre_spans)

    for separator in ("\n\n", "\n", " "):
        position = text.rfind(separator, floor, end)
        while position != -1:
            cut = position + len(separator)
            # A paragraph break inside a code block is no paragraph; any line break is.
            if separator != "\n\n" or not inside_code(cut):
                return cut
            position = text.rfind(separator, floor, position)
    return end


def _slice(rendered: Rendered, offsets: list[int], start: int, end: int) -> Rendered:
    """The part of ``rendered`` between code points start and end, entities clipped."""
    lo, hi = offsets[start], offsets[end]
    entities = []
    for e in rendered.entities:
        a, b = max(e.offset, lo), min(e.offset + e.length, hi)
        if a < b:
            entities.append(Entity(e.type, a - lo, b - a, url=e.url, language=e.language))
    return Rendered(rendered.text[start:end], tuple(entities))
