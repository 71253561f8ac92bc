"""Pure: persona plus stored history into the messages sent to the model, within a budget.

Token counts are estimates that work offline for any model: providers tokenize
differently anyway, and their reported usage is what gets stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.providers.base import ChatMessage

# Every message costs a few tokens of framing (role, separators) in OpenAI-style formats.
MESSAGE_OVERHEAD_TOKENS = 4
# OpenAI's price of a 1024x1024 image in detail; a data URL's characters are not the measure.
IMAGE_TOKENS = 765
# English averages about four characters a token in BPE vocabularies.
_ASCII_CHARS_PER_TOKEN = 4
# CJK text and other non-ASCII scripts run close to one token a character.
_NON_ASCII_TOKENS_PER_CHAR = 1


def estimate_tokens(text: str) -> int:
    """A conservative offline estimate of the tokens in ``text``."""
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_chars = len(text) - ascii_chars
    ascii_tokens = -(-ascii_chars // _ASCII_CHARS_PER_TOKEN)
    return ascii_tokens + other_chars * _NON_ASCII_TOKENS_PER_CHAR


def message_tokens(message: ChatMessage) -> int:
    """Estimated tokens one message costs, framing and images included."""
    images = IMAGE_TOKENS * len(message.images)
    return estimate_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS + images


def prompt_bound(text: str, images: int, max_tokens: int) -> int:
    """The most tokens ``build_messages`` sends with a new message ``text`` (and ``images``).

    The history is trimmed to ``max_tokens``, but the new message is kept however long.
    """
    return max_tokens + estimate_tokens(text) + MESSAGE_OVERHEAD_TOKENS + IMAGE_TOKENS * images


def build_messages(
    system_prompt: str,
    history: Sequence[ChatMessage],
    *,
    max_messages: int,
    max_tokens: int,
) -> tuple[ChatMessage, ...]:
    """System prompt plus the newest history that fits; the last message is always kept.

    ``history`` is oldest first and ends with the user's new message. Older messages are
    dropped first; an assistant message is never left first after the system prompt, so the
    kept history starts with a user turn.
    """
    system = ChatMessage("system", system_prompt) if system_prompt else None
    budget = max_tokens - (message_tokens(system) if system else 0)
    kept: list[ChatMessage] = []
    for message in reversed(history):
        cost = message_tokens(message)
        if kept and (len(kept) >= max_messages or cost > budget):
            break
        kept.append(message)
        budget -= cost
    kept.reverse()
    while len(kept) > 1 and kept[0].role == "assistant":
        kept.pop(0)
    return (system, *kept) if system else tuple(kept)
