"""Configuration of several instances: the lock connections and the shared Redis."""

from __future__ import annotations

import pytest

from bot.config import load_config, parse_config
from bot.errors import ConfigError

ENV = {"TELEGRAM_BOT_TOKEN": "123:secret-token", "OPENAI_API_KEY": "sk-secret-key"}


def config_with(**sections: object) -> dict[str, object]:
    return {
        "telegram": {"token": "t"},
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1"}],
        **sections,
    }


def test_without_a_redis_section_the_flood_budget_stays_in_process():
    config = parse_config(config_with(), {})
    assert config.redis.url == ""
    assert config.redis.prefix == "tg-llm-bot"
    assert config.database.lock_connections == 2


def test_the_redis_url_may_come_from_the_environment_and_stays_out_of_repr():
    config = parse_config(
        config_with(redis={"url": "${REDIS_URL}", "prefix": "mybot"}),
        {"REDIS_URL": "redis://:pw@10.0.0.5:6379/2"},
    )
    assert config.redis.url == "redis://:pw@10.0.0.5:6379/2"
    assert config.redis.prefix == "mybot"
    assert "pw" not in repr(config.redis)


def test_a_container_configured_from_the_environment_finds_redis_there():
    config = load_config(None, {**ENV, "REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert load_config(None, ENV).redis.url == ""


@pytest.mark.parametrize(
    ("sections", "path", "problem"),
    [
        ({"redis": {"url": "http://127.0.0.1:6379"}}, "redis.url", "redis://"),
        ({"redis": {"url": "redis://x", "prefix": ""}}, "redis.prefix", "empty"),
        ({"redis": {"host": "x"}}, "redis.host", "unknown key"),
        ({"database": {"lock_connections": 0}}, "database.lock_connections", "at least 1"),
    ],
)
def test_bad_scale_out_settings_name_their_key(sections, path, problem):
    with pytest.raises(ConfigError) as raised:
        parse_config(config_with(**sections), {})
    assert raised.value.path == path
    assert problem in raised.value.problem
