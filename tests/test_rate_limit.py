"""The per-user request rate, without sockets."""

from __future__ import annotations

import pytest

from bot.rate_limit import PRUNE_ABOVE_USERS, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_nth_request_in_a_minute_is_refused_with_the_time_until_the_oldest_expires():
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    assert limiter.take(1) is None
    clock.now += 10
    assert limiter.take(1) is None
    assert limiter.take(1) is None
    clock.now += 5
    assert limiter.take(1) == pytest.approx(45.0)
    clock.now += 45
    assert limiter.take(1) is None


def test_a_refused_request_does_not_count_against_the_user():
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.take(1) is None
    for _ in range(5):
        clock.now += 10
        assert limiter.take(1) is not None
    clock.now += 10.5
    assert limiter.take(1) is None


def test_users_have_separate_windows_and_zero_means_no_limit():
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.take(1) is None
    assert limiter.take(2) is None
    assert limiter.take(1) is not None
    unlimited = RateLimiter(0, clock=clock)
    assert all(unlimited.take(1) is None for _ in range(100))


def test_idle_users_are_forgotten_when_many_are_remembered():
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    for user in range(PRUNE_ABOVE_USERS):
        limiter.take(user)
    clock.now += 61
    limiter.take(-1)
    assert len(limiter._requests) == 1
