"""HTTP plumbing every adapter shares: one exchange's deadlines, bodies, translated failures.

An adapter builds its request and parses its provider's events; ``ProviderHTTP`` sends the
request and reads the answer, so the rules below hold for every provider kind. Foreign
errors are translated here, once, with ``from exc``:

* connect, first-chunk, idle and total timeouts: ``ProviderTimeout``, or ``StreamCut`` once
  the parser emitted part of the answer;
* connection failures before the answer: ``Unavailable``; lost mid-stream: ``StreamCut``;
* non-2xx responses and HTML pages: ``classify_error``, with ``Retry-After`` read;
* once the parser says the answer is finished (a finish or stop reason was seen), a body
  that then ends, breaks or goes quiet ends the stream normally: ``parser.close()`` decides.

aiohttp enforces only the connect timeout; the other deadlines are phases of our own, so the
time the consumer spends between two events never counts as the provider's silence.

A streamed body is read in batches, each when its text can next be shown
(``bot.providers.read_pace``), and the deltas of one batch reach the adapter's caller
joined (``bot.providers.coalesce``), for every provider kind.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Protocol

import aiohttp
from multidict import CIMultiDict

from bot import fast_json
from bot.config import ProviderConfig, TimeoutConfig
from bot.errors import ProviderError, ProviderTimeout, StreamCut, Unavailable
from bot.providers import held_reads, read_pace
from bot.providers.base import StreamEvent
from bot.providers.classify import classify_error, is_error_body, parse_retry_after
from bot.providers.coalesce import coalesce
from bot.providers.decoders import SSEDecoder, SSEMessage

logger = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 64 * 1024
"""Bytes of an error response read for classification; the rest is not worth waiting for."""

JSON_BODY_LIMIT = 16 * 1024 * 1024
"""Bytes of a non-streamed answer or model list; a body beyond this is not a sane answer."""

JSON_TYPES = frozenset({"application/json", "text/json"})
"""Content types of a JSON body: an error, or a whole answer where a stream was asked for."""


WholeAnswerParser = Callable[..., list[StreamEvent]]
"""Turns a whole (non-streamed) JSON answer into events: ``(body, *, status, provider,
secrets)``."""


def media_type(headers: Mapping[str, str]) -> str:
    """A response's media type, lowercased, without parameters; "" when it names none.

    aiohttp's ``content_type`` parses the header with the ``email`` package: some 250
    calls, as many as a few dozen streamed chunks cost.
    """
    return headers.get("Content-Type", "").partition(";")[0].strip().lower()


def request_headers(
    config: ProviderConfig, accept: str, ours: Mapping[str, str] | None = None
) -> CIMultiDict[str]:
    """``Accept`` and our headers (auth among them), then the configured ones, which replace
    ours whatever their case."""
    headers = CIMultiDict({"Accept": accept})
    headers.update(ours or {})
    headers.update(config.headers)
    return headers


def bearer(config: ProviderConfig) -> dict[str, str]:
    """The ``Authorization: Bearer`` header for the configured key, if there is one."""
    return {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}


class MessageDecoder(Protocol):
    """What ``ProviderHTTP.stream`` needs of a pure, incremental framing decoder."""

    def feed(self, data: bytes) -> list[SSEMessage]:
        """Decode ``data`` and return the messages it completed."""

    def flush(self) -> list[SSEMessage]:
        """The body ended: return what an unterminated last line holds."""


class StreamParser(Protocol):
    """What ``ProviderHTTP.stream`` needs of a pure, incremental stream parser."""

    @property
    def done(self) -> bool:
        """The provider said the stream is over; nothing more is read."""

    @property
    def finished(self) -> bool:
        """The answer is complete; a body that ends or breaks now is a normal end."""

    @property
    def started(self) -> bool:
        """Part of the answer was emitted; a failure now leaves it partial."""

    def feed_message(self, message: SSEMessage) -> list[StreamEvent]:
        """Parse one server-sent event; raise the classified error for an error event."""

    def close(self) -> list[StreamEvent]:
        """The body ended: the closing events, or ``StreamCut`` if the answer was not done."""


def parse_batch(
    parser: StreamParser, messages: list[SSEMessage]
) -> tuple[list[StreamEvent], ProviderError | None]:
    """The events ``parser`` makes of the messages of one read, deltas joined (``coalesce``).

    An error the parser raises is returned beside the events before it, so the caller can
    pass those on first: they are part of the answer, and the error comes after them.
    """
    events: list[StreamEvent] = []
    try:
        for message in messages:
            events += parser.feed_message(message)
    except ProviderError as exc:
        return coalesce(events), exc
    return coalesce(events), None


class Deadlines:
    """The deadlines of one exchange, on the event loop's clock.

    The first bytes are due ``first_chunk`` seconds after the request, each later read
    ``idle`` seconds after the one before, and everything ``total`` seconds after the request.
    """

    __slots__ = ("_loop", "_timeouts", "end_at", "next_at", "receiving", "started_at")

    def __init__(self, timeouts: TimeoutConfig) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeouts = timeouts
        self.started_at = self._loop.time()
        self.end_at = self.started_at + timeouts.total
        self.next_at = min(self.started_at + timeouts.first_chunk, self.end_at)
        """When the next bytes are due."""
        self.receiving = False
        """True once bytes of the body arrived: ``next_at`` is an idle deadline now."""

    def received(self) -> None:
        """Bytes arrived: the next ones are due within the idle timeout."""
        self.receiving = True
        self.next_at = self.idle_at()

    def idle_at(self) -> float:
        """An idle timeout from now, within the total."""
        return min(self._loop.time() + self._timeouts.idle, self.end_at)

    def phase(self) -> str:
        """The name of the timeout that ``next_at`` stands for."""
        if self.next_at >= self.end_at:
            return "total"
        return "idle" if self.receiving else "first_chunk"

    def elapsed(self) -> float:
        """Seconds since the request was started."""
        return self._loop.time() - self.started_at


class ProviderHTTP:
    """One provider's exchanges over the shared session, with its timeouts and secrets."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self.timeouts = config.timeouts
        self.secrets: tuple[str, ...] = (config.api_key,) if config.api_key else ()
        """Blanked out of every error detail."""
        self._session = session
        # Only the socket connect is timed by aiohttp: a wait for a pooled connection is
        # not the provider's slowness, and our own first-chunk deadline bounds it anyway.
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.timeouts.connect
        )

    def deadlines(self) -> Deadlines:
        """The deadlines of an exchange starting now."""
        return Deadlines(self.timeouts)

    async def post(
        self,
        url: str,
        body: object,
        headers: Mapping[str, str],
        deadlines: Deadlines,
    ) -> aiohttp.ClientResponse:
        """POST ``body`` as JSON and wait for the response headers until ``deadlines.next_at``."""
        return await self._send(self._post_json(url, body, headers), deadlines)

    async def stream(
        self,
        url: str,
        body: object,
        headers: Mapping[str, str],
        *,
        parser: StreamParser,
        whole: WholeAnswerParser | None,
        always_whole: bool = False,
        decoder: MessageDecoder | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """POST ``body`` and yield the answer's events.

        A JSON response (or any, when ``always_whole``) is a whole answer for ``whole``: an
        error body, or a provider that ignores ``stream``. Without ``whole`` the body is
        always read as a stream, whatever its content type claims: ``decoder`` cuts it into
        messages (server-sent events unless told otherwise) and ``parser`` makes the events
        of each read at once (``parse_batch``).
        """
        deadlines = self.deadlines()
        response = await self.post(url, body, headers, deadlines)
        async with response:
            await self.check(response, deadlines)
            if whole is not None and (always_whole or media_type(response.headers) in JSON_TYPES):
                answer = await self.read_json(response, deadlines.next_at)
                for event in whole(
                    answer, status=response.status, provider=self.name, secrets=self.secrets
                ):
                    yield event
                return
            # The read loop lives here rather than in a generator of its own: every event
            # passes each generator layer between here and the chat, so each layer counts.
            decoder = SSEDecoder() if decoder is None else decoder
            reader = response.content
            while True:
                data = await self._read_chunk(reader, parser, deadlines)
                if data:
                    deadlines.received()
                    messages = decoder.feed(data)
                else:
                    messages = decoder.flush()
                events, error = parse_batch(parser, messages)
                for event in events:
                    yield event
                if error is not None:
                    raise error
                if not data or parser.done:
                    break
                if parser.started:
                    await self._gather(response, deadlines)
            for event in parser.close():
                yield event
            logger.debug("%s: stream ended after %.2fs", self.name, deadlines.elapsed())

    async def get_json(self, url: str, headers: Mapping[str, str]) -> object | None:
        """GET ``url`` and parse its JSON body.

        None when the provider has no such endpoint (404, 405) or answers something that is
        not JSON, such as a web page served for every path; an error body raises.
        """
        deadlines = self.deadlines()
        response = await self._send(
            self._session.get(url, headers=headers, timeout=self._client_timeout), deadlines
        )
        async with response:
            if response.status in (404, 405):
                return None
            if response.status >= 300:
                raise await self.error(response, deadlines.next_at)
            raw = await self.read_body(response, JSON_BODY_LIMIT, deadlines.next_at)
        try:
            body: object = json.loads(raw)
        except ValueError:
            return None
        if is_error_body(body):
            raise classify_error(response.status, body, provider=self.name, secrets=self.secrets)
        return body

    async def post_whole(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        body: object = None,
        form: aiohttp.FormData | None = None,
        limit: int = JSON_BODY_LIMIT,
    ) -> tuple[int, object]:
        """POST ``body`` as JSON (or ``form`` as multipart) and return the status and the
        parsed JSON answer, at most ``limit`` bytes of it; failures raise classified."""
        deadlines = self.deadlines()
        request: Awaitable[aiohttp.ClientResponse]
        if form is not None:
            request = self._session.post(
                url, data=form, headers=headers, timeout=self._client_timeout
            )
        else:
            request = self._post_json(url, body, headers)
        response = await self._send(request, deadlines)
        async with response:
            await self.check(response, deadlines)
            deadlines.received()
            raw = await self.read_body(response, limit, deadlines.next_at)
        try:
            answer: object = json.loads(raw)
        except ValueError as exc:
            raise classify_error(
                response.status, raw, provider=self.name, secrets=self.secrets
            ) from exc
        return response.status, answer

    async def check(self, response: aiohttp.ClientResponse, deadlines: Deadlines) -> None:
        """Raise the classified error of a response that cannot hold an answer.

        That is a non-2xx status, or an HTML page (a login wall, a proxy's error page) in
        place of the event stream.
        """
        kind = media_type(response.headers)
        logger.debug(
            "%s: HTTP %d %s after %.2fs", self.name, response.status, kind, deadlines.elapsed()
        )
        if response.status >= 300:
            raise await self.error(response, deadlines.idle_at())
        if kind == "text/html":
            page = await self.read_body(response, ERROR_BODY_LIMIT, deadlines.next_at)
            raise classify_error(response.status, page, provider=self.name, secrets=self.secrets)

    async def read_body(
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
            raise ProviderTimeout(f"reading the body: {describe(exc)}", provider=self.name) from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(describe(exc), provider=self.name) from exc
        return b"".join(chunks)

    async def read_json(self, response: aiohttp.ClientResponse, deadline: float) -> object:
        """The body parsed as JSON; a body that is not JSON is classified as an error."""
        body = await self.read_body(response, JSON_BODY_LIMIT, deadline)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise classify_error(
                response.status, body, provider=self.name, secrets=self.secrets
            ) from exc

    async def error(self, response: aiohttp.ClientResponse, deadline: float) -> ProviderError:
        """The classified error of a non-2xx response; a body we cannot read is left out."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        try:
            body = await self.read_body(response, ERROR_BODY_LIMIT, deadline)
        except ProviderError:
            body = b""
        error = classify_error(
            response.status,
            body,
            provider=self.name,
            retry_after=retry_after,
            secrets=self.secrets,
        )
        logger.debug(
            "%s: HTTP %d classified as %s: %s", self.name, response.status, error.kind, error.detail
        )
        return error

    def _post_json(
        self, url: str, body: object, headers: Mapping[str, str]
    ) -> Awaitable[aiohttp.ClientResponse]:
        """The POST of ``body`` as JSON, encoded by orjson: a long history encodes in a
        thirtieth of the time aiohttp's ``json=`` takes with ``json.dumps``."""
        return self._session.post(
            url,
            data=fast_json.dumps(body),
            headers={**fast_json.HEADERS, **headers},
            timeout=self._client_timeout,
        )

    async def _send(
        self, request: Awaitable[aiohttp.ClientResponse], deadlines: Deadlines
    ) -> aiohttp.ClientResponse:
        """Send ``request`` and wait for the response headers until ``deadlines.next_at``."""
        try:
            async with asyncio.timeout_at(deadlines.next_at):
                return await request
        except TimeoutError as exc:
            raise self._timeout(exc, deadlines.phase(), partial=False) from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(describe(exc), provider=self.name) from exc

    async def _gather(self, response: aiohttp.ClientResponse, deadlines: Deadlines) -> None:
        """Let the next pieces of the answer collect in the socket until they are wanted.

        The connection is not read meanwhile, so that time is not the provider's silence:
        the next read's deadline moves on by as much. The socket's receive low-water mark
        is raised rather than reading paused where the socket allows it: uvloop leaves a
        paused socket watched until its next byte, so each pause would cost a wake-up more.
        """
        connection = response.connection
        transport = connection.transport if connection is not None else None
        if transport is None or transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        paused_at = loop.time()
        held = held_reads.hold(transport)
        try:
            await asyncio.sleep(read_pace.next_hold())
        finally:
            held.release()
        deadlines.next_at = min(deadlines.next_at + loop.time() - paused_at, deadlines.end_at)

    async def _read_chunk(
        self, reader: aiohttp.StreamReader, parser: StreamParser, deadlines: Deadlines
    ) -> bytes:
        """The next bytes of the event stream, b"" at its end.

        Once the parser has the whole answer, a timeout or a broken connection counts as the
        end of the body rather than a failure.
        """
        try:
            async with asyncio.timeout_at(deadlines.next_at):
                return await reader.readany()
        except TimeoutError as exc:
            if parser.finished:
                return b""
            raise self._timeout(exc, deadlines.phase(), partial=parser.started) from exc
        except aiohttp.ClientError as exc:
            if parser.finished:
                return b""
            raise StreamCut(describe(exc), provider=self.name) from exc

    def _timeout(self, exc: TimeoutError, phase: str, *, partial: bool) -> ProviderError:
        """The error for a missed deadline: which one, and whether the answer is partial."""
        if isinstance(exc, aiohttp.ServerTimeoutError):
            phase = "connect"
        seconds = getattr(self.timeouts, phase)
        what = f"{phase} timeout ({seconds:g}s) exceeded"
        return (StreamCut if partial else ProviderTimeout)(what, provider=self.name)


class Refused:
    """A stream that raises ``error`` when read, then ends.

    An adapter that refuses a request before sending it returns one, so the refusal comes
    where a failure of the sent request would, inside the caller's loop over the events.
    """

    __slots__ = ("_error",)

    def __init__(self, error: ProviderError) -> None:
        self._error: ProviderError | None = error

    def __aiter__(self) -> Refused:
        return self

    async def __anext__(self) -> StreamEvent:
        error, self._error = self._error, None
        if error is None:
            raise StopAsyncIteration
        raise error


def describe(exc: BaseException) -> str:
    """A short description of a foreign exception for ``detail``; never carries headers."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
