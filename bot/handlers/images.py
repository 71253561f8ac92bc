"""Images in and out: /image, /edit as a reply to a photo, and photos sent to the bot."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from telegram import InputMediaPhoto, Message, Update
from telegram.constants import ChatAction, ChatType
from telegram.error import RetryAfter, TelegramError
from telegram.ext import filters

from bot.addressing import carries_image, is_addressed, without_mention
from bot.errors import BadRequest, ContentRejected, InputError, ProviderError
from bot.handlers.chat import (
    active_conversation_of,
    answer,
    command_argument,
    lang_of,
    take_turn,
    too_long,
    topic_of,
)
from bot.handlers.context import BotContext
from bot.handlers.photos import download_image, seen_images
from bot.handlers.quota import record_usage
from bot.image_options import image_caption, parse_image_command, truncate_utf16
from bot.inflight import unless_stopped
from bot.messages import Lang, text, user_message
from bot.model_choice import effective_model
from bot.providers.base import GeneratedImage, ImageEditRequest, ImageRequest
from bot.providers.images import sniff_image
from bot.providers.service import user_tag
from bot.services import Services
from bot.storage.records import MessageKind, MessageStatus
from bot.streaming.typing import TypingIndicator
from bot.vision import photo_question

logger = logging.getLogger(__name__)


ONE_IMAGE_MODELS = ("dall-e-3",)
"""Models that make one image per request (n must be 1): n images are n requests."""

# --- /image ----------------------------------------------------------------------------------


async def image_command(update: Update, context: BotContext) -> None:
    """``/image [--size WxH] [--n N] PROMPT``: generate images and send them as photos."""
    message = update.effective_message
    if message is None:
        return
    services = context.services
    lang = lang_of(update)
    try:
        options = parse_image_command(command_argument(message), services.config.images)
    except InputError as exc:
        await context.reply(message, user_message(exc, lang))
        return
    if await too_long(context, message, options.prompt, lang):
        return
    model = await effective_model(services, message.chat_id, "images")
    request = ImageRequest(
        model=model,
        prompt=options.prompt,
        n=options.n,
        size=options.size,
        response_format=services.config.images.response_format,
        user=_user(update),
    )
    job = _Job(
        MessageKind.IMAGE, options.prompt, model, "image", lambda: _generate(services, request)
    )
    await _produce(update, context, job, lang)


async def _generate(services: Services, request: ImageRequest) -> list[GeneratedImage]:
    """``request``'s images; a model that makes one per request is asked ``n`` times."""
    if request.n == 1 or not request.model.startswith(ONE_IMAGE_MODELS):
        return await services.providers.generate_images(request)
    single = replace(request, n=1)
    # At the same time: one such image takes the better part of a minute.
    answers = await asyncio.gather(
        *(services.providers.generate_images(single) for _ in range(request.n)),
        return_exceptions=True,
    )
    images: list[GeneratedImage] = []
    for result in answers:
        if isinstance(result, BaseException):
            raise result
        images += result
    return images


# --- /edit as a reply to a photo ---------------------------------------------------------------


def replies_to_photo(message: Message) -> bool:
    """Whether ``message`` replies to a photo (or an image sent as a file)."""
    target = message.reply_to_message
    return target is not None and carries_image(target)


class _RepliesToPhoto(filters.MessageFilter):
    """Lets /edit through to ``edit_photo_command`` only as a reply to a photo."""

    def filter(self, message: Message) -> bool:
        return replies_to_photo(message)


REPLIES_TO_PHOTO = _RepliesToPhoto(name="replies_to_photo")
"""The filter of the photo /edit handler, registered before any other /edit handler."""


async def edit_photo_command(update: Update, context: BotContext) -> None:
    """``/edit INSTRUCTION`` as a reply to a photo."""
    message = update.effective_message
    if message is None:
        return
    await edit_photo(update, context, command_argument(message))


async def edit_photo(update: Update, context: BotContext, instruction: str) -> None:
    """Edit the photo ``update``'s message replies to (or carries) as ``instruction`` says;
    reply with the edited image."""
    message = update.effective_message
    if message is None:
        return
    # A photo captioned /edit, or a reply to a photo.
    target = message if carries_image(message) else message.reply_to_message or message
    services = context.services
    lang = lang_of(update)
    if not instruction:
        await context.reply(message, text("edit.photo_usage", lang))
        return
    if await too_long(context, message, instruction, lang):
        return
    try:
        image = await download_image(context, target)
    except InputError as exc:
        await context.reply(message, user_message(exc, lang))
        return
    model = await effective_model(services, message.chat_id, "image_edits")
    request = ImageEditRequest(
        model=model,
        prompt=instruction,
        image=image,
        filename=f"image.{sniff_image(image)[1]}",
        response_format=services.config.images.response_format,
        user=_user(update),
    )
    job = _Job(
        MessageKind.IMAGE_EDIT,
        instruction,
        model,
        "edit",
        lambda: services.providers.edit_image(request),
    )
    await _produce(update, context, job, lang)


