"""Pure: photos as chat input: which photo size to fetch, the question, what history keeps.

The image goes to the model with the newest user message only; the stored turn keeps a
short marker instead ("[photo] what is this?"), so history stays text and a later turn
still tells the model that a photo was there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, TypeVar

from bot.providers.base import ChatRequest

PHOTO_MARKER = "[photo]"
PHOTOS_MARKER = "[{count} photos]"

MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""The largest image fetched from Telegram and sent on: a provider's limit, well within
Telegram's 20 MB download limit for bots."""

# "/chat", "/chat@some_bot", then the question.
_CHAT_COMMAND = re.compile(r"^/chat(?:@\w+)?(?:\s+|$)", re.IGNORECASE)


class PhotoSizeLike(Protocol):
    """What is read of a Telegram ``PhotoSize``."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def file_size(self) -> int | None: ...


_Size = TypeVar("_Size", bound=PhotoSizeLike)


def pick_photo_size(sizes: Sequence[_Size], limit: int = MAX_IMAGE_BYTES) -> _Size | None:
    """The largest size within ``limit`` bytes (an unknown size counts as within); None if
    every size is larger."""
    fitting = [s for s in sizes if s.file_size is None or s.file_size <= limit]
    return max(fitting, key=lambda s: s.width * s.height, default=None)


def photo_question(caption: str | None, *, addressed: bool) -> str | None:
    """The question a photo's caption asks; None when the photo is not for the bot.

    A caption starting with /chat is always for the bot; otherwise the photo is when it is
    ``addressed`` (in a private chat, or mentioning the bot or replying to it in a group).
    """
    text = (caption or "").strip()
    match = _CHAT_COMMAND.match(text)
    if match is not None:
        return text[match.end() :].strip()
    return text if addressed else None


def stored_text(question: str, images: Sequence[str]) -> str:
    """The user's turn as history keeps it: the question, marked when it came with a photo."""
    if not images:
        return question
    marker = PHOTO_MARKER if len(images) == 1 else PHOTOS_MARKER.format(count=len(images))
    return f"{marker} {question}".rstrip()


def has_photos(stored: str) -> bool:
    """Whether a stored user's turn came with photos (which history does not keep)."""
    return stored.startswith(PHOTO_MARKER) or re.match(r"\[\d+ photos\]", stored) is not None


def with_images(request: ChatRequest, question: str, images: tuple[str, ...]) -> ChatRequest:
    """``request`` with its newest message (the user's turn) carrying ``images``, unmarked."""
    if not images or not request.messages:
        return request
    *earlier, newest = request.messages
    newest = replace(newest, content=question, images=images)
    return replace(request, messages=(*earlier, newest))
