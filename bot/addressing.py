"""Whether a group message speaks to the bot, and what it asks once the mention is gone.

Pure logic over PTB's ``Message``: no Telegram calls, so it is tested without sockets.
"""

from __future__ import annotations

import re

from telegram import Document, Message
from telegram.constants import MessageEntityType

# How much of a quoted message joins the prompt: enough for context, not a second prompt.
QUOTE_LIMIT = 1000

_SPACES = re.compile(r"[ \t]{2,}")


def is_addressed(message: Message, bot_id: int, bot_username: str | None) -> bool:
    """A mention of the bot (@username or a text mention) or a reply to one of its messages."""
    return replies_to_bot(message, bot_id) or bool(_mentions(message, bot_id, bot_username))


def replies_to_bot(message: Message, bot_id: int) -> bool:
    """Whether ``message`` answers one of the bot's own messages."""
    replied = _replied(message)
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot_id


def without_mention(message: Message, bot_id: int, bot_username: str | None) -> str:
    """The message's text with every mention of the bot taken out."""
    body = message.text or message.caption or ""
    spans = _mentions(message, bot_id, bot_username)
    if not spans:
        return body.strip()
    # Python offsets of each mention, found from the entity texts in their order.
    kept: list[str] = []
    position = 0
    for mention in spans:
        start = body.find(mention, position)
        if start < 0:
            continue
        kept.append(body[position:start])
        position = start + len(mention)
    kept.append(body[position:])
    cleaned = "".join(kept)
    lines = (_SPACES.sub(" ", line).strip() for line in cleaned.splitlines())
    return "\n".join(lines).strip().lstrip(",:;").strip()


def quoted_context(message: Message, bot_id: int, limit: int = QUOTE_LIMIT) -> str | None:
    """``[Name wrote: …]`` for a replied-to message of someone else, bounded; else None."""
    replied = _replied(message)
    if replied is None:
        return None
    author = replied.from_user
    if author is None or author.id == bot_id:
        return None
    sender = message.from_user
    if sender is not None and author.id == sender.id:
        return None
    body = (replied.text or replied.caption or "").strip()
    if not body:
        return None
    if len(body) > limit:
        body = body[: limit - 1].rstrip() + "…"
    return f"[{author.full_name} wrote: {body}]"


def quoted_image(message: Message, bot_id: int) -> Message | None:
    """The replied-to message when it carries an image that is not the bot's own; else None.

    The bot's own pictures are already in the conversation, as the record of what it drew.
    """
    replied = _replied(message)
    if replied is None or not carries_image(replied):
        return None
    author = replied.from_user
    return None if author is not None and author.id == bot_id else replied


def carries_image(message: Message) -> bool:
    """Whether ``message`` is a photo or an image sent as a file."""
    return bool(message.photo) or is_image_document(message.document)


def is_image_document(document: Document | None) -> bool:
    """Whether ``document`` is an image file."""
    return document is not None and (document.mime_type or "").startswith("image/")


def _replied(message: Message) -> Message | None:
    """The message replied to; in forum topics Telegram points at the topic's creation."""
    replied = message.reply_to_message
    if replied is None or replied.forum_topic_created is not None:
        return None
    return replied


def _mentions(message: Message, bot_id: int, bot_username: str | None) -> list[str]:
    """The texts of the entities mentioning the bot, in order."""
    own = f"@{bot_username}".lower() if bot_username else None
    entities = (
        message.parse_entities() if message.text is not None else message.parse_caption_entities()
    )
    found: list[str] = []
    for entity, value in sorted(entities.items(), key=lambda item: item[0].offset):
        by_name = entity.type == MessageEntityType.MENTION and value.lower() == own
        by_id = (
            entity.type == MessageEntityType.TEXT_MENTION
            and entity.user is not None
            and entity.user.id == bot_id
        )
        if by_name or by_id:
            found.append(value)
    return found
