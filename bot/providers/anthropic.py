"""The adapter for Anthropic's native Messages API: Anthropic itself, or a reseller's copy.

OhMyGPT (seed 004) lists "Anthropic 原生 Messages API" beside its OpenAI-compatible chat but
documents neither its path nor its headers, so this follows Anthropic's own API, which such
gateways mirror: ``POST {base_url}/messages`` with ``base_url`` up to and including ``/v1``,
headers ``x-api-key`` and ``anthropic-version: 2023-06-01``. A gateway that wants another
header (``Authorization: Bearer ...``) gets it from the provider's ``headers`` option, which
replaces ours whatever its case.

The request: system messages joined into the top-level ``system``; user and assistant turns
in ``messages``, consecutive turns of one role merged (the API wants them alternating) and
empty ones left out; ``max_tokens`` from the request, else the provider's ``max_tokens``,
else ``DEFAULT_MAX_TOKENS`` (the API requires it); the ``user`` tag as
``metadata.user_id``. A message with images becomes content blocks: an ``image`` block per
image (a ``base64`` source for a data URL, a ``url`` source otherwise), then its text. The
kind generates no images: ``generate_images`` and ``edit_image`` raise ``Unsupported``.
The answer goes through ``SSEDecoder`` and ``AnthropicStreamParser``;
timeouts, cut streams and error responses follow the same rules as every adapter
(``bot.providers.http``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from multidict import CIMultiDict

from bot.config import ProviderConfig
from bot.providers.anthropic_decoder import AnthropicStreamParser, parse_message
from bot.providers.base import ChatMessage, ChatRequest, ModelInfo, Provider, StreamEvent
from bot.providers.decoders import parse_models
from bot.providers.http import ProviderHTTP, request_headers
from bot.providers.images import split_data_url

logger = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header: the API version whose shapes the parser reads."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` when neither the request nor the provider's configuration sets one."""

MODELS_PAGE_LIMIT = 1000
"""The largest page ``GET /models`` serves; one page is every model there is."""

_TURN_SEPARATOR = "\n\n"


class AnthropicProvider(Provider):
    """One Anthropic Messages endpoint, reached over a shared ``aiohttp.ClientSession``."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self._http = ProviderHTTP(config, session)
        self._base_url = config.base_url.rstrip("/")
        self._max_tokens = config.max_tokens or DEFAULT_MAX_TOKENS
        self._stream_headers = _headers(config, "text/event-stream")
        self._json_headers = _headers(config, "application/json")

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer to ``request``; ends with one ``StreamEnd`` or raises."""
        url = f"{self._base_url}/messages"
        logger.debug("%s: POST %s model=%s", self.name, url, request.model)
        body = messages_body(request, default_max_tokens=self._max_tokens)
        parser = AnthropicStreamParser(provider=self.name, secrets=self._http.secrets)
        return self._http.stream(
            url, body, self._stream_headers, parser=parser, whole=parse_message
        )

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base_url}/models``; an empty list when the provider has no such endpoint."""
        url = f"{self._base_url}/models?limit={MODELS_PAGE_LIMIT}"
        body = await self._http.get_json(url, self._json_headers)
        return [] if body is None else parse_models(body)


def messages_body(request: ChatRequest, *, default_max_tokens: int) -> dict[str, object]:
    """The JSON body of ``POST /messages`` for ``request``, streamed."""
    system = _TURN_SEPARATOR.join(
        m.content for m in request.messages if m.role == "system" and m.content
    )
    body: dict[str, object] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else default_max_tokens,
        "messages": _turns(request.messages),
        "stream": True,
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    return body


def _turns(messages: tuple[ChatMessage, ...]) -> list[dict[str, object]]:
    """User and assistant messages, consecutive ones of one role merged, empty ones left out."""
    turns: list[dict[str, object]] = []
    for message in messages:
        if message.role == "system" or not (message.content or message.images):
            continue
        content = _content(message)
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] = _merged(turns[-1]["content"], content)
        else:
            turns.append({"role": message.role, "content": content})
    return turns


def _content(message: ChatMessage) -> str | list[dict[str, object]]:
    """The text, or content blocks when the message has images (images first, as advised)."""
    if not message.images:
        return message.content
    blocks = [_image_block(url) for url in message.images]
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    return blocks


def _image_block(url: str) -> dict[str, object]:
    """An image block: a base64 source for a data URL, a URL source otherwise."""
    parts = split_data_url(url)
    if parts is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = parts
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _merged(first: object, second: object) -> object:
    """Two turns of one role as one: texts joined, or their blocks one after the other."""
    if isinstance(first, str) and isinstance(second, str):
        return first + _TURN_SEPARATOR + second
    return _blocks(first) + _blocks(second)


def _blocks(content: object) -> list[object]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def _headers(config: ProviderConfig, accept: str) -> CIMultiDict[str]:
    """Anthropic's version header and key, then the configured headers."""
    ours = {"anthropic-version": ANTHROPIC_VERSION}
    if config.api_key:
        ours["x-api-key"] = config.api_key
    return request_headers(config, accept, ours)
