"""Configuration of access lists, the conversation scope and the prompt limit."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from tests.factories import ENV, minimal


def test_access_lists_scope_and_prompt_limit_default_to_open_topics_and_16000():
    config = parse_config(minimal(), ENV)
    assert (config.telegram.allowed_users, config.telegram.allowed_chats) == ((), ())
    assert config.context.scope == "topic"
    assert config.context.max_prompt_chars == 16000


def test_access_lists_and_scope_are_read():
    data = minimal(context={"scope": "chat", "max_prompt_chars": 500})
    data["telegram"] = {"token": "t", "allowed_users": [1, 2], "allowed_chats": [-100]}
    config = parse_config(data, ENV)
    assert config.telegram.allowed_users == (1, 2)
    assert config.telegram.allowed_chats == (-100,)
    assert (config.context.scope, config.context.max_prompt_chars) == ("chat", 500)


@pytest.mark.parametrize(
    ("context", "path"),
    [
        ({"scope": "everyone"}, "context.scope"),
        ({"max_prompt_chars": 0}, "context.max_prompt_chars"),
    ],
)
def test_a_bad_scope_or_limit_is_an_error_naming_the_key(context, path):
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        parse_config(minimal(context=context), ENV)


def test_an_allowed_user_must_be_a_number():
    data = minimal()
    data["telegram"] = {"token": "t", "allowed_users": ["alice"]}
    with pytest.raises(ConfigError, match=r"telegram\.allowed_users"):
        parse_config(data, ENV)
