"""The adapter for OpenAI-compatible chat APIs: OpenAI itself and the resellers in the seeds.

One request becomes one ``POST {base_url}/chat/completions`` with ``stream: true``; the body
goes through ``SSEDecoder`` and ``OpenAIStreamParser``. Foreign errors are translated here,
once, with ``from exc``:

* connect, first-chunk, idle and total timeouts: ``ProviderTimeout``, or ``StreamCut`` once
  text was yielded (the answer is partial);
* connection failures before the answer: ``Unavailable``; lost mid-stream: ``StreamCut``;
* non-2xx, and error bodies in a 200: ``classify_error``.

Once a finish reason was seen the answer is complete: a body that then ends, breaks or goes
quiet without ``[DONE]`` still ends normally with exactly one ``StreamEnd``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable

import aiohttp
from multidict import CIMultiDict

from bot.config import ProviderConfig
from bot.errors import ProviderError, ProviderTimeout, StreamCut, Unavailable
from bot.providers.base import ChatRequest, ModelInfo, Provider, StreamEvent
from bot.providers.classify import classify_error, is_error_body, parse_retry_after
from bot.providers.decoders import OpenAIStreamParser, SSEDecoder, parse_completion

logger = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 64 * 1024
"""Bytes of an error response read for classification; the rest is not worth waiting for."""

JSON_BODY_LIMIT = 16 * 1024 * 1024
"""Bytes of a non-streamed answer or model list; a body beyond this is not a sane answer."""

_JSON_TYPES = frozenset({"application/json", "text/json"})


class OpenAICompatProvider(Provider):
    """One OpenAI-compatible endpoint, reached over a shared ``aiohttp.ClientSession``."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self._session = session
        self._base_url = config.base_url.rstrip("/")
        self._timeouts = config.timeouts
        self._secrets = (config.api_key,) if config.api_key else ()
        self._stream_headers = _headers(config, "text/event-stream")
        self._json_headers = _headers(config, "application/json")
        # aiohttp enforces only the connect timeout; the others are phases of our own below.
        self._client_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=config.timeouts.connect,
            sock_connect=config.timeouts.connect,
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer to ``request``; ends with one ``StreamEnd`` or raises."""
        url = f"{self._base_url}/chat/completions"
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        end_at = started_at + self._timeouts.total
        deadline = min(started_at + self._timeouts.first_chunk, end_at)
        logger.debug("%s: POST %s model=%s", self.name, url, request.model)
        response = await self._send(
            self._session.post(
                url,
                json=_chat_body(request),
                headers=self._stream_headers,
                timeout=self._client_timeout,
            ),
            deadline,
            end_at,
        )
        async with response:
            logger.debug(
                "%s: HTTP %d %s after %.2fs",
                self.name,
                response.status,
                response.content_type,
                loop.time() - started_at,
            )
            answer = await self._answer_without_stream(response, deadline, end_at)
            if answer is not None:
                for event in answer:
                    yield event
                return

            decoder = SSEDecoder()
            parser = OpenAIStreamParser(provider=self.name, secrets=self._secrets)
            reader = response.content
            idle = self._timeouts.idle
            receiving = False
            while True:
                data = await self._read_chunk(reader, parser, deadline, end_at, receiving)
                if data:
                    receiving = True
                    deadline = min(loop.time() + idle, end_at)
                    messages = decoder.feed(data)
                else:
                    messages = decoder.flush()
                for message in messages:
                    if message.event == "error":
                        raise classify_error(
                            None, message.data, provider=self.name, secrets=self._secrets
                        )
                    for event in parser.feed(message.data):
                        yield event
                if not data or parser.done:
                    break
            for event in parser.close():
                yield event
            logger.debug(
                "%s: stream ended (%s) after %.2fs",
                self.name,
                parser.finish_reason or "done",
                loop.time() - started_at,
            )

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base_url}/models``; an empty list when the provider has no such endpoint."""
        url = f"{self._base_url}/models"
        loop = asyncio.get_running_loop()
        end_at = loop.time() + self._timeouts.total
        deadline = min(loop.time() + self._timeouts.first_chunk, end_at)
        response = await self._send(
            self._session.get(url, headers=self._json_headers, timeout=self._client_timeout),
            deadline,
            end_at,
        )
        async with response:
            if response.status in (404, 405):
                return []
            if response.status >= 300:
                raise await self._http_error(response, deadline)
            raw = await self._read_body(response, JSON_BODY_LIMIT, deadline)
        try:
            body = json.loads(raw)
        except ValueError:
            return []  # e.g. a web page served for every unknown path
        if is_error_body(body):
            raise classify_error(response.status, body, provider=self.name, secrets=self._secrets)
        return _models(body)

    async def _send(
        self,
        request: Awaitable[aiohttp.ClientResponse],
        deadline: float,
        end_at: float,
    ) -> aiohttp.ClientResponse:
        """Send ``request`` and wait for the response headers until ``deadline``."""
        try:
            async with asyncio.timeout_at(deadline):
                return await request
        except TimeoutError as exc:
            phase = "total" if deadline >= end_at else "first_chunk"
            raise self._timeout(exc, phase, partial=False) from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(_describe(exc), provider=self.name) from exc

    async def _answer_without_stream(
        self, response: aiohttp.ClientResponse, deadline: float, end_at: float
    ) -> list[StreamEvent] | None:
        """Handle a response that is not an event stream; None when it is one."""
        if response.status >= 300:
            loop = asyncio.get_running_loop()
            raise await self._http_error(response, min(loop.time() + self._timeouts.idle, end_at))
        if response.content_type in _JSON_TYPES:
            # Asked for a stream, got JSON: an error body, or a provider that ignores stream.
            body = await self._read_json(response, deadline)
            return parse_completion(
                body, status=response.status, provider=self.name, secrets=self._secrets
            )
        if response.content_type == "text/html":
            page = await self._read_body(response, ERROR_BODY_LIMIT, deadline)
            raise classify_error(response.status, page, provider=self.name, secrets=self._secrets)
        return None

    async def _read_chunk(
        self,
        reader: aiohttp.StreamReader,
        parser: OpenAIStreamParser,
        deadline: float,
        end_at: float,
        receiving: bool,
    ) -> bytes:
        """The next bytes of the event stream, b"" at its end.

        Once the finish reason was seen the answer is complete, so a timeout or a broken
        connection counts as the end of the body rather than a failure.
        """
        try:
            async with asyncio.timeout_at(deadline):
                return await reader.readany()
        except TimeoutError as exc:
            if parser.finish_reason is not None:
                return b""
            phase = "total" if deadline >= end_at else "idle" if receiving else "first_chunk"
            raise self._timeout(exc, phase, partial=parser.started) from exc
        except aiohttp.ClientError as exc:
            if parser.finish_reason is not None:
                return b""
            raise StreamCut(_describe(exc), provider=self.name) from exc

    async def _read_body(
        self, response: aiohttp.ClientResponse, limit: int, deadline: float
    ) -> bytes:
        """At most ``limit`` bytes of the body, by ``deadline``; translated errors."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout_at(deadline):
                while size < limit:
                    chunk = await response.content.read(limit - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"reading the body: {_describe(exc)}", provider=self.name
            ) from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(_describe(exc), provider=self.name) from exc
        return b"".join(chunks)

    async def _read_json(self, response: aiohttp.ClientResponse, deadline: float) -> object:
        """The body parsed as JSON; a body that is not JSON is classified as an error."""
        body = await self._read_body(response, JSON_BODY_LIMIT, deadline)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise classify_error(
                response.status, body, provider=self.name, secrets=self._secrets
            ) from exc

    async def _http_error(self, response: aiohttp.ClientResponse, deadline: float) -> ProviderError:
        """The classified error of a non-2xx response; a body we cannot read is left out."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        try:
            body = await self._read_body(response, ERROR_BODY_LIMIT, deadline)
        except ProviderError:
            body = b""
        error = classify_error(
            response.status,
            body,
            provider=self.name,
            retry_after=retry_after,
            secrets=self._secrets,
        )
        logger.debug(
            "%s: HTTP %d classified as %s: %s", self.name, response.status, error.kind, error.detail
        )
        return error

    def _timeout(self, exc: TimeoutError, phase: str, *, partial: bool) -> ProviderError:
        """The error for a missed deadline: which one, and whether the answer is partial."""
        if isinstance(exc, aiohttp.ServerTimeoutError):
            phase = "connect"
        seconds = getattr(self._timeouts, phase)
        what = f"{phase} timeout ({seconds:g}s) exceeded"
        return (StreamCut if partial else ProviderTimeout)(what, provider=self.name)


def _headers(config: ProviderConfig, accept: str) -> CIMultiDict[str]:
    """Our headers, then the configured ones, which replace ours whatever their case."""
    headers = CIMultiDict({"Accept": accept})
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(config.headers)
    return headers


def _chat_body(request: ChatRequest) -> dict[str, object]:
    body: dict[str, object] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "stream": True,
    }
    if request.user is not None:
        body["user"] = request.user
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def _models(body: object) -> list[ModelInfo]:
    """Models from ``{"data": [{"id", "owned_by", ...}]}`` (or a bare list); [] otherwise."""
    items = body.get("data") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return []
    models: list[ModelInfo] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        owned_by = item.get("owned_by")
        extra = {k: v for k, v in item.items() if k not in ("id", "owned_by")}
        models.append(
            ModelInfo(
                id=item["id"],
                owned_by=owned_by if isinstance(owned_by, str) else None,
                extra=extra,
            )
        )
    return models


def _describe(exc: BaseException) -> str:
    """A short description of a foreign exception for ``detail``; never carries headers."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
