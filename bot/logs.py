"""Logging set-up, and the filter that keeps secrets out of every log line."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.config import Config

_MASK = "***"
# Secrets shorter than this are too likely to appear by chance in ordinary text.
_MIN_SECRET_LENGTH = 6


class RedactSecrets(logging.Filter):
    """Replaces every configured secret in a record's message and arguments."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def redact(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record's message once, redacted, so no argument can leak a secret."""
        if self._secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg = self.redact(message)
            record.args = None
            if record.exc_text:
                record.exc_text = self.redact(record.exc_text)
        return True


def secrets_of(config: Config) -> list[str]:
    """Every secret in ``config``: the bot token, API keys and provider header values."""
    secrets = [config.telegram.token]
    for provider in config.providers:
        secrets.append(provider.api_key)
        secrets.extend(provider.headers.values())
    return secrets


def setup_logging(config: Config | None, level: int = logging.INFO) -> None:
    """Log to stderr, with secrets redacted and chatty HTTP libraries quietened."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if config is not None:
        handler.addFilter(RedactSecrets(secrets_of(config)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO, and Telegram URLs contain the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
