"""Pure: image requests into wire bodies, image answers into ``GeneratedImage``, data URLs.

Answers are read tolerantly, because the seeds disagree on their shape:

* OpenAI and the resellers: ``{"created", "data": [{"b64_json" | "url", "revised_prompt"}]}``;
  GPT image models always answer base64, DALL·E-era and reseller endpoints may answer a URL;
* seed 000's ``/openai/image``: ``{code, data, message}``, whose ``data`` the document does not
  show. A Node service passing the OpenAI answer on may put there the answer itself, its
  ``data`` list, or a list of bare strings (URLs or base64), so each of these is accepted.

Anything else (an error body, an answer without a single image) raises the classified error.
"""

from __future__ import annotations

import base64
import binascii
import re

from bot.providers.base import GeneratedImage, ImageEditRequest, ImageRequest
from bot.providers.classify import classify_error, is_error_body, is_wrapper_error

IMAGE_ANSWER_LIMIT = 64 * 1024 * 1024
"""Bytes of an image answer: several large images in base64 run past the usual JSON limit."""

DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<b64>;base64)?,(?P<data>.*)", re.DOTALL)

_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
)


def sniff_image(data: bytes) -> tuple[str, str]:
    """The MIME type and file extension of image bytes, from their signature.

    Unknown bytes count as JPEG, which is what Telegram makes of every photo.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    for signature, mime, extension in _SIGNATURES:
        if data.startswith(signature):
            return mime, extension
    return "image/jpeg", "jpg"


def data_url(data: bytes, mime: str | None = None) -> str:
    """``data:<mime>;base64,...`` for ``data``; the type is sniffed when not given."""
    mime = mime or sniff_image(data)[0]
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def split_data_url(url: str) -> tuple[str, str] | None:
    """The MIME type and base64 payload of a base64 ``data:`` URL; None for other URLs."""
    match = DATA_URL.fullmatch(url)
    if match is None or not match["b64"]:
        return None
    return match["mime"] or "application/octet-stream", match["data"]


def generation_body(request: ImageRequest, *, with_model: bool = True) -> dict[str, object]:
    """The JSON body of an image generation request; unset options are left out."""
    body: dict[str, object] = {"prompt": request.prompt, "n": request.n}
    if with_model:
        body = {"model": request.model, **body}
    if request.size is not None:
        body["size"] = request.size
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.user is not None:
        body["user"] = request.user
    return body


def edit_fields(request: ImageEditRequest) -> dict[str, str]:
    """The text fields of a multipart image edit request (the image goes as a file part)."""
    fields = {"prompt": request.prompt, "model": request.model, "n": str(request.n)}
    if request.size is not None:
        fields["size"] = request.size
    if request.response_format is not None:
        fields["response_format"] = request.response_format
    if request.user is not None:
        fields["user"] = request.user
    return fields


def parse_images(
    body: object,
    *,
    status: int | None = None,
    provider: str | None = None,
    secrets: tuple[str, ...] = (),
) -> list[GeneratedImage]:
    """The images of an answer in any shape the module's docstring lists; raises otherwise."""
    if is_error_body(body) or is_wrapper_error(body):
        raise classify_error(status, body, provider=provider, secrets=secrets)
    images = _images_in(body, depth=0)
    if not images:
        raise classify_error(status, body, provider=provider, secrets=secrets)
    return images


def _images_in(value: object, *, depth: int) -> list[GeneratedImage]:
    """Images in ``value``: a list of items, or an object whose ``data`` holds them."""
    if depth > 2:
        return []
    if isinstance(value, dict):
        if "data" in value:
            return _images_in(value["data"], depth=depth + 1)
        item = _image(value)
        return [item] if item is not None else []
    if isinstance(value, list):
        items = [_image(item) for item in value]
        return [item for item in items if item is not None]
    if isinstance(value, str):
        item = _image(value)
        return [item] if item is not None else []
    return []


def _image(item: object) -> GeneratedImage | None:
    """One item: ``{"b64_json" | "url", "revised_prompt"}``, or a bare URL or base64 text."""
    if isinstance(item, str):
        return _from_text(item)
    if not isinstance(item, dict):
        return None
    revised = item.get("revised_prompt")
    revised = revised if isinstance(revised, str) and revised.strip() else None
    encoded = item.get("b64_json")
    if isinstance(encoded, str) and encoded:
        data = _decode_base64(encoded)
        return None if data is None else GeneratedImage(data=data, revised_prompt=revised)
    url = item.get("url")
    if isinstance(url, str) and url:
        image = _from_text(url)
        if image is not None:
            return GeneratedImage(data=image.data, url=image.url, revised_prompt=revised)
    return None


def _from_text(text: str) -> GeneratedImage | None:
    """A URL (``http(s):`` or ``data:``) or bare base64 into an image; None for other text."""
    text = text.strip()
    if text.startswith(("https://", "http://")):
        return GeneratedImage(url=text)
    if text.startswith("data:"):
        parts = split_data_url(text)
        data = None if parts is None else _decode_base64(parts[1])
        return None if data is None else GeneratedImage(data=data)
    # Bare text counts only if it decodes to a known image: prose can be valid base64 too.
    data = _decode_base64(text)
    return None if data is None or not _known_image(data) else GeneratedImage(data=data)


def _known_image(data: bytes) -> bool:
    """Whether ``data`` starts with the signature of an image format we recognise."""
    return sniff_image(data) != ("image/jpeg", "jpg") or data.startswith(b"\xff\xd8\xff")


def _decode_base64(text: str) -> bytes | None:
    """Decoded bytes, or None when ``text`` is not base64 of anything."""
    try:
        # Providers may wrap base64 at 76 columns; spaces are no part of it.
        data = base64.b64decode(text.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        return None
    return data or None
