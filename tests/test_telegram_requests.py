"""Every Bot API call is counted by method and outcome, failures to connect included;
JSON goes both ways as PTB's own transport would send and read it."""

from __future__ import annotations

import datetime as dtm
import json

import pytest
from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, MessageEntity
from telegram._utils.types import JSONDict
from telegram.constants import ChatAction, ParseMode
from telegram.error import NetworkError, TelegramError
from telegram.request import BaseRequest, RequestData
from telegram.request._requestparameter import RequestParameter

from bot import fast_json
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


# Each as PTB's own parser reads it: the Bot API's answers, then what orjson refuses.
PAYLOADS = [
    b'{"ok": true, "result": {"id": 7000000001, "first_name": "\xe5\xb0\x8f\xe6\x98\x8e"}}',
    '{"ok": true, "result": [{"text": "你好 🙂 Ünïcödé"}]}'.encode(),
    b'{"ok": true, "result": "\\u4f60\\u597d \\ud83d\\ude42"}',
    b'{"ok": true, "result": {"chat_id": -1001234567890, "size": 4503599627370496}}',
    b'{"big": [9223372036854775807, -9223372036854775808, 18446744073709551615]}',
    b'{"ok": true, "result": {"latitude": 52.520008, "longitude": 13.404954}}',
    b'{"ok": false, "error_code": 429, "parameters": {"retry_after": 3}}',
    b'{"invalid utf-8": "\xff\xfe"}',
    b'{"lone surrogate": "\\ud800"}',
    b'{"not a number": NaN, "infinite": -Infinity}',
    b"[1, 2, 3]",
    b'{"beyond 64 bits": 1180591620717411303424}',
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_answers_parse_exactly_as_with_ptbs_own_parser(payload):
    ours = CountingRequest.parse_json_payload(payload)
    # repr, not ==: an integer read as a float, or NaN, would compare equal or never.
    assert repr(ours) == repr(BaseRequest.parse_json_payload(payload))


def test_integers_of_64_bits_stay_integers():
    parsed = CountingRequest.parse_json_payload(PAYLOADS[4])
    assert parsed == {"big": [2**63 - 1, -(2**63), 2**64 - 1]}
    assert all(type(n) is int for n in parsed["big"])


@pytest.mark.parametrize("payload", [b"", b"not json", b'{"ok": true', b"<html>502</html>"])
def test_invalid_json_raises_the_telegram_error_ptb_raises(payload, caplog):
    with pytest.raises(TelegramError) as ptbs:
        BaseRequest.parse_json_payload(payload)
    with pytest.raises(TelegramError) as ours:
        CountingRequest.parse_json_payload(payload)
    assert type(ours.value) is type(ptbs.value) is TelegramError
    assert ours.value.message == ptbs.value.message == "Invalid server response"
    assert "Can not load invalid JSON data" in caplog.text


async def test_an_invalid_answer_fails_the_bot_api_call_with_ptbs_error(caplog):
    async def not_json(_request: web.Request) -> web.Response:
        return web.Response(body=b"<html>Bad Gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/bot1:x/getMe", not_json)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    request = CountingRequest(Metrics(), connection_pool_size=1)
    await request.initialize()
    try:
        with pytest.raises(TelegramError, match="Invalid server response"):
            await request.post(f"http://127.0.0.1:{port}/bot1:x/getMe")
    finally:
        await request.shutdown()
        await runner.cleanup()
    assert "<html>Bad Gateway</html>" in caplog.text


def _parameters(**values: object) -> JSONDict:
    """What PTB hands the transport for a call with these arguments."""
    data = RequestData([RequestParameter.from_input(name, v) for name, v in values.items()])
    return data.parameters


@pytest.mark.parametrize(
    "parameters",
    [
        _parameters(
            chat_id=-1001234567890,
            text='你好 🙂 <b>"quoted"</b>\n\ttabs \\ backslash \u2028',
            parse_mode=ParseMode.HTML,
            entities=[
                MessageEntity(MessageEntity.BOLD, 0, 2),
                MessageEntity("pre", 3, 4, language="py"),
            ],
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("停止", callback_data="stop:7")]]
            ),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            disable_notification=False,
            message_thread_id=None,
        ),
        _parameters(chat_id=7, action=ChatAction.TYPING),
        _parameters(chat_id=7, until_date=dtm.datetime(2030, 1, 1, tzinfo=dtm.UTC), rate=0.5),
        _parameters(allowed_updates=("message", "callback_query"), offset=2**62, timeout=5),
        _parameters(chat_id=2**70),
    ],
)
def test_request_bodies_carry_what_ptbs_json_would(parameters):
    body = fast_json.dumps(parameters)
    assert json.loads(body) == json.loads(json.dumps(parameters))
