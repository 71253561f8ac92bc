"""Pure quota rules: periods, roles, the counters a request touches, refusals and their words,
and the ``quotas:`` configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.config import ProviderConfig, QuotaLimits, parse_config
from bot.errors import ConfigError
from bot.quota_text import format_wait, period_lines, ranking_lines, refusal_text, reset_label
from bot.quotas import (
    ADMIN_ROLE,
    DEFAULT_COMPLETION_ALLOWANCE,
    Counter,
    CounterKey,
    Figures,
    Measure,
    Period,
    Ranked,
    Refusal,
    Scope,
    chat_limits,
    completion_allowance,
    counters_for,
    exhausted,
    grant_in_turn,
    period_end,
    period_id,
    refusal,
    user_role,
)

NOW = datetime(2026, 11, 30, 18, 47, 30, tzinfo=UTC)


def quotas_config(**quotas: object):
    data = {
        "telegram": {"token": "1:a"},
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1"}],
        "quotas": quotas,
    }
    return parse_config(data, {}).quotas


# --- periods ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "day", "month", "day_end", "month_end"),
    [
        (NOW, "2026-11-30", "2026-11", datetime(2026, 12, 1), datetime(2026, 12, 1)),
        (
            datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "2026-12-31",
            "2026-12",
            datetime(2027, 1, 1),
            datetime(2027, 1, 1),
        ),
        (
            datetime(2028, 2, 28, 0, 0, tzinfo=UTC),
            "2028-02-28",
            "2028-02",
            datetime(2028, 2, 29),
            datetime(2028, 3, 1),
        ),
        (
            # 07:30 on the 1st in Shanghai is still the 30th in UTC.
            datetime(2026, 12, 1, 7, 30, tzinfo=ZoneInfo("Asia/Shanghai")),
            "2026-11-30",
            "2026-11",
            datetime(2026, 12, 1),
            datetime(2026, 12, 1),
        ),
    ],
    ids=["mid-month", "new-year", "leap-day", "other-time-zone"],
)
def test_periods_are_utc_days_and_months(now, day, month, day_end, month_end):
    assert period_id(Period.DAY, now) == day
    assert period_id(Period.MONTH, now) == month
    assert period_end(Period.DAY, now) == day_end.replace(tzinfo=UTC)
    assert period_end(Period.MONTH, now) == month_end.replace(tzinfo=UTC)


# --- roles and counters ----------------------------------------------------------------------


def test_users_get_their_role_everyone_else_the_default_and_admins_none():
    quotas = quotas_config(
        roles={
            "default": {"requests_per_day": 10},
            "trusted": {"users": [5, 6], "requests_per_day": 100, "tokens_per_month": 10**6},
        }
    )

    assert user_role(quotas, 5, admins=(7,)) == ("trusted", quotas.roles["trusted"])
    assert user_role(quotas, 9, admins=(7,)) == ("default", quotas.roles["default"])
    assert user_role(quotas, 7, admins=(7,)) == (ADMIN_ROLE, QuotaLimits())
    # A role's absent limits are no limits, not the default role's.
    assert quotas.roles["trusted"].tokens_per_day == 0


def test_without_a_default_role_unlisted_users_are_unlimited():
    quotas = quotas_config(roles={"trial": {"users": [1], "requests_per_day": 3}})

    assert user_role(quotas, 2, admins=()) == ("default", QuotaLimits())


def test_a_group_has_its_own_limits_or_every_groups():
    quotas = quotas_config(
        chats={"default": {"requests_per_day": 30}, "-1001": {"tokens_per_day": 5000}}
    )

    assert chat_limits(quotas, -1001) == QuotaLimits(tokens_per_day=5000)
    assert chat_limits(quotas, -2002) == QuotaLimits(requests_per_day=30)


def test_a_request_in_a_group_touches_the_users_counters_then_the_chats():
    quotas = quotas_config(
        roles={"default": {"requests_per_day": 10, "tokens_per_month": 900}},
        chats={"default": {"requests_per_month": 300}},
    )

    counters = counters_for(quotas, user_id=42, chat_id=-100, group=True, admins=(), now=NOW)

    assert counters == (
        Counter(CounterKey(Scope.USER, 42, "2026-11"), tokens=900),
        Counter(CounterKey(Scope.USER, 42, "2026-11-30"), requests=10),
        Counter(CounterKey(Scope.CHAT, -100, "2026-11"), requests=300),
        Counter(CounterKey(Scope.CHAT, -100, "2026-11-30")),
    )


def test_a_private_chat_touches_only_the_users_counters():
    quotas = quotas_config(
        roles={"default": {"requests_per_day": 10}}, chats={"default": {"requests_per_day": 1}}
    )

    counters = counters_for(quotas, user_id=42, chat_id=42, group=False, admins=(), now=NOW)

    assert {c.key.scope for c in counters} == {Scope.USER}


def test_a_bot_admin_is_counted_everywhere_but_limited_nowhere():
    quotas = quotas_config(
        roles={"default": {"requests_per_day": 1}}, chats={"default": {"requests_per_day": 1}}
    )

    counters = counters_for(quotas, user_id=7, chat_id=-100, group=True, admins=(7,), now=NOW)

    assert len(counters) == 4
    assert all(c.requests == 0 and c.tokens == 0 for c in counters)


# --- refusals --------------------------------------------------------------------------------

DAY = CounterKey(Scope.USER, 42, "2026-11-30")
MONTH = CounterKey(Scope.USER, 42, "2026-11")


@pytest.mark.parametrize(
    ("counter", "figures", "tokens", "expected"),
    [
        (Counter(DAY, requests=3), Figures(requests=2), 10, None),
        (Counter(DAY, requests=3), Figures(requests=3), 10, Measure.REQUESTS),
        (Counter(DAY, tokens=100), Figures(tokens=60, reserved=39), 500, None),
        (Counter(DAY, tokens=100), Figures(tokens=60, reserved=40), 500, Measure.TOKENS),
        (Counter(DAY, tokens=100), Figures(tokens=100), 0, None),
        (Counter(DAY), Figures(requests=10**6, tokens=10**9), 10, None),
    ],
    ids=["request-left", "requests-used", "tokens-left", "tokens-held", "no-tokens-needed", "none"],
)
def test_a_limit_refuses_only_when_used_up(counter, figures, tokens, expected):
    assert exhausted(counter, figures, tokens) is expected


def test_of_several_exhausted_limits_the_one_resetting_last_is_named():
    counters = [Counter(MONTH, requests=100), Counter(DAY, requests=5)]
    figures = {DAY: Figures(requests=5), MONTH: Figures(requests=100)}

    refused = refusal(counters, figures, 10, NOW)

    assert refused == Refusal(
        Scope.USER, Period.MONTH, Measure.REQUESTS, 100, datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert refusal(counters, {DAY: Figures(requests=4)}, 10, NOW) is None


def test_requests_asked_together_are_decided_in_order_against_what_those_before_took():
    group = CounterKey(Scope.CHAT, -100, DAY.period)
    asked = [
        ([Counter(DAY, tokens=1000), Counter(group, requests=2)], 600),
        ([Counter(DAY, tokens=1000), Counter(group, requests=2)], 600),  # tokens left: 400
        ([Counter(DAY, tokens=1000), Counter(group, requests=2)], 600),  # none left
        ([Counter(MONTH), Counter(group, requests=2)], 0),  # the group's 2 requests are used
    ]

    refusals, after = grant_in_turn(asked, {DAY: Figures(tokens=0)}, NOW)

    assert refusals[:2] == [None, None]
    assert refusals[2] is not None
    assert (refusals[2].scope, refusals[2].measure) == (Scope.USER, Measure.TOKENS)
    assert refusals[3] is not None
    assert (refusals[3].scope, refusals[3].measure) == (Scope.CHAT, Measure.REQUESTS)
    # The refused ones changed nothing.
    assert after == {
        DAY: Figures(requests=2, tokens=0, reserved=1200),
        group: Figures(requests=2, tokens=0, reserved=1200),
    }


# --- words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "en", "zh"),
    [
        (5 * 3600 + 12 * 60, "5 h 12 min", "5 小时 12 分钟"),
        (30, "1 min", "1 分钟"),
        (59 * 60 + 1, "1 h 0 min", "1 小时 0 分钟"),
        (3 * 86400 + 4 * 3600, "3 d 4 h", "3 天 4 小时"),
    ],
)
def test_waits_read_as_days_hours_and_minutes(seconds, en, zh):
    assert format_wait(seconds, "en") == en
    assert format_wait(seconds, "zh") == zh


def test_the_refusal_says_which_limit_and_when_it_resets():
    day_end = datetime(2026, 12, 1, tzinfo=UTC)
    now = day_end - timedelta(hours=5, minutes=12)
    requests = Refusal(Scope.USER, Period.DAY, Measure.REQUESTS, 50, day_end)
    tokens = Refusal(Scope.CHAT, Period.MONTH, Measure.TOKENS, 200000, day_end)

    assert refusal_text(requests, "en", now) == (
        "You have used your 50 requests for today; it resets in 5 h 12 min (00:00 UTC)."
    )
    assert refusal_text(tokens, "en", now) == (
        "This chat has used its 200,000 tokens for this month; it resets in 5 h 12 min "
        "(2026-12-01 00:00 UTC)."
    )
    assert refusal_text(requests, "zh", now) == (
        "你今天的 50 次请求已用完，5 小时 12 分钟后重置（00:00 UTC）。"
    )
    assert "本群本月" in refusal_text(tokens, "zh", now)


def test_reset_labels_name_the_time_of_a_day_and_the_date_of_a_month():
    at = datetime(2027, 1, 1, tzinfo=UTC)
    assert reset_label(Period.DAY, at) == "00:00 UTC"
    assert reset_label(Period.MONTH, at) == "2027-01-01 00:00 UTC"


def test_usage_lines_show_used_limit_left_and_held():
    lines = period_lines(
        Period.DAY,
        Figures(requests=12, tokens=3400, reserved=600),
        "en",
        NOW,
        requests_limit=50,
        tokens_limit=0,
    )

    assert lines == [
        "Today (resets in 5 h 13 min, 00:00 UTC):",
        "• requests: 12 of 50 (38 left)",
        "• tokens: 3,400 (no limit); 600 held for answers in progress",
    ]
    tokens = period_lines(Period.MONTH, Figures(tokens=900, reserved=200), "zh", NOW)[2]
    assert tokens == "• token：900（不限）；200 预留给进行中的回答"
    limited = period_lines(
        Period.MONTH, Figures(tokens=900, reserved=200), "en", NOW, tokens_limit=1000
    )[2]
    assert limited.startswith("• tokens: 900 of 1,000 (0 left)")


def test_rankings_name_chats_by_title_and_users_by_id():
    ranked = [
        Ranked(-100, "Readers", Figures(requests=3, tokens=1500)),
        Ranked(42, None, Figures(requests=1, tokens=7)),
    ]

    assert ranking_lines(ranked, "en") == [
        "1. Readers (-100): 3 requests, 1,500 tokens",
        "2. user 42: 1 requests, 7 tokens",
    ]
    assert ranking_lines([], "zh") == ["暂无"]


# --- the completion allowance ----------------------------------------------------------------


def test_the_completion_allowance_is_the_most_any_provider_may_answer():
    def provider(kind="openai", max_tokens=None):
        return ProviderConfig(name=kind, base_url="http://x", kind=kind, max_tokens=max_tokens)

    assert completion_allowance([provider()]) == DEFAULT_COMPLETION_ALLOWANCE
    assert completion_allowance([provider(max_tokens=300)]) == 300
    assert completion_allowance([provider(max_tokens=300), provider("anthropic")]) == 4096
    assert completion_allowance([provider(max_tokens=300), provider()]) == 1024


# --- configuration ---------------------------------------------------------------------------


def test_no_quotas_section_means_nothing_is_counted():
    assert not quotas_config().active
    assert not quotas_config(roles={"default": {"requests_per_day": 0}}).active
    assert quotas_config(chats={"-5": {"tokens_per_month": 1}}).active


@pytest.mark.parametrize(
    ("quotas", "path", "problem"),
    [
        (
            {"roles": {"default": {"requests_per_day": -1}}},
            "quotas.roles.default.requests_per_day",
            "must not be negative",
        ),
        ({"roles": {"default": {"users": [1]}}}, "quotas.roles.default.users", "everyone's"),
        (
            {"roles": {"a": {"users": [1]}, "b": {"users": [2, 1]}}},
            "quotas.roles.b.users",
            "user 1 is in role 'a' already",
        ),
        ({"roles": {"a": {"user": [1]}}}, "quotas.roles.a.user", "unknown key"),
        ({"chats": {"mygroup": {"requests_per_day": 1}}}, "quotas.chats.mygroup", "chat ids"),
        (
            {"chats": {"-5": {"tokens_per_day": "many"}}},
            "quotas.chats.-5.tokens_per_day",
            "integer",
        ),
        ({"hold_minutes": 0}, "quotas.hold_minutes", "must be positive"),
        ({"roles": []}, "quotas.roles", "expected a mapping"),
    ],
)
def test_bad_quotas_are_reported_with_their_key_path(quotas, path, problem):
    with pytest.raises(ConfigError) as info:
        quotas_config(**quotas)

    assert info.value.path == path
    assert problem in str(info.value)
