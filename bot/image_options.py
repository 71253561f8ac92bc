"""Pure: the arguments of /image into a prompt and options, and the caption of an image.

Syntax: ``/image [--size WxH] [--n N] PROMPT``. Options come first; ``-s``/``-n`` and
``--size=WxH`` work too, and so does the dash a phone makes of ``--`` (``—size``). The first
word that is not an option starts the prompt, so a prompt may contain anything after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram.constants import MessageLimit

from bot.config import ImagesConfig
from bot.errors import InputError
from bot.streaming.render import utf16_len

MAX_CAPTION_UTF16 = MessageLimit.CAPTION_LENGTH
ELLIPSIS = "…"

SIZE_OPTIONS = frozenset({"--size", "-s"})
COUNT_OPTIONS = frozenset({"--n", "-n", "--count"})

# "1024x1024", also typed as 1024X1024, 1024*1024 or 1024×1024.
_SIZE = re.compile(r"(\d{2,5})\s*[xX*×]\s*(\d{2,5})")
# Phones turn "--" into an en or em dash.
_PHONE_DASHES = re.compile(r"^[\u2013\u2014]")


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """What one /image asks for."""

    prompt: str
    size: str
    n: int


def parse_image_command(argument: str, defaults: ImagesConfig) -> ImageOptions:
    """Read ``argument`` (the text after /image); raise ``InputError`` naming the problem."""
    size, n = defaults.size, defaults.count
    rest = argument.strip()
    while rest.startswith(("-", "\u2013", "\u2014")):
        word, _, after = rest.partition(" ")
        option, has_value, value = _PHONE_DASHES.sub("--", word).partition("=")
        option = option.lower()
        if option not in SIZE_OPTIONS | COUNT_OPTIONS:
            raise InputError("image.unknown_option", option=word)
        if not has_value:
            value, _, after = after.strip().partition(" ")
        if not value:
            raise InputError("image.missing_value", option=option)
        if option in SIZE_OPTIONS:
            size = parse_size(value)
        else:
            n = parse_count(value, defaults.max_count)
        rest = after.strip()
    if not rest:
        raise InputError("image.usage", max=defaults.max_count)
    return ImageOptions(rest, size, n)


def parse_size(value: str) -> str:
    """``WIDTHxHEIGHT`` (or ``auto``) in the form providers expect."""
    if value.lower() == "auto":
        return "auto"
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise InputError("image.bad_size", value=value)
    return f"{int(match[1])}x{int(match[2])}"


def parse_count(value: str, max_count: int) -> int:
    """A count from 1 to ``max_count``."""
    if not value.isdigit() or not 1 <= int(value) <= max_count:
        raise InputError("image.bad_count", value=value, max=max_count)
    return int(value)


def truncate_utf16(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-16 units, ending in an ellipsis when it was cut."""
    if utf16_len(text) <= limit:
        return text
    room = limit - utf16_len(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > room:
            break
        kept.append(char)
        used += width
    return "".join(kept).rstrip() + ELLIPSIS


def image_caption(
    prompt: str, revised: str | None, revised_label: str, limit: int = MAX_CAPTION_UTF16
) -> str:
    """The prompt, with the provider's revised prompt when it differs and the two fit."""
    if revised and revised.strip() != prompt.strip():
        both = f"{prompt}\n\n{revised_label} {revised.strip()}"
        if utf16_len(both) <= limit:
            return both
    return truncate_utf16(prompt, limit)
