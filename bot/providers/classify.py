"""Provider failures into the classes of ``bot.errors``: one pure function per question.

Dialects recognised (bodies as the seed documents give them):

* OpenAI: ``{"error": {"message", "type", "code", "param"}}``; Talk-Bot uses the same shape
  with ``type: "talk_api_error"`` and its own codes.
* 冰橙: ``{"codes": 900, "mess": "...", "data": "token"}``, where ``codes`` is not an HTTP
  status (its 400 means illegal content), and Cloudflare's ``cf_bad_gateway`` error object.
* Anthropic (and OhMyGPT's native Messages API): ``{"type": "error", "error": {"type",
  "message"}}`` in a non-2xx body or as an ``error`` event mid-stream, with types
  ``invalid_request_error`` (400), ``authentication_error`` (401), ``permission_error`` (403),
  ``not_found_error`` (404), ``request_too_large`` (413), ``rate_limit_error`` (429),
  ``api_error`` (500) and ``overloaded_error`` (529).
* seed 000's wrapper service: ``{"code": 0, "data": ..., "message": "continue"}`` lines, where
  ``message: "error"`` is a failure ("错误返回，此时文字可能丢失") and the reason is in ``data``;
  and JSON bodies with a non-zero ``code`` and the reason in ``message``. The document shows
  no error example, so ``data`` is read as what such a Node service passes on: an OpenAI error
  object, or the client's error text ("Request failed with status code 429", "429 Rate limit
  reached ..."), whose status then counts as the HTTP status.
* anything else, HTML error pages included: classified by the HTTP status alone.

The order is: the provider's own code, then its error type, then well-known phrases in the
message, then the HTTP status (or a numeric code in the body), then the generic
``invalid_request_error`` type. Specific beats generic: OpenAI answers an exhausted quota with
HTTP 429 and code ``insufficient_quota``, which is a quota problem, not a rate limit.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

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

MAX_DETAIL_CHARS = 300
"""``ProviderError.detail`` is cut to this length; it is for logs, not for a whole page."""

_BY_CODE: dict[str, type[ProviderError]] = {
    "invalid_api_key": AuthError,
    "account_deactivated": AuthError,
    "unauthorized": AuthError,
    "insufficient_quota": QuotaError,
    "insufficient_user_quota": QuotaError,
    "billing_hard_limit_reached": QuotaError,
    "model_not_found": ModelNotFound,
    "invalid_model": ModelNotFound,
    "context_length_exceeded": ContextTooLong,
    "content_policy_violation": ContentRejected,
    "content_filter": ContentRejected,
    # GPT image models' refusal of a prompt or an input image.
    "moderation_blocked": ContentRejected,
    "rate_limit_exceeded": RateLimited,
    "invalid_messages": BadRequest,
    "internal_error": Unavailable,
    "server_error": Unavailable,
}

_BY_TYPE: dict[str, type[ProviderError]] = {
    "authentication_error": AuthError,
    "permission_error": AuthError,
    "insufficient_quota": QuotaError,
    "billing_error": QuotaError,
    "not_found_error": ModelNotFound,
    "request_too_large": ContextTooLong,
    "timeout_error": ProviderTimeout,
    "rate_limit_error": RateLimited,
    # OpenAI's types for request- and token-per-minute limits.
    "requests": RateLimited,
    "tokens": RateLimited,
    "content_policy_violation": ContentRejected,
    "server_error": Unavailable,
    "api_error": Unavailable,
    "overloaded_error": Unavailable,
    "cf_bad_gateway": Unavailable,
}

# Types so broad that the HTTP status says more; consulted only when the status says nothing.
_GENERIC_TYPE: dict[str, type[ProviderError]] = {
    "invalid_request_error": BadRequest,
}

# 冰橙's ``codes``: its own numbering, not HTTP statuses.
_BY_LEGACY_CODES: dict[int, type[ProviderError]] = {
    900: AuthError,
    300: QuotaError,
    400: ContentRejected,
    402: ContentRejected,
}

# Lower-case phrases that name the problem whatever the code says (LiteLLM sniffs the same).
_PHRASES: tuple[tuple[str, type[ProviderError]], ...] = (
    ("maximum context length", ContextTooLong),
    ("context_length_exceeded", ContextTooLong),
    ("context window", ContextTooLong),
    ("prompt is too long", ContextTooLong),
    ("content management policy", ContentRejected),
    ("content_policy_violation", ContentRejected),
    ("rejected by the safety system", ContentRejected),
    ("rejected as a result of our safety system", ContentRejected),
    ("exceeded your current quota", QuotaError),
    ("credit balance is too low", QuotaError),
    ("rate limit", RateLimited),
    ("rate_limit", RateLimited),
)

_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthError,
    402: QuotaError,
    403: AuthError,
    404: ModelNotFound,
    408: ProviderTimeout,
    413: ContextTooLong,
    429: RateLimited,
}

# Seed 000: the ``message`` values of its stream lines that are not errors.
WRAPPER_STREAM_KINDS = frozenset({"continue", "code", "end"})
WRAPPER_ERROR = "error"

# An HTTP status inside an error text: axios's "Request failed with status code 429", or
# openai-node's "429 Rate limit reached ...".
_STATUS_IN_TEXT = re.compile(r"(?i)\bstatus(?: code)?:? ([45]\d\d)\b|^([45]\d\d)\b")

_SECRET_PATTERNS = re.compile(r"(?i)\bsk-[A-Za-z0-9*_\-]{6,}|\bbearer\s+\S+")
_HTML_TITLE = re.compile(r"(?is)<title[^>]*>(.*?)</title>")


def classify_error(
    status: int | None,
    body: bytes | str | object,
    *,
    provider: str | None = None,
    retry_after: float | None = None,
    secrets: tuple[str, ...] = (),
) -> ProviderError:
    """Turn an HTTP status and an error body (raw or parsed JSON) into a ``ProviderError``.

    ``secrets`` (the API key) are blanked out of the detail along with anything key-shaped.
    """
    text, obj = _decode(body)
    fields = _error_fields(obj)
    if fields is None:
        cls = _by_status(status) or Unavailable
        detail = _text_detail(status, text)
    else:
        cls = _classify_fields(status, fields)
        detail = fields.detail()
    return cls(
        _clean(detail, secrets),
        provider=provider,
        status=status,
        retry_after=retry_after,
    )


def is_error_body(obj: object) -> bool:
    """True when a parsed JSON body (or stream chunk) is an error report, not an answer."""
    if not isinstance(obj, dict):
        return False
    if obj.get("error"):
        return True
    return "codes" in obj and "choices" not in obj


def is_wrapper_error(obj: object) -> bool:
    """True for seed 000's failures: a ``message: "error"`` line, or a non-zero ``code``.

    ``{"code": 0, "data": ..., "message": "continue" | "code" | "end"}`` is not an error
    whatever its ``code``: the message kind of a stream line is what the document defines.
    """
    if not isinstance(obj, dict):
        return False
    message = obj.get("message")
    if message == WRAPPER_ERROR:
        return True
    if message in WRAPPER_STREAM_KINDS:
        return False
    code = _wrapper_code(obj.get("code"))
    return code is not None and code != 0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class _Fields:
    """What an error body says, normalised across dialects."""

    message: str
    type: str = ""
    code: str = ""
    legacy_code: int | None = None

    def detail(self) -> str:
        if self.legacy_code is not None:
            label = f"codes={self.legacy_code}"
        else:
            label = "/".join(part for part in (self.type, self.code) if part)
        if label and self.message:
            return f"{label}: {self.message}"
        return label or self.message


def _decode(body: bytes | str | object) -> tuple[str, object]:
    """The body as text (for the detail) and as parsed JSON (None when it is not JSON)."""
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            return body, json.loads(body)
        except ValueError:
            return body, None
    return json.dumps(body, ensure_ascii=False, default=str), body


def _error_fields(obj: object) -> _Fields | None:
    """Read the message, type and code of a known error dialect; None for anything else."""
    if not isinstance(obj, dict):
        return None
    error = obj.get("error")
    if isinstance(error, dict):
        return _Fields(
            _text(error.get("message")), _text(error.get("type")), _text(error.get("code"))
        )
    if isinstance(error, str) and error:
        return _Fields(error, code=_text(obj.get("code")))
    return _flat_error_fields(obj)


def _flat_error_fields(obj: dict[str, object]) -> _Fields | None:
    """Dialects without an ``error`` object: 冰橙's, seed 000's, one-api's fallback."""
    codes = obj.get("codes")
    if isinstance(codes, int) and not isinstance(codes, bool):
        return _Fields(_text(obj.get("mess")), legacy_code=codes)
    if obj.get("message") == WRAPPER_ERROR and "data" in obj:
        return _wrapper_error_fields(obj)
    # one-api falls back to these keys for errors that are not OpenAI-shaped.
    message = obj.get("message") or obj.get("msg") or obj.get("detail")
    if isinstance(message, str) and message:
        return _Fields(message, _text(obj.get("type")), _text(obj.get("code")))
    return None


