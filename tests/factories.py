"""Test configuration: builders pointing the bot at the fakes, and the data config tests read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import Config, parse_config

TOKEN = "123456:TEST-TOKEN-abcdef"
API_KEY = "sk-test-key-0123456789"
MODEL = "test-model"
WEBHOOK_SECRET = "webhook-secret_42"

ROOT = Path(__file__).resolve().parent.parent
"""The project's directory, where config.example.yaml is."""
ENV = {"TELEGRAM_BOT_TOKEN": "123:secret-token", "OPENAI_API_KEY": "sk-secret-key"}
"""The environment a configuration file's ${VARIABLES} are read from."""


def make_config(
    *,
    telegram_base_url: str,
    telegram_file_url: str,
    provider_base_url: str,
    database: Path | str,
    **sections: Any,
) -> Config:
    """A valid configuration for the fakes; ``sections`` are merged into its top-level keys."""
    url = database if isinstance(database, str) else f"sqlite+aiosqlite:///{database}"
    data: dict[str, Any] = {
        "telegram": {
            "token": TOKEN,
            "base_url": telegram_base_url,
            "base_file_url": telegram_file_url,
            # Short long-polls keep shutdown quick in tests.
            "poll_timeout": 1,
        },
        "database": {"url": url},
        "providers": [
            {
                "name": "fake",
                "kind": "openai",
                "base_url": provider_base_url,
                "api_key": API_KEY,
                "timeouts": {"connect": 2, "first_chunk": 5, "idle": 5, "total": 60},
            }
        ],
        "models": {"chat": MODEL},
        "personas": [{"name": "default", "prompt": "You are a test assistant."}],
    }
    for key, value in sections.items():
        current = data.get(key)
        data[key] = {**current, **value} if isinstance(current, dict) else value
    return parse_config(data, {})


def minimal(**extra: object) -> dict[str, object]:
    """The smallest valid configuration's data, with ``extra`` top-level sections."""
    data: dict[str, object] = {
        "telegram": {"token": "${TELEGRAM_BOT_TOKEN}"},
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1", "api_key": "k"}],
    }
    data.update(extra)
    return data


def with_provider(**provider: object) -> dict[str, object]:
    """A configuration's data with one provider of the given options."""
    return {
        "telegram": {"token": "t"},
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1", **provider}],
    }
