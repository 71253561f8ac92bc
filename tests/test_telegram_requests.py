"""Every Bot API call is counted by method and outcome, failures to connect included."""

from __future__ import annotations

import pytest
from telegram.error import NetworkError

from bot.metrics import Metrics
from bot.telegram_requests import CountingRequest, call_outcome
from tests.e2e import free_port, metric_samples


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, "ok"), (429, "retry_after"), (400, "error"), (502, "error")]
)
def test_an_answer_counts_by_its_status(status, outcome):
    assert call_outcome(status) == outcome


async def test_a_call_that_cannot_connect_counts_as_a_network_error():
    metrics = Metrics()
    request = CountingRequest(metrics, connection_pool_size=1, read_timeout=1.0)
    await request.initialize()
    try:
        with pytest.raises(NetworkError):
            await request.do_request(f"http://127.0.0.1:{free_port()}/bot1:x/getMe", "POST")
    finally:
        await request.shutdown()
    samples = metric_samples(metrics.exposition().decode())
    assert samples['bot_telegram_calls_total{method="getMe",outcome="network_error"}'] == 1.0
    assert samples["bot_telegram_retry_afters_total"] == 0.0


async def test_a_429_counts_as_retry_after(telegram):
    telegram.inject_retry_after("getMe", 3)
    metrics = Metrics()
    request = CountingRequest(metrics, connection_pool_size=1)
    await request.initialize()
    try:
        status, _payload = await request.do_request(
            f"{telegram.base_url}{telegram.token}/getMe", "POST"
        )
        assert status == 429
        status, _payload = await request.do_request(
            f"{telegram.base_url}{telegram.token}/getMe", "POST"
        )
        assert status == 200
    finally:
        await request.shutdown()
    samples = metric_samples(metrics.exposition().decode())
    assert samples['bot_telegram_calls_total{method="getMe",outcome="retry_after"}'] == 1.0
    assert samples['bot_telegram_calls_total{method="getMe",outcome="ok"}'] == 1.0
    assert samples["bot_telegram_retry_afters_total"] == 1.0
