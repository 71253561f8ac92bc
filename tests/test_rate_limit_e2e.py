"""The per-user request rate, end to end: refused with the time to wait; admins exempt."""

from __future__ import annotations

import re

import pytest

from tests.e2e import bot_texts, until

USER = 42
ADMIN = 7


@pytest.fixture
def config(config_for):
    return config_for(
        streaming={"drafts": False},
        limits={"user_requests_per_minute": 2},
        telegram={"admins": [ADMIN]},
    )


async def test_a_request_over_the_limit_is_refused_with_the_time_to_wait(telegram, provider, bot):
    provider.enqueue_stream(["One."])
    telegram.user_sends("first")
    await until(lambda: "One." in bot_texts(telegram))
    provider.enqueue_stream(["Two."])
    telegram.user_sends("/complete second")
    await until(lambda: any("Two." in t for t in bot_texts(telegram)))

    telegram.user_sends("third")
    await until(lambda: any("Too many requests" in t for t in bot_texts(telegram)))
    (refusal,) = [t for t in bot_texts(telegram) if "Too many requests" in t]
    assert "at most 2 a minute" in refusal
    found = re.search(r"again in (\d+) s", refusal)
    assert found is not None
    assert 50 <= int(found.group(1)) <= 60
    assert len(provider.requests) == 2

    telegram.user_sends("/image a fox", language_code="zh-hans")
    await until(lambda: any("请求太频繁" in t for t in bot_texts(telegram)))
    assert len(provider.requests) == 2


async def test_bot_admins_and_other_users_are_not_held_back(telegram, provider, bot):
    for n in range(3):
        provider.enqueue_stream([f"Admin {n}."])
        telegram.user_sends(f"admin {n}", user_id=ADMIN, chat_id=ADMIN)
        await until(lambda n=n: f"Admin {n}." in bot_texts(telegram, ADMIN))
    provider.enqueue_stream(["Other."])
    telegram.user_sends("hello", user_id=USER)
    await until(lambda: "Other." in bot_texts(telegram))
    assert not any("Too many" in t for t in bot_texts(telegram, ADMIN) + bot_texts(telegram))
