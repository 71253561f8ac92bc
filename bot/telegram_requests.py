"""The HTTP layer under python-telegram-bot, counting every Bot API call for /metrics."""

from __future__ import annotations

from http import HTTPStatus

from telegram._utils.defaultvalue import DEFAULT_NONE
from telegram._utils.types import ODVInput
from telegram.error import NetworkError
from telegram.request import HTTPXRequest, RequestData

from bot.metrics import Metrics


def call_outcome(status: int) -> str:
    """How a Bot API answer counts: ok, retry_after (429) or error."""
    if status == HTTPStatus.OK:
        return "ok"
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return "retry_after"
    return "error"


class CountingRequest(HTTPXRequest):
    """PTB's default HTTPX transport, with each call counted by method and outcome.

    Counting here rather than at each caller sees every call (getUpdates, chat actions,
    callback answers) once, retries included.
    """

    def __init__(
        self, metrics: Metrics, *, connection_pool_size: int, read_timeout: float | None = 5.0
    ) -> None:
        super().__init__(connection_pool_size=connection_pool_size, read_timeout=read_timeout)
        self._metrics = metrics

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
        """Send the request, then count it."""
        endpoint = url.rsplit("/", 1)[-1]
        try:
            status, payload = await super().do_request(
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
