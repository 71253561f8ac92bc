"""Flood budget decisions, without sockets or sleeping."""

from __future__ import annotations

import pytest

from bot.streaming.cadence import PENALTY_FACTOR, ChatBudget, GlobalBudget


def test_a_fresh_chat_may_send_at_once_then_waits_its_interval():
    budget = ChatBudget(interval=1.0)
    assert budget.delay(100.0) == 0.0
    budget.sent(100.0)
    assert budget.delay(100.4) == pytest.approx(0.6)
    assert budget.delay(101.0) == 0.0


def test_retry_after_holds_the_chat_and_widens_its_interval_afterwards():
    budget = ChatBudget(interval=1.0)
    budget.retry_after(10.0, 5.0)
    assert budget.delay(10.0) == pytest.approx(5.0)
    budget.sent(15.0)
    assert budget.delay(15.0) == pytest.approx(1.0 * PENALTY_FACTOR)


def test_global_budget_hands_out_evenly_spaced_slots():
    budget = GlobalBudget(rate=30.0)
    slots = [budget.reserve(0.0) for _ in range(4)]
    assert slots == pytest.approx([0.0, 1 / 30, 2 / 30, 3 / 30])
    assert budget.reserve(10.0) == 10.0


def test_a_released_slot_goes_to_the_next_caller_instead_of_idling():
    budget = GlobalBudget(rate=10.0)
    slots = [budget.reserve(0.0) for _ in range(5)]
    budget.release(slots[1])
    budget.release(slots[3])
    assert budget.reserve(0.05) == pytest.approx(0.1)
    assert budget.reserve(0.05) == pytest.approx(0.3)
    assert budget.reserve(0.05) == pytest.approx(0.5)


def test_a_released_slot_in_the_past_is_not_handed_out():
    budget = GlobalBudget(rate=10.0)
    budget.release(budget.reserve(0.0))
    assert budget.reserve(1.0) == 1.0


def test_a_chat_is_idle_only_once_its_interval_hold_and_penalty_are_over():
    budget = ChatBudget(interval=1.0)
    assert budget.idle(0.0)
    budget.sent(0.0)
    assert not budget.idle(0.5)
    assert budget.idle(1.0)
    budget.retry_after(1.0, 3.0)
    assert not budget.idle(10.0)
    assert budget.idle(100.0)
