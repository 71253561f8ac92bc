"""Pure: an answer's Markdown into Telegram text plus entities, valid for every prefix.

Entities are sent instead of a parse mode, so Telegram has nothing to parse and cannot
answer "can't parse entities"; an unclosed marker in a partial answer stays literal text.
"""

from __future__ import annotations

import codecs
import logging
from dataclasses import dataclass

import telegramify_markdown

logger = logging.getLogger(__name__)

# The first look-up of a codec imports its module: done here, at start-up, rather than
# in the first answer.
codecs.lookup("utf-16-le")


@dataclass(frozen=True, slots=True)
class Entity:
    """A Telegram message entity; offsets and lengths in UTF-16 code units."""

    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """Text ready for Telegram, with its formatting as entities."""

    text: str
    entities: tuple[Entity, ...] = ()

    def plain(self) -> Rendered:
        """The same text without formatting: the fallback when Telegram rejects entities."""
        return Rendered(self.text)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def render_markdown(markdown: str) -> Rendered:
    """Render ``markdown`` (complete or a prefix of a stream) for Telegram."""
    try:
        text, entities = telegramify_markdown.convert(markdown)
    except Exception:  # a converter bug must cost formatting, never the answer
        logger.warning("markdown rendering failed; sending plain text", exc_info=True)
        return Rendered(markdown)
    return Rendered(
        text.rstrip(),
        tuple(
            Entity(e.type, e.offset, e.length, url=e.url, language=e.language)
            for e in entities
            if e.length > 0
        ),
    )


def append_note(body: Rendered, note: str) -> Rendered:
    """``body`` followed by ``note`` in italics on its own paragraph."""
    if not body.text:
        return Rendered(note)
    separator = "\n\n"
    offset = utf16_len(body.text) + utf16_len(separator)
    return Rendered(
        body.text + separator + note,
        (*body.entities, Entity("italic", offset, utf16_len(note))),
    )
