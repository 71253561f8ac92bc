"""The HTTP layer under python-telegram-bot: aiohttp, counting every Bot API call for /metrics.

PTB's default HTTPX transport costs about a millisecond of CPU a call (httpcore and anyio
in pure Python, its pool scanned at every request); aiohttp parses in C, and the bot
already depends on it for the providers. Timeouts keep PTB's meaning and defaults.
JSON goes through orjson both ways: a getUpdates answer parses in less than half the time.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import cast

import aiohttp
from telegram._utils.defaultvalue import DEFAULT_NONE, DefaultValue
from telegram._utils.types import JSONDict, ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot import fast_json
from bot.metrics import Metrics

# PTB's defaults for its own transport, in seconds.
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
POOL_TIMEOUT = 1.0
MEDIA_WRITE_TIMEOUT = 20.0


def call_outcome(status: int) -> str:
    """How a Bot API answer counts: ok, retry_after (429) or error."""
    if status == HTTPStatus.OK:
        return "ok"
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return "retry_after"
    return "error"


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _sum(*seconds: float | None) -> float | None:
    """The seconds together; None (no limit) if any of them is unlimited."""
    return None if any(s is None for s in seconds) else sum(s for s in seconds if s is not None)


class CountingRequest(BaseRequest):
    """Bot API calls over one aiohttp session with at most ``connection_pool_size``
    connections, each counted by method and outcome for /metrics.

    Counting here rather than at each caller sees every call (getUpdates, chat actions,
    callback answers) once, retries included. The connect timeout bounds opening a
    connection, the pool timeout waiting for a free one, the read timeout each wait for
    the answer's bytes; aiohttp has no write timeout, so the write timeout (the media one
    for uploads) extends the first read's instead.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        connection_pool_size: int,
        read_timeout: float | None = READ_TIMEOUT,
        write_timeout: float | None = WRITE_TIMEOUT,
        connect_timeout: float | None = CONNECT_TIMEOUT,
        pool_timeout: float | None = POOL_TIMEOUT,
        media_write_timeout: float | None = MEDIA_WRITE_TIMEOUT,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._metrics = metrics

    @staticmethod
    def parse_json_payload(payload: bytes) -> JSONDict:
        """Parse an answer of the Bot API; TelegramError("Invalid server response") if invalid.

        orjson reads what the Bot API sends (``bot.fast_json``); what it would read
        differently goes to PTB's parser, which accepts some and fails as PTB does.
        """
        parsed = fast_json.loads(payload, lambda: BaseRequest.parse_json_payload(payload))
        return cast(JSONDict, parsed)

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB adds it to getUpdates' long-poll timeout)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session (again, after a shutdown)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(  # noqa: PLR0917 - the signature PTB calls
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = DEFAULT_NONE,
        write_timeout: ODVInput[float] = DEFAULT_NONE,
        connect_timeout: ODVInput[float] = DEFAULT_NONE,
        pool_timeout: ODVInput[float] = DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send the request and count it; return the status and the body.

        Failures raise PTB's errors.
        """
        endpoint = url.rsplit("/", 1)[-1]
        try:
            status, payload = await self._send(
                url,
                method,
                request_data,
                read_timeout,
                write_timeout,
                connect_timeout,
                pool_timeout,
            )
        except NetworkError:
            self._metrics.telegram_calls.labels(endpoint, "network_error").inc()
            raise
        outcome = call_outcome(status)
        self._metrics.telegram_calls.labels(endpoint, outcome).inc()
        if outcome == "retry_after":
            self._metrics.telegram_retry_afters.inc()
        return status, payload

    async def _send(  # noqa: PLR0917 - do_request's arguments
        self,
        url: str,
        method: str,
        request_data: RequestData | None,
        read_timeout: ODVInput[float],
        write_timeout: ODVInput[float],
        connect_timeout: ODVInput[float],
        pool_timeout: ODVInput[float],
    ) -> tuple[int, bytes]:
        await self.initialize()
        assert self._session is not None
        files = request_data.multipart_data if request_data and request_data.contains_files else {}
        data: aiohttp.FormData | bytes | None = None
        headers = None
        if files:
            assert request_data is not None
            data = aiohttp.FormData(request_data.json_parameters)
            for name, (filename, content, mime_type) in files.items():
                data.add_field(name, content, filename=filename, content_type=mime_type)
        elif request_data is not None and request_data.parameters:
            # A JSON body, which the Bot API takes for every method without files: encoded
            # in C, where a form would percent-encode each character in Python.
            data = fast_json.dumps(request_data.parameters)
            headers = fast_json.HEADERS
        connect = _given(connect_timeout, self._connect_timeout)
        write = _given(write_timeout, self._media_write_timeout if files else self._write_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=_sum(_given(pool_timeout, self._pool_timeout), connect),
            sock_connect=connect,
            # aiohttp starts the read clock when the request starts, body still unsent.
            sock_read=_sum(_given(read_timeout, self._read_timeout), write),
        )
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
