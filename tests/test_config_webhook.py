"""Configuration of webhook mode and the ops endpoints."""

from __future__ import annotations

import pytest

from bot.config import load_config, parse_config
from bot.errors import ConfigError

ENV = {"TELEGRAM_BOT_TOKEN": "123:secret-token", "OPENAI_API_KEY": "sk-secret-key"}


def with_telegram(**telegram: object) -> dict[str, object]:
    return {
        "telegram": {"token": "t", **telegram},
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1"}],
    }


def test_polling_is_the_default_and_needs_no_webhook_settings():
    config = parse_config(with_telegram(), {})
    assert config.telegram.mode == "polling"
    assert config.ops.port is None


def test_webhook_path_comes_from_the_public_url_unless_given():
    webhook = {"url": "https://bot.example.com/tg/hook", "secret_token": "s3cret"}
    config = parse_config(with_telegram(mode="webhook", webhook=webhook), {})
    assert config.telegram.webhook_path == "tg/hook"
    config = parse_config(with_telegram(mode="webhook", webhook={**webhook, "path": "/in"}), {})
    assert config.telegram.webhook_path == "in"


@pytest.mark.parametrize(
    ("webhook", "path", "problem"),
    [
        ({"secret_token": "s"}, "telegram.webhook.url", "public https:// URL"),
        ({"url": "ftp://x/y", "secret_token": "s"}, "telegram.webhook.url", "https://"),
        ({"url": "https://x/y"}, "telegram.webhook.secret_token", "1-256 characters"),
        ({"url": "https://x/y", "secret_token": "no spaces"}, "telegram.webhook.secret_token", ""),
        (
            {"url": "https://x/y", "secret_token": "s", "port": 70000},
            "telegram.webhook.port",
            "TCP port",
        ),
        (
            {"url": "https://x/y", "secret_token": "s", "max_connections": 0},
            "telegram.webhook.max_connections",
            "between 1 and 100",
        ),
    ],
)
def test_webhook_mode_rejects_incomplete_settings_naming_the_key(webhook, path, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config(with_telegram(mode="webhook", webhook=webhook), {})
    assert raised.value.path == path
    assert problem in raised.value.problem


def test_secret_token_is_not_shown_in_the_config_repr():
    webhook = {"url": "https://x/y", "secret_token": "do-not-print-me"}
    config = parse_config(with_telegram(mode="webhook", webhook=webhook), {})
    assert "do-not-print-me" not in repr(config)


def test_environment_alone_can_configure_webhook_mode_and_the_ops_port():
    env = {
        **ENV,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook",
        "TELEGRAM_WEBHOOK_SECRET": "abc_DEF-123",
        "TELEGRAM_WEBHOOK_PORT": "8080",
        "BOT_OPS_PORT": "9100",
        "DATABASE_URL": "postgresql+asyncpg://bot@db/bot",
    }
    config = load_config(None, env)
    assert config.telegram.mode == "webhook"
    assert config.telegram.webhook.url == "https://bot.example.com/hook"
    assert config.telegram.webhook.secret_token == "abc_DEF-123"
    assert config.telegram.webhook.port == 8080
    assert config.ops.port == 9100
    assert config.database.url == "postgresql+asyncpg://bot@db/bot"


def test_environment_webhook_without_secret_is_refused():
    env = {**ENV, "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook"}
    with pytest.raises(ConfigError) as raised:
        load_config(None, env)
    assert "TELEGRAM_WEBHOOK_SECRET" in str(raised.value)
