"""Configuration: loading, validation with key paths, ${ENV} expansion, the env-only mode."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from bot.config import DEFAULT_DATABASE_URL, load_config, parse_config
from bot.errors import ConfigError
from tests.factories import ENV, ROOT, minimal


def test_example_config_is_valid_and_documents_every_section():
    config = load_config(ROOT / "config.example.yaml", ENV)
    assert config.telegram.token == "123:secret-token"
    assert config.providers[0].api_key == "sk-secret-key"
    assert config.database.url == DEFAULT_DATABASE_URL
    assert config.streaming.edit_interval_private == 1.0
    assert config.streaming.shutdown_grace == 10.0
    assert config.streaming.final_burst == 1
    assert config.streaming.read_interval_max == 1.0
    assert config.context.max_tokens == 6000


def test_environment_alone_configures_the_bot():
    config = load_config(
        None, {**ENV, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_MODEL": "m-1"}
    )
    assert config.providers[0].base_url == "http://127.0.0.1:9/v1"
    assert config.models.chat == "m-1"
    assert config.database.url == DEFAULT_DATABASE_URL


def test_environment_alone_without_a_token_names_the_variable():
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        load_config(None, {"OPENAI_API_KEY": "x"})


def test_unset_environment_variable_is_named_with_its_key_path():
    data = minimal()
    data["providers"] = [{"name": "p", "base_url": "http://x/v1", "api_key": "${NOPE_KEY}"}]
    with pytest.raises(ConfigError) as info:
        parse_config(data, ENV)
    assert info.value.path == "providers[0].api_key"
    assert "NOPE_KEY" in str(info.value)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"telegram": {"token": "t", "tokn": "x"}}, "telegram.tokn"),
        ({"context": {"max_messages": "many"}}, "context.max_messages"),
        ({"context": {"max_tokens": 0}}, "context.max_tokens"),
        ({"streaming": {"edit_interval_group": -1}}, "streaming.edit_interval_group"),
        ({"streaming": {"shutdown_grace": -1}}, "streaming.shutdown_grace"),
        ({"streaming": {"read_interval_max": -0.5}}, "streaming.read_interval_max"),
        ({"streaming": {"final_burst": -1}}, "streaming.final_burst"),
        ({"streaming": {"final_burst": 3}}, "streaming.final_burst"),
        ({"streaming": {"final_burst": 0.5}}, "streaming.final_burst"),
        ({"providers": [{"name": "p", "base_url": "ftp://x"}]}, "providers[0].base_url"),
        (
            {"providers": [{"name": "p", "base_url": "http://x", "kind": "nope"}]},
            "providers[0].kind",
        ),
        ({"providers": [{"base_url": "http://x"}]}, "providers[0].name"),
        ({"personas": [{"name": "a"}]}, "personas[0].prompt"),
        ({"personas": "everyone"}, "personas"),
        ({"surprise": 1}, "surprise"),
        ({"images": {"max_count": 11}}, "images.max_count"),
        ({"images": {"count": 5}}, "images.count"),
        ({"images": {"size": "big"}}, "images.size"),
    ],
)
def test_bad_values_are_rejected_with_their_key_path(change, path):
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(**change), ENV)
    assert info.value.path == path


def test_secrets_do_not_appear_in_the_config_repr():
    config = parse_config(minimal(), ENV)
    assert "secret-token" not in repr(config)
    assert "'k'" not in repr(config.providers[0])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_check_config_rejects_a_bad_file_in_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("telegram:\n  token: t\nproviders: []\ncontext: {max_messages: x}\n")
    result = run_cli("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == "config error: context.max_messages: expected an integer"
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_example_and_prints_no_secret():
    result = run_cli("check-config", "--config", "config.example.yaml", env=ENV)
    assert result.returncode == 0, result.stderr
    assert "secret" not in result.stdout + result.stderr


def test_run_rejects_a_bad_config_in_one_line_before_starting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("telegram:\n  token: ${UNSET_TOKEN_VAR}\nproviders: []\n")
    result = run_cli("run", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "config error: telegram.token: environment variable UNSET_TOKEN_VAR is not set"
    )


def test_migrate_command_brings_a_blank_database_to_the_newest_schema(tmp_path):
    database = tmp_path / "state" / "bot.db"
    config = tmp_path / "config.yaml"
    config.write_text(
        "telegram: {token: t}\n"
        "providers: [{name: p, base_url: 'http://127.0.0.1:1/v1'}]\n"
        f"database: {{url: 'sqlite+aiosqlite:///{database}'}}\n"
    )
    result = run_cli("migrate", "--config", str(config))
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"chats", "conversations", "messages", "personas", "alembic_version"} <= tables
