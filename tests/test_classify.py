"""classify_error against every error body in the seed documents, and bare HTTP statuses."""
# ruff: noqa: E501 - error bodies are copied verbatim from the seed documents

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from bot.errors import (
    AuthError,
    BadRequest,
    ContentRejected,
    ContextTooLong,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    QuotaError,
    RateLimited,
    Unavailable,
)
from bot.providers.classify import MAX_DETAIL_CHARS, classify_error, parse_retry_after
from tests.seeds import SEED_003_BODIES, SEED_BODIES


@pytest.mark.parametrize(("body", "expected"), SEED_BODIES)
@pytest.mark.parametrize("status", [None, 200, 400, 500])
def test_seed_error_body_is_classified_by_its_code_whatever_the_status(
    body: str, expected: type[ProviderError], status: int | None
) -> None:
    error = classify_error(status, body, provider="seed")
    assert type(error) is expected
    assert error.status == status
    assert error.provider == "seed"


@pytest.mark.parametrize(("body", "expected"), SEED_BODIES)
def test_seed_error_body_as_bytes_text_or_parsed_json_gives_the_same_error(
    body: str, expected: type[ProviderError]
) -> None:
    errors = [
        classify_error(200, body),
        classify_error(200, body.encode()),
        classify_error(200, json.loads(body)),
    ]
    assert {type(e) for e in errors} == {expected}
    assert len({e.detail for e in errors}) == 1


@pytest.mark.parametrize(("body", "expected"), SEED_BODIES)
def test_seed_error_detail_is_short_and_names_the_code_and_message(
    body: str, expected: type[ProviderError]
) -> None:
    error = classify_error(200, body)
    assert 0 < len(error.detail) <= MAX_DETAIL_CHARS
    obj = json.loads(body)
    if "codes" in obj:
        assert error.detail.startswith(f"codes={obj['codes']}: {obj['mess'][:10]}")
    else:
        assert str(obj["error"]["type"]) in error.detail
        assert obj["error"]["message"][:20] in error.detail


def test_key_echoed_in_a_message_is_redacted_from_the_detail() -> None:
    body = SEED_003_BODIES[1].values[0]
    error = classify_error(401, body)
    assert "sk-1afsp" not in error.detail
    assert "k5R2" not in error.detail
    assert error.detail.startswith("invalid_request_error/invalid_api_key: Incorrect API key")


def test_given_secrets_and_bearer_tokens_never_reach_the_detail() -> None:
    body = {"error": {"message": "token abc123secret is bad; sent Bearer xyz.789", "type": "x"}}
    error = classify_error(401, body, secrets=("abc123secret",))
    assert "abc123secret" not in error.detail
    assert "xyz.789" not in error.detail
    assert isinstance(error, AuthError)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            401,
            {
                "error": {
                    "message": "Incorrect API key provided: sk-proj-abcdefgh1234.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            AuthError,
            id="invalid_api_key",
        ),
        pytest.param(
            401,
            {
                "error": {
                    "message": "You didn't provide an API key.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            AuthError,
            id="401-beats-generic-type",
        ),
        pytest.param(
            429,
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            QuotaError,
            id="insufficient_quota-is-not-a-rate-limit",
        ),
        pytest.param(
            404,
            {
                "error": {
                    "message": "The model `gpt-9` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
            ModelNotFound,
            id="model_not_found",
        ),
        pytest.param(
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            ContextTooLong,
            id="context_length_exceeded",
        ),
        pytest.param(
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 4097 tokens.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            ContextTooLong,
            id="maximum-context-length-phrase",
        ),
        pytest.param(
            400,
            {
                "error": {
                    "message": "Your request was rejected as a result of our safety system.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "content_policy_violation",
                }
            },
            ContentRejected,
            id="content_policy_violation",
        ),
        pytest.param(
            400,
            {
                "error": {
                    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                    "type": None,
                    "param": "prompt",
                    "code": "content_filter",
                }
            },
            ContentRejected,
            id="content_filter",
        ),
        pytest.param(
            429,
            {
                "error": {
                    "message": "Rate limit reached for gpt-4 in organization org-x on requests per min.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            RateLimited,
            id="rate_limit_exceeded",
        ),
        pytest.param(
            400,
            {
                "error": {
                    "message": "Invalid value for 'temperature'.",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": None,
                }
            },
            BadRequest,
            id="invalid_request_error",
        ),
        pytest.param(
            None,
            {
                "error": {
                    "message": "Invalid value for 'temperature'.",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": None,
                }
            },
            BadRequest,
            id="invalid_request_error-without-status",
        ),
        pytest.param(
            500,
            {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
            Unavailable,
            id="server_error",
        ),
        pytest.param(
            503,
            {"error": {"message": "Overloaded", "type": "overloaded_error"}},
            Unavailable,
            id="overloaded",
        ),
        pytest.param(
            None,
            {"error": {"message": "quota", "code": 429}},
            RateLimited,
            id="numeric-code-as-status-in-a-stream",
        ),
        pytest.param(400, {"error": "model is required"}, BadRequest, id="error-as-a-string"),
        pytest.param(
            403,
            {"message": "forbidden region", "code": 1001},
            AuthError,
            id="one-api-style-message",
        ),
    ],
)
def test_openai_style_error_objects(
    status: int | None, body: object, expected: type[ProviderError]
) -> None:
    assert type(classify_error(status, body)) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BadRequest),
        (401, AuthError),
        (402, QuotaError),
        (403, AuthError),
        (404, ModelNotFound),
        (408, ProviderTimeout),
        (409, BadRequest),
        (413, ContextTooLong),
        (422, BadRequest),
        (429, RateLimited),
        (500, Unavailable),
        (502, Unavailable),
        (503, Unavailable),
        (504, Unavailable),
        (520, Unavailable),
    ],
)
@pytest.mark.parametrize("body", [b"", b"Bad things happened", b"<html>oops</html>", b"{}", b"[]"])
def test_bare_status_classifies_a_body_without_a_known_error(
    status: int, expected: type[ProviderError], body: bytes
) -> None:
    error = classify_error(status, body)
    assert type(error) is expected
    assert error.status == status


def test_html_error_page_detail_is_its_title() -> None:
    page = (
        "<!DOCTYPE html>\n<html><head><title>502: Bad gateway | example.com</title>"
        "<style>body{}</style></head><body>" + "x" * 5000 + "</body></html>"
    )
    error = classify_error(502, page)
    assert isinstance(error, Unavailable)
    assert error.detail == "HTTP 502: 502: Bad gateway | example.com"


def test_long_text_body_detail_is_truncated() -> None:
    error = classify_error(500, "boom " * 1000)
    assert len(error.detail) == MAX_DETAIL_CHARS
    assert error.detail.startswith("HTTP 500: boom boom")
    assert error.detail.endswith("…")


def test_unrecognised_body_with_200_is_unavailable() -> None:
    error = classify_error(200, b"<html><title>Login</title></html>")
    assert isinstance(error, Unavailable)
    assert error.detail == "HTTP 200: Login"


def test_retry_after_and_provider_are_kept() -> None:
    error = classify_error(429, b"", provider="p", retry_after=12.5)
    assert isinstance(error, RateLimited)
    assert error.retryable
    assert (error.provider, error.status, error.retry_after) == ("p", 429, 12.5)
    assert error.detail == "HTTP 429"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after(earlier, now=now) == 0.0
