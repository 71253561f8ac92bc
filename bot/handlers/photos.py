"""Photos as chat input: fetched from Telegram, and only for a chat model that can see."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import Document, Message, PhotoSize
from telegram.error import TelegramError

from bot.addressing import is_image_document
from bot.errors import InputError
from bot.handlers.context import BotContext
from bot.messages import Lang, text, user_message
from bot.model_choice import effective_model
from bot.providers.images import data_url
from bot.vision import MAX_IMAGE_BYTES, pick_photo_size

logger = logging.getLogger(__name__)


async def seen_images(
    context: BotContext, message: Message, sources: Sequence[Message], lang: Lang
) -> tuple[str, ...] | None:
    """The images of ``sources`` as data URLs for the chat model of ``message``'s chat; None
    once the user is told why not (the model cannot see, a picture too large or lost)."""
    services = context.services
    model = await effective_model(services, message.chat_id, "chat")
    vision = services.config.models.vision
    if model not in vision:
        if vision:
            refusal = text("vision.not_capable", lang, model=model, models=", ".join(vision))
        else:
            refusal = text("vision.none", lang, model=model)
        await context.reply(message, refusal)
        return None
    try:
        return tuple([data_url(await download_image(context, source)) for source in sources])
    except InputError as exc:
        await context.reply(message, user_message(exc, lang))
        return None


async def download_image(context: BotContext, message: Message) -> bytes:
    """The bytes of the photo (its largest size within the limit) or image file of
    ``message``; ``InputError`` when it is too large or Telegram will not hand it out."""
    limit_mb = MAX_IMAGE_BYTES // (1024 * 1024)
    source: PhotoSize | Document | None
    if message.photo:
        source = pick_photo_size(message.photo)
    elif is_image_document(message.document):
        source = message.document
        if source is not None and (source.file_size or 0) > MAX_IMAGE_BYTES:
            source = None
    else:
        raise InputError("photo.download_failed")
    if source is None:
        raise InputError("photo.too_large", limit=limit_mb)
    try:
        file = await context.bot.get_file(source.file_id)
        data = bytes(await file.download_as_bytearray())
    except TelegramError as exc:
        logger.warning("could not download file %s: %s", source.file_id, exc)
        raise InputError("photo.download_failed") from exc
    if not data:
        raise InputError("photo.download_failed")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError("photo.too_large", limit=limit_mb)
    return data
