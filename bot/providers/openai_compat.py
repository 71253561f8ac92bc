"""The adapter for OpenAI-compatible chat APIs: OpenAI itself and the resellers in the seeds.

One request becomes one ``POST {base_url}/chat/completions`` with ``stream: true``; the body
goes through ``SSEDecoder`` and ``OpenAIStreamParser``. Legacy completions take the same path
through ``POST {base_url}/completions``; edits are one non-streamed ``POST {base_url}/edits``.
Timeouts, connection failures and error responses are translated by ``ProviderHTTP`` (see
``bot.providers.http``); error bodies inside a 200 stream by the parser.

Options of the ``openai`` kind: ``reduce_stream`` sends ``Reduce-Stream: true`` (seed 002's
short stream shapes, which the parser reads); ``include_usage`` asks for the usage-only
final chunk with ``stream_options``; ``max_tokens`` applies when a request sets none. ``n``
is never sent: one answer is all the bot shows, and seed 002 caps it at 1 anyway.

A user message with images (vision) sends its content as parts: the text, then one
``image_url`` part per image (``{"url": "data:..."}``, the form every seed accepts). Images
are generated with ``POST {base_url}/images/generations`` (JSON) and edited with ``POST
{base_url}/images/edits`` (multipart); answers may hold base64 or URLs (``bot.providers.images``).

Once a finish reason was seen the answer is complete: a body that then ends, breaks or goes
quiet without ``[DONE]`` still ends normally with exactly one ``StreamEnd``.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator

import aiohttp

from bot.config import ProviderConfig
from bot.providers.base import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EditRequest,
    GeneratedImage,
    ImageEditRequest,
    ImageRequest,
    ModelInfo,
    Provider,
    StreamEvent,
)
from bot.providers.decoders import (
    OpenAIStreamParser,
    parse_completion,
    parse_edit,
    parse_models,
)
from bot.providers.http import ProviderHTTP, bearer, request_headers
from bot.providers.images import (
    IMAGE_ANSWER_LIMIT,
    edit_fields,
    generation_body,
    parse_images,
    sniff_image,
)

logger = logging.getLogger(__name__)


class OpenAICompatProvider(Provider):
    """One OpenAI-compatible endpoint, reached over a shared ``aiohttp.ClientSession``."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self._http = ProviderHTTP(config, session)
        self._base_url = config.base_url.rstrip("/")
        self._max_tokens = config.max_tokens
        self._include_usage = config.include_usage
        stream_extra = {"Reduce-Stream": "true"} if config.reduce_stream else {}
        self._stream_headers = request_headers(
            config, "text/event-stream", {**bearer(config), **stream_extra}
        )
        self._json_headers = request_headers(config, "application/json", bearer(config))

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer to ``request``; ends with one ``StreamEnd`` or raises."""
        url = f"{self._base_url}/chat/completions"
        logger.debug("%s: POST %s model=%s", self.name, url, request.model)
        parser = OpenAIStreamParser(provider=self.name, secrets=self._http.secrets)
        # ProviderHTTP's stream itself, not a generator around it: one layer less per event.
        return self._http.stream(
            url,
            self._chat_body(request),
            self._stream_headers,
            parser=parser,
            whole=parse_completion,
        )

    def stream_completion(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Stream a legacy completion of ``request.prompt``; events as ``stream_chat``'s."""
        url = f"{self._base_url}/completions"
        logger.debug("%s: POST %s model=%s", self.name, url, request.model)
        body: dict[str, object] = {
            "model": request.model,
            "prompt": request.prompt,
            "stream": True,
            "max_tokens": request.max_tokens or self._max_tokens or DEFAULT_COMPLETION_MAX_TOKENS,
        }
        if self._include_usage:
            body["stream_options"] = {"include_usage": True}
        if request.user is not None:
            body["user"] = request.user
        if request.temperature is not None:
            body["temperature"] = request.temperature
        parser = OpenAIStreamParser(provider=self.name, secrets=self._http.secrets)
        return self._http.stream(
            url, body, self._stream_headers, parser=parser, whole=parse_completion
        )

    async def edit_text(self, request: EditRequest) -> str:
        """``POST {base_url}/edits``: ``request.input`` rewritten as the instruction says."""
        url = f"{self._base_url}/edits"
        logger.debug("%s: POST %s model=%s", self.name, url, request.model)
        body: dict[str, object] = {
            "model": request.model,
            "input": request.input,
            "instruction": request.instruction,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        http = self._http
        deadlines = http.deadlines()
        response = await http.post(url, body, self._json_headers, deadlines)
        async with response:
            await http.check(response, deadlines)
            answer = await http.read_json(response, deadlines.next_at)
        return parse_edit(answer, status=response.status, provider=self.name, secrets=http.secrets)

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base_url}/models``; an empty list when the provider has no such endpoint."""
        body = await self._http.get_json(f"{self._base_url}/models", self._json_headers)
        return [] if body is None else parse_models(body)

    async def generate_images(self, request: ImageRequest) -> list[GeneratedImage]:
        """``POST {base_url}/images/generations``; images as bytes (base64) or URLs."""
        url = f"{self._base_url}/images/generations"
        logger.debug("%s: POST %s model=%s n=%d", self.name, url, request.model, request.n)
        status, answer = await self._http.post_whole(
            url, self._json_headers, body=generation_body(request), limit=IMAGE_ANSWER_LIMIT
        )
        return parse_images(answer, status=status, provider=self.name, secrets=self._http.secrets)

    async def edit_image(self, request: ImageEditRequest) -> list[GeneratedImage]:
        """``POST {base_url}/images/edits`` as multipart: the image file and the text fields."""
        url = f"{self._base_url}/images/edits"
        logger.debug("%s: POST %s model=%s", self.name, url, request.model)
        # A FormData can be sent once only, and the service may call again: built per call.
        form = aiohttp.FormData()
        form.add_field(
            "image",
            request.image,
            filename=request.filename,
            content_type=mimetypes.guess_type(request.filename)[0] or sniff_image(request.image)[0],
        )
        if request.mask is not None:
            form.add_field("mask", request.mask, filename="mask.png", content_type="image/png")
        for name, value in edit_fields(request).items():
            form.add_field(name, value)
        status, answer = await self._http.post_whole(
            url, self._json_headers, form=form, limit=IMAGE_ANSWER_LIMIT
        )
        return parse_images(answer, status=status, provider=self.name, secrets=self._http.secrets)

    def _chat_body(self, request: ChatRequest) -> dict[str, object]:
        body: dict[str, object] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
        }
        if self._include_usage:
            body["stream_options"] = {"include_usage": True}
        if request.user is not None:
            body["user"] = request.user
        max_tokens = request.max_tokens if request.max_tokens is not None else self._max_tokens
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body


def _message(message: ChatMessage) -> dict[str, object]:
    """One message of the body; a message with images carries them as content parts."""
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, object]] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in message.images]
    return {"role": message.role, "content": parts}