# --- photos sent to the bot ------------------------------------------------------------------

PHOTO_FILTER = filters.PHOTO | filters.Document.IMAGE
"""Photos and image files; ``photo_message`` decides which of them speak to the bot."""

_EDIT_CAPTION = re.compile(r"(?i)^/edit(?:@(\w+))?(?:\s+|$)")
_ADDRESSEE = re.compile(r"^/\w+@(\w+)")


ALBUM_WAIT_SECONDS = 1.0
"""How long the first photo of an album waits for the others, which arrive as their own
updates within moments."""

_ALBUMS_KEY = "photo_albums"


async def photo_message(update: Update, context: BotContext) -> None:
    """A photo captioned /edit is edited; otherwise, if it speaks to the bot, its caption is a
    question for the chat model, if that model can see. An album is answered once, with all
    its photos."""
    first = update.effective_message
    if first is None:
        return
    album = await _album(context, first)
    if album is None:
        return  # another photo of the album answers for all of them
    message = next((m for m in album if m.caption), first)
    caption = message.caption or ""
    addressee = _ADDRESSEE.match(caption)
    if addressee is not None and addressee[1].lower() != (context.bot.username or "").lower():
        return  # a command for another bot in the group
    edit = _EDIT_CAPTION.match(caption)
    if edit is not None:
        await edit_photo(update, context, caption[edit.end() :].strip())
        return
    bot = context.bot
    # Any photo in a private chat; in groups one that mentions the bot or replies to it.
    addressed = message.chat.type == ChatType.PRIVATE or any(
        is_addressed(m, bot.id, bot.username) for m in album
    )
    question = photo_question(without_mention(message, bot.id, bot.username), addressed=addressed)
    if question is not None:
        await _ask_about(update, context, message, album, question)


async def _ask_about(
    update: Update, context: BotContext, message: Message, album: list[Message], question: str
) -> None:
    """Answer ``question`` about the photos of ``album`` like a chat message, or say why the
    model cannot look at them."""
    images = await seen_images(context, message, album, lang_of(update))
    if images is not None:
        await answer(update, context, question, images=images)


async def _album(context: BotContext, message: Message) -> list[Message] | None:
    """The photos of ``message``'s album, gathered by whichever arrived first (None for the
    others); a photo outside an album is an album of its own."""
    if message.media_group_id is None:
        return [message]
    albums: dict[tuple[int, str], list[Message]]
    albums = context.application.bot_data.setdefault(_ALBUMS_KEY, {})
    key = (message.chat_id, message.media_group_id)
    if key in albums:
        albums[key].append(message)
        return None
    albums[key] = [message]
    await asyncio.sleep(ALBUM_WAIT_SECONDS)
    return sorted(albums.pop(key), key=lambda m: m.message_id)


# --- shared -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    """One request for images and how to speak of it."""

    kind: MessageKind
    prompt: str
    model: str
    messages: Literal["image", "edit"]
    """The catalogue prefix of its refusals: ``image.*`` or ``edit.*``."""
    make: Callable[[], Awaitable[list[GeneratedImage]]]


async def _produce(update: Update, context: BotContext, job: _Job, lang: Lang) -> None:
    """Store the request, show upload_photo while the provider works, send the images as
    photos replying to the command, and store what became of it."""
    message = update.effective_message
    assert message is not None
    # Its own turn, outside the conversation's queue; a stopping bot waits for it like an
    # answer. It counts as a request; its tokens are not known (nor estimated).
    await take_turn(
        context,
        message,
        lang,
        lambda: _produce_in_turn(update, context, job, lang),
        prompt_tokens=None,
        held=True,
    )


