"""Quotas end to end: refusals with the reset time, bursts against a small limit, tokens from
the provider's usage, failures that do not count, admins, and /usage."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import func, select

from bot.handlers.context import SERVICES_KEY
from bot.storage.db import create_engine
from bot.storage.models import Message, QuotaUsage
from tests.e2e import bot_texts, until
from tests.fakes.provider import Chunk, Done, ErrorResponse, Finish, Role, UsageChunk

USER = 42
ADMIN = 7
BOB = 8
GROUP = -1007777
REFUSAL = re.compile(
    r"(You have used your|This chat has used its) ([\d,]+) (requests|tokens) for "
    r"(today|this month); it resets in (\d+ h )?\d+ min \((00:00|\d{4}-\d\d-01 00:00) UTC\)\."
)
CONTENT_POLICY = {
    "error": {
        "message": "Your request was rejected by the safety system.",
        "type": "invalid_request_error",
        "code": "content_policy_violation",
    }
}


@pytest.fixture
def config(config_for):
    return config_for(
        # Groups pace the bot's messages at one per interval: the bursts here send many.
        streaming={"drafts": False, "edit_interval_group": 0.05},
        telegram={"admins": [ADMIN]},
        quotas={
            "roles": {"default": {"requests_per_day": 2}, "trusted": {"users": [BOB]}},
            "chats": {"default": {"requests_per_day": 3}},
        },
    )


def refusals(telegram, chat_id=USER):
    return [t for t in bot_texts(telegram, chat_id) if REFUSAL.fullmatch(t)]


def chat_requests(provider):
    return [r for r in provider.requests if r.path.endswith("/chat/completions")]


async def user_turns_stored(config):
    engine = create_engine(config.database.url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(
                select(func.count()).select_from(Message).where(Message.role == "user")
            )
    finally:
        await engine.dispose()


@pytest.mark.both_databases
async def test_over_the_daily_limit_the_user_is_told_which_limit_and_when_it_resets(
    telegram, provider, bot, config
):
    for n in (1, 2):
        provider.enqueue_stream([f"Answer {n}."])
        telegram.user_sends(f"question {n}")
        await until(lambda n=n: f"Answer {n}." in bot_texts(telegram))

    telegram.user_sends("question 3")
    await until(lambda: len(refusals(telegram)) == 1)
    telegram.user_sends("问题 4", language_code="zh-hans")
    await until(lambda: any("次请求已用完" in t for t in bot_texts(telegram)))

    (refusal,) = refusals(telegram)
    assert refusal.startswith("You have used your 2 requests for today; it resets in ")
    assert refusal.endswith("(00:00 UTC).")
    chinese = bot_texts(telegram)[-1]
    assert re.fullmatch(r"你今天的 2 次请求已用完，.*后重置（00:00 UTC）。", chinese)
    assert len(chat_requests(provider)) == 2, "refused requests never reach the provider"
    assert await user_turns_stored(config) == 2, "nor are they stored as turns"
    refused = bot.bot_data[SERVICES_KEY].metrics.registry.get_sample_value(
        "bot_quota_refusals_total", {"scope": "user", "period": "day", "measure": "requests"}
    )
    assert refused == 2


@pytest.mark.both_databases
async def test_a_burst_against_a_small_limit_answers_exactly_the_limit(
    telegram, provider, bot, config
):
    # In a group the chat's limit (3 a day) binds: five members ask at once, twice each.
    for n in range(10):
        telegram.user_sends(f"/chat burst {n}", chat_id=GROUP, user_id=100 + n % 5)

    await until(lambda: len(refusals(telegram, GROUP)) == 7)
    await until(lambda: sum("burst" in t for t in bot_texts(telegram, GROUP)) == 3)

    assert len(chat_requests(provider)) == 3
    assert all(
        t.startswith("This chat has used its 3 requests for today")
        for t in refusals(telegram, GROUP)
    )
    assert await user_turns_stored(config) == 3


async def test_a_burst_from_one_user_is_answered_up_to_the_limit_in_order(telegram, provider, bot):
    for n in range(6):
        telegram.user_sends(f"message {n}")

    await until(lambda: len(refusals(telegram)) == 4)
    await until(lambda: sum(t.startswith("echo: message") for t in bot_texts(telegram)) == 2)

    assert len(chat_requests(provider)) == 2
    answered = [t for t in bot_texts(telegram) if t.startswith("echo: message")]
    assert answered == sorted(answered), "answers keep the order of the messages"
    # Only requests let through are told they wait for the answer before them.
    assert sum(t.startswith("⏳") for t in bot_texts(telegram)) <= 2


async def test_tokens_are_counted_from_the_providers_usage(
    telegram, provider, config_for, start_bot
):
    config = config_for(
        streaming={"drafts": False}, quotas={"roles": {"default": {"tokens_per_day": 1000}}}
    )
    async with start_bot(config):
        provider.enqueue(Role(), Chunk("Long answer."), Finish(), UsageChunk(1200, 34), Done())
        telegram.user_sends("ask")
        await until(lambda: "Long answer." in bot_texts(telegram))
        telegram.user_sends("again")
        await until(lambda: any("tokens for today" in t for t in bot_texts(telegram)))
        # The answer shows before it is stored and settled.
        await settled(config)
        telegram.user_sends("/usage")
        await until(lambda: any("Your usage" in t for t in bot_texts(telegram)))

    usage = bot_texts(telegram)[-1]
    assert "• tokens: 1,234 of 1,000 (0 left)" in usage
    assert "• requests: 1 (no limit)" in usage
    assert bot_texts(telegram)[-2].startswith("You have used your 1,000 tokens for today")
    assert len(chat_requests(provider)) == 1


async def settled(config, timeout=10.0):
    """Wait until no quota counter holds tokens for an answer in flight."""
    engine = create_engine(config.database.url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with engine.connect() as connection:
                held = await connection.scalar(select(func.sum(QuotaUsage.reserved)))
            if not held:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{held} tokens still held"
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


async def test_a_failure_before_any_text_does_not_count(telegram, provider, bot):
    provider.enqueue_error(400, CONTENT_POLICY)
    telegram.user_sends("first try")
    await until(lambda: any("content policy" in t for t in bot_texts(telegram)))
    for n in (1, 2):
        provider.enqueue_stream([f"Fine {n}."])
        telegram.user_sends(f"try {n}")
        await until(lambda n=n: f"Fine {n}." in bot_texts(telegram))

    telegram.user_sends("/usage")
    await until(lambda: any("Your usage" in t for t in bot_texts(telegram)))

    assert "• requests: 2 of 2 (0 left)" in bot_texts(telegram)[-1]
    assert len(chat_requests(provider)) == 3
    assert refusals(telegram) == []


async def test_bot_admins_are_counted_but_never_refused(telegram, provider, bot):
    for n in range(4):
        telegram.user_sends(f"/chat admin {n}", chat_id=GROUP, user_id=ADMIN)
    await until(lambda: sum("admin" in t for t in bot_texts(telegram, GROUP)) == 4)
    telegram.user_sends("/usage", chat_id=GROUP, user_id=ADMIN)
    await until(lambda: any("Your usage" in t for t in bot_texts(telegram, GROUP)))

    usage = bot_texts(telegram, GROUP)[-1]
    assert "You are a bot admin: no limits apply to you." in usage
    assert "• requests: 4 (no limit)" in usage
    assert refusals(telegram, GROUP) == []
    # The group's own count includes them: its members have no requests left today.
    assert "• requests: 4 of 3 (0 left)" in usage


async def test_every_kind_of_request_counts(telegram, provider, bot):
    telegram.user_sends("/image a fox")
    await until(lambda: telegram.calls_to("sendPhoto"))
    telegram.user_sends("/complete Once upon")
    await until(lambda: any(t.startswith("Once upon") for t in bot_texts(telegram)))

    telegram.user_sends("/retry")
    await until(lambda: len(refusals(telegram)) == 1)
    telegram.user_sends("/edit shorter\nA long text to shorten.")
    await until(lambda: len(refusals(telegram)) == 2)
    telegram.user_sends("/image another fox")
    await until(lambda: len(refusals(telegram)) == 3)

    assert len(provider.requests) == 2


async def test_an_image_the_provider_refuses_does_not_count(telegram, provider, bot):
    provider.enqueue_images(ErrorResponse(400, CONTENT_POLICY))
    telegram.user_sends("/image a fox")
    await until(lambda: any("content policy" in t for t in bot_texts(telegram)))
    for n in (1, 2):
        telegram.user_sends(f"/image fox {n}")
        await until(lambda n=n: len(telegram.calls_to("sendPhoto")) == n)
    telegram.user_sends("/image fox 3")
    await until(lambda: len(refusals(telegram)) == 1)

    assert len(provider.requests) == 3
    assert len(telegram.calls_to("sendPhoto")) == 2


async def test_usage_shows_ones_own_figures_and_in_a_group_the_groups(telegram, provider, bot):
    telegram.user_sends("/chat hello", chat_id=GROUP, user_id=USER)
    await until(lambda: "echo: hello" in bot_texts(telegram, GROUP))
    telegram.user_sends("/usage", chat_id=GROUP, user_id=USER)
    await until(lambda: any("Your usage" in t for t in bot_texts(telegram, GROUP)))

    usage = bot_texts(telegram, GROUP)[-1].splitlines()
    assert usage[:2] == ["📊 Your usage", "Limits of the role default."]
    assert re.fullmatch(r"Today \(resets in (\d+ h )?\d+ min, 00:00 UTC\):", usage[2])
    assert usage[3] == "• requests: 1 of 2 (1 left)"
    assert re.fullmatch(r"This month \(resets in .*, \d{4}-\d\d-01 00:00 UTC\):", usage[5])
    assert usage[6] == "• requests: 1 (no limit)"
    assert usage[9] == f"📊 This chat: Test group {abs(GROUP)} ({GROUP})"
    assert usage[11] == "• requests: 1 of 3 (2 left)"


async def test_usage_all_is_for_bot_admins_only(telegram, provider, bot):
    telegram.user_sends("/chat hi", chat_id=GROUP, user_id=USER)
    await until(lambda: "echo: hi" in bot_texts(telegram, GROUP))
    telegram.user_sends("/usage all")
    await until(lambda: "Only the bot's admins can see everyone's usage." in bot_texts(telegram))

    telegram.user_sends("/usage all", user_id=ADMIN)
    await until(lambda: any("Everyone's usage" in t for t in bot_texts(telegram, ADMIN)))

    report = bot_texts(telegram, ADMIN)[-1].splitlines()
    assert report[0] == "📊 Everyone's usage"
    today = report[report.index("Top users:") - 1]
    assert today.startswith("1 users: 1 requests, ")
    assert report[report.index("Top users:") + 1].startswith("1. user 42: 1 requests, ")
    chats = report.index("Top group chats:")
    assert report[chats + 1].startswith(f"1. Test group {abs(GROUP)} ({GROUP}): 1 requests")


async def test_usage_chat_is_for_the_groups_administrators_and_the_bot_admins(
    telegram, provider, bot, config
):
    telegram.user_sends("/chat hi", chat_id=GROUP, user_id=USER)
    await until(lambda: "echo: hi" in bot_texts(telegram, GROUP))
    await settled(config)  # both views below then show the same figures

    telegram.user_sends("/usage chat", chat_id=GROUP, user_id=BOB)
    await until(lambda: any("administrators" in t for t in bot_texts(telegram, GROUP)))
    telegram.set_member_status(GROUP, USER, "administrator")
    telegram.user_sends("/usage chat", chat_id=GROUP, user_id=USER)
    await until(lambda: any("This chat:" in t for t in bot_texts(telegram, GROUP)))
    telegram.user_sends("/usage chat -100555", chat_id=GROUP, user_id=USER)
    await until(lambda: any("another chat" in t for t in bot_texts(telegram, GROUP)))
    telegram.user_sends(f"/usage chat {GROUP}", user_id=ADMIN)
    await until(lambda: any("This chat:" in t for t in bot_texts(telegram, ADMIN)))

    texts = bot_texts(telegram, GROUP)
    assert "Only this group's administrators and the bot's admins can see its usage." in texts
    own = next(t for t in texts if "This chat:" in t)
    assert "• requests: 1 of 3 (2 left)" in own
    assert bot_texts(telegram, ADMIN)[-1] == own, "the bot admin sees the same from afar"


async def test_without_quotas_nothing_is_counted(telegram, provider, config_for, start_bot):
    async with start_bot(config_for(streaming={"drafts": False})) as application:
        assert application.bot_data[SERVICES_KEY].quotas is None
        telegram.user_sends("/usage")
        await until(lambda: bool(bot_texts(telegram)))

    assert bot_texts(telegram) == ["No quotas are set for this bot, so usage is not counted."]
