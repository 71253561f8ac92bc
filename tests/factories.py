"""Builders for test configuration pointing the bot at the fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.config import Config, parse_config

TOKEN = "123456:TEST-TOKEN-abcdef"
API_KEY = "sk-test-key-0123456789"
MODEL = "test-model"


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