def _wrapper_error_fields(obj: dict[str, object]) -> _Fields:
    """Seed 000's ``{"code", "data", "message": "error"}``: the reason is in ``data``."""
    data = obj.get("data")
    if isinstance(data, str) and data.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    nested = _error_fields(data)
    if nested is not None:
        return nested
    text = data if isinstance(data, str) else ("" if data is None else _decode(data)[0])
    found = _STATUS_IN_TEXT.search(text.strip())
    if found:
        status = found.group(1) or found.group(2)
    else:
        code = _wrapper_code(obj.get("code"))
        status = str(code) if code is not None and 400 <= code < 600 else ""
    return _Fields(text or WRAPPER_ERROR, code=status)


def _wrapper_code(value: object) -> int | None:
    """Seed 000's ``code`` (an Integer in one table, a String in another) as a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _classify_fields(status: int | None, fields: _Fields) -> type[ProviderError]:
    if fields.legacy_code is not None and fields.legacy_code in _BY_LEGACY_CODES:
        return _BY_LEGACY_CODES[fields.legacy_code]
    code = fields.code.lower()
    if code in _BY_CODE:
        return _BY_CODE[code]
    type_ = fields.type.lower()
    if type_ in _BY_TYPE:
        return _BY_TYPE[type_]
    message = fields.message.lower()
    for phrase, cls in _PHRASES:
        if phrase in message:
            return cls
    # A 200 carrying an error (in a stream or a JSON body) may name its status as the code.
    if (status is None or status < 400) and code.isdigit():
        status = int(code)
    return _by_status(status) or _GENERIC_TYPE.get(type_, Unavailable)


def _by_status(status: int | None) -> type[ProviderError] | None:
    if status is None or status < 400:
        return None
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return Unavailable if status >= 500 else BadRequest


def _text_detail(status: int | None, text: str) -> str:
    """A short detail for a body that is not a known JSON error, such as an HTML page."""
    title = _HTML_TITLE.search(text)
    snippet = " ".join((title.group(1) if title else text).split())
    prefix = f"HTTP {status}" if status is not None else "unexpected response"
    return f"{prefix}: {snippet}" if snippet else prefix


def _clean(detail: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "***")
    detail = _SECRET_PATTERNS.sub("***", detail)
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    return detail


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)