async def _produce_in_turn(update: Update, context: BotContext, job: _Job, lang: Lang) -> None:
    message = update.effective_message
    assert message is not None
    services = context.services
    store = services.store
    chat_id = message.chat_id
    conversation = await active_conversation_of(context, message, lang)
    user = update.effective_user
    question_id = await store.add_user_message(
        conversation,
        text=job.prompt,
        user_id=user.id if user else None,
        telegram_chat_id=chat_id,
        telegram_message_id=message.message_id,
        kind=job.kind,
    )
    answer_id = await store.start_answer(
        conversation,
        question_id=question_id,
        telegram_chat_id=chat_id,
        model=job.model,
        kind=job.kind,
    )
    # Pictures take seconds, never a blink: the indicator goes up at once.
    uploading = TypingIndicator(
        context.bot, chat_id, topic_of(message), action=ChatAction.UPLOAD_PHOTO, delay=0.0
    )
    uploading.start()
    try:
        # Cut like a streaming answer when the bot stops and its grace period is over.
        with services.stops.track(answer_id, user.id if user else None) as stop:
            images = await unless_stopped(job.make(), stop)
    except ProviderError as exc:
        logger.warning("%s %s failed: %s (%s)", job.kind, answer_id, exc.kind, exc.detail)
        await uploading.stop()
        await context.reply(message, _refusal(exc, job, lang))
        await store.finish_answer(
            answer_id, text="", status=MessageStatus.ERROR, error_kind=exc.kind.value
        )
        return
    if images is None:
        await uploading.stop()
        interrupted = services.stops.interrupted
        await context.reply(message, text("restarting" if interrupted else "note.stopped", lang))
        status = MessageStatus.INTERRUPTED if interrupted else MessageStatus.STOPPED
        await store.finish_answer(answer_id, text="", status=status)
        services.metrics.answers.labels(status.value).inc()
        return
    # The provider made them: they count, even if Telegram then refuses them.
    record_usage(0, answered=True)
    try:
        revised = next((i.revised_prompt for i in images if i.revised_prompt), None)
        caption = image_caption(job.prompt, revised, text("image.revised", lang))
        sent = await _send_images(services, message, images, caption)
    finally:
        await uploading.stop()
    if sent is None:
        await context.reply(message, text("image.send_failed", lang))
    await store.finish_answer(
        answer_id,
        text=_record(images),
        status=MessageStatus.COMPLETE if sent else MessageStatus.ERROR,
        telegram_message_ids=sent or (),
        error_kind=None if sent else "telegram",
    )


def _refusal(exc: ProviderError, job: _Job, lang: Lang) -> str:
    """Words for a failed image request; refusals and rejected options get their own."""
    if isinstance(exc, ContentRejected):
        return text(f"{job.messages}.rejected", lang)
    if isinstance(exc, BadRequest):
        return text(f"{job.messages}.bad_request", lang, model=job.model)
    return user_message(exc, lang)


async def _send_images(
    services: Services, message: Message, images: Sequence[GeneratedImage], caption: str
) -> list[int] | None:
    """Send ``images`` as one photo or an album replying to ``message``; the message ids,
    or None when Telegram took them neither by URL nor as uploads."""
    try:
        return await _send(services, message, images, caption)
    except RetryAfter:
        raise
    except TelegramError as exc:
        if all(image.data is not None for image in images):
            logger.warning("Telegram refused the images: %s", exc)
            return None
        # Telegram fetches photo URLs itself and cannot reach every host (a provider on a
        # private network, an expired link): fetch them here and upload the bytes.
        logger.info("Telegram could not take the image URLs (%s); uploading them", exc)
    try:
        fetched = [await _with_bytes(services, image) for image in images]
        return await _send(services, message, fetched, caption)
    except (ProviderError, TelegramError) as exc:
        logger.warning("could not deliver the images: %s", exc)
        return None


async def _with_bytes(services: Services, image: GeneratedImage) -> GeneratedImage:
    if image.data is not None or image.url is None:
        return image
    return replace(image, data=await services.providers.fetch_image(image.url))


async def _send(
    services: Services, message: Message, images: Sequence[GeneratedImage], caption: str
) -> list[int]:
    """One photo, or an album (2 to 10, as ``images.max_count`` allows) captioned on its first."""
    sources = [_source(image) for image in images]
    if len(sources) == 1:
        photo = await services.outbox.call(
            message.chat_id,
            lambda: message.reply_photo(sources[0], caption=caption, do_quote=True),
            must_deliver=True,
        )
        return [photo.message_id] if photo is not None else []
    media = [InputMediaPhoto(source) for source in sources]
    album = await services.outbox.call(
        message.chat_id,
        lambda: message.reply_media_group(media, caption=caption, do_quote=True),
        must_deliver=True,
    )
    return [m.message_id for m in album or ()]


def _source(image: GeneratedImage) -> bytes | str:
    """What Telegram is given: the bytes when we have them, else the URL to fetch."""
    if image.data is not None:
        return image.data
    assert image.url is not None, "an image has bytes or a URL"
    return image.url


def _record(images: Sequence[GeneratedImage]) -> str:
    """What the stored answer says of the images: how many, and any revised prompt."""
    lines = [f"[{len(images)} image{'s' if len(images) != 1 else ''}]"]
    lines += [truncate_utf16(i.revised_prompt, 1000) for i in images if i.revised_prompt]
    return "\n".join(lines)


def _user(update: Update) -> str | None:
    user = update.effective_user
    return user_tag(user.id) if user is not None else None
