"""Provider configuration: the anthropic kind, the openai options, and their rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.config import ProviderConfig, load_config, parse_config
from bot.errors import ConfigError
from tests.factories import ENV, ROOT, with_provider


def test_defaults_leave_every_option_off() -> None:
    (provider,) = parse_config(with_provider(), ENV).providers
    assert provider.kind == "openai"
    assert provider.max_tokens is None
    assert provider.retries == 2
    assert (provider.reduce_stream, provider.include_usage) == (False, False)


def test_openai_options_are_read() -> None:
    data = with_provider(reduce_stream=True, include_usage="true", max_tokens=800, retries=0)
    (provider,) = parse_config(data, ENV).providers
    assert provider == ProviderConfig(
        name="p",
        base_url="http://127.0.0.1:1/v1",
        reduce_stream=True,
        include_usage=True,
        max_tokens=800,
        retries=0,
    )


def test_anthropic_kind_is_accepted() -> None:
    (provider,) = parse_config(with_provider(kind="anthropic", max_tokens=1024), ENV).providers
    assert (provider.kind, provider.max_tokens) == ("anthropic", 1024)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"max_tokens": 0}, "providers[0].max_tokens"),
        ({"max_tokens": "lots"}, "providers[0].max_tokens"),
        ({"retries": -1}, "providers[0].retries"),
        ({"reduce_stream": "yes"}, "providers[0].reduce_stream"),
        ({"timeouts": {"idle": 0}}, "providers[0].timeouts.idle"),
        ({"kind": "anthropic", "reduce_stream": True}, "providers[0].reduce_stream"),
        ({"kind": "anthropic", "include_usage": True}, "providers[0].include_usage"),
        ({"kind": "gemini"}, "providers[0].kind"),
    ],
)
def test_bad_provider_values_are_rejected_with_their_key_path(
    change: dict[str, object], path: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_provider(**change), ENV)
    assert info.value.path == path


def test_example_config_documents_every_provider_option() -> None:
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    section = text.split("\nproviders:", 1)[1].split("\nmodels:", 1)[0]
    for name in ProviderConfig.__dataclass_fields__:
        assert re.search(rf"^\s+(- )?{name}:.*#", section, re.MULTILINE), name


def test_example_anthropic_provider_is_valid_once_uncommented(tmp_path: Path) -> None:
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("  # - name: claude")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])
    uncommented = "\n".join([*lines[:start], *block, *lines[start + len(block) :]])
    path = tmp_path / "config.yaml"
    path.write_text(uncommented, encoding="utf-8")
    config = load_config(path, {**ENV, "ANTHROPIC_API_KEY": "sk-ant-key"})
    claude = config.providers[1]
    assert (claude.name, claude.kind, claude.api_key) == ("claude", "anthropic", "sk-ant-key")
    assert claude.base_url == "https://api.anthropic.com/v1"
    assert yaml.safe_load(uncommented)["providers"][1]["max_tokens"] == 4096
