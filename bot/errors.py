"""The one exception tree of the bot.

Everything the user may be told about is a ``BotError``; anything else is a bug and goes to
the application's error handler::

    BotError                    shown to the user through messages.user_message()
    ├── ConfigError             the configuration is invalid; names the key path
    ├── InputError              the user's input cannot be served (empty, too long, ...)
    └── ProviderError           an LLM provider failed; has .kind and .retryable
        ├── AuthError           key missing, invalid or expired
        ├── QuotaError          balance or quota used up
        ├── ContentRejected     the provider refused the content (policy, safety filter)
        ├── ModelNotFound       the provider does not serve the model
        ├── ContextTooLong      the conversation does not fit the model's window
        ├── RateLimited         too many requests; may carry retry_after
        ├── BadRequest          the provider rejected the request for another reason
        ├── Unavailable         5xx, bad gateway, connection refused
        ├── ProviderTimeout     no answer, or no bytes, within the configured time
        ├── StreamCut           the stream ended before the answer did
        └── Unsupported         the provider does not offer this capability (images, edits, ...)

Foreign exceptions (aiohttp, JSON) are translated once, at the adapter, with ``from exc``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorKind(StrEnum):
    """What went wrong, in the words the message catalogue is keyed by."""

    AUTH = "auth"
    QUOTA = "quota"
    CONTENT_REJECTED = "content_rejected"
    MODEL_NOT_FOUND = "model_not_found"
    CONTEXT_TOO_LONG = "context_too_long"
    RATE_LIMITED = "rate_limited"
    BAD_REQUEST = "bad_request"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    STREAM_CUT = "stream_cut"
    UNSUPPORTED = "unsupported"


class BotError(Exception):
    """Base of every error the user may be told about."""


class ConfigError(BotError):
    """The configuration is invalid at ``path``."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class InputError(BotError):
    """The user's input cannot be served; ``key`` names the catalogue message."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class ProviderError(BotError):
    """An LLM provider failed. ``detail`` is for logs, never for users."""

    kind: ClassVar[ErrorKind] = ErrorKind.UNAVAILABLE
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        detail: str = "",
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail or self.kind.value)
        self.detail = detail
        self.provider = provider
        self.status = status
        self.retry_after = retry_after


class AuthError(ProviderError):
    """The provider refused the API key."""

    kind = ErrorKind.AUTH


class QuotaError(ProviderError):
    """The account's balance or quota is used up."""

    kind = ErrorKind.QUOTA


class ContentRejected(ProviderError):
    """The provider refused the content."""

    kind = ErrorKind.CONTENT_REJECTED


class ModelNotFound(ProviderError):
    """The provider does not serve the requested model."""

    kind = ErrorKind.MODEL_NOT_FOUND


class ContextTooLong(ProviderError):
    """The prompt does not fit the model's context window."""

    kind = ErrorKind.CONTEXT_TOO_LONG


class RateLimited(ProviderError):
    """The provider asks us to slow down."""

    kind = ErrorKind.RATE_LIMITED
    retryable = True


class BadRequest(ProviderError):
    """The provider rejected the request."""

    kind = ErrorKind.BAD_REQUEST


class Unavailable(ProviderError):
    """The provider is down or unreachable."""

    kind = ErrorKind.UNAVAILABLE
    retryable = True


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    kind = ErrorKind.TIMEOUT
    retryable = True


class StreamCut(ProviderError):
    """The stream stopped before the answer was finished."""

    kind = ErrorKind.STREAM_CUT
    retryable = True


class Unsupported(ProviderError):
    """The provider has no endpoint for what was asked (an image from a text-only API, ...)."""

    kind = ErrorKind.UNSUPPORTED


ERROR_CLASSES: dict[ErrorKind, type[ProviderError]] = {
    cls.kind: cls
    for cls in (
        AuthError,
        QuotaError,
        ContentRejected,
        ModelNotFound,
        ContextTooLong,
        RateLimited,
        BadRequest,
        Unavailable,
        ProviderTimeout,
        StreamCut,
        Unsupported,
    )
}
