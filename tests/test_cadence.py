"""Flood budget decisions, without sockets or sleeping."""

from __future__ import annotations

import random

import pytest

from bot.streaming.cadence import HANDOVER_SECONDS, PENALTY_FACTOR, ChatBudget, GlobalBudget


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


def test_a_slot_a_chat_gives_up_waits_for_that_chats_next_call_before_others():
    budget = GlobalBudget(rate=10.0)
    mine, theirs = budget.reserve(0.0, chat_id=1), budget.reserve(0.0, chat_id=2)
    budget.release(theirs, chat_id=2, now=0.01)
    # Chat 3 has nothing queued: it waits at the back instead of taking chat 2's turn.
    assert budget.reserve(0.01, chat_id=3) == pytest.approx(0.2)
    # Chat 2's final text, right after its update was cancelled, keeps that turn.
    assert budget.reserve(0.02, chat_id=2) == pytest.approx(theirs)
    assert mine == 0.0


def test_a_chat_takes_back_its_slot_at_once_if_the_slots_time_passed_during_the_hand_over():
    # Its stream's end was read just before the slot; the final text was ready a moment
    # after the slot's time: it goes now, not at the back of the queue.
    budget = GlobalBudget(rate=10.0)
    slots = [budget.reserve(0.0, chat_id=chat) for chat in (1, 2, 3)]
    budget.release(slots[2], chat_id=3, now=0.19)
    assert budget.reserve(0.21, chat_id=3) == pytest.approx(0.21)
    assert budget.reserve(0.21, chat_id=4) == pytest.approx(0.3)


def test_a_slot_its_chat_does_not_take_back_in_time_goes_to_anyone():
    budget = GlobalBudget(rate=10.0)
    slots = [budget.reserve(0.0, chat_id=chat) for chat in (1, 2, 3)]
    budget.release(slots[2], chat_id=3, now=0.0)
    assert budget.reserve(HANDOVER_SECONDS, chat_id=4) == pytest.approx(slots[2])
    # Chat 3 comes back too late: it queues like anyone.
    assert budget.reserve(HANDOVER_SECONDS, chat_id=3) == pytest.approx(0.3)


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


def test_a_must_deliver_call_spends_the_reserve_and_goes_at_once_after_an_update():
    budget = ChatBudget(interval=1.0, reserve=1)
    budget.sent(100.0)
    assert budget.delay(100.05, must_deliver=True) == 0.0
    assert budget.delay(100.05) == pytest.approx(0.95), "an update still waits its interval"
    budget.sent(100.05)
    # The reserve is spent: the next update keeps the spacing behind both calls.
    assert budget.delay(100.1) == pytest.approx(1.9)
    assert budget.delay(100.1, must_deliver=True) == pytest.approx(0.9)


def test_without_a_reserve_a_must_deliver_call_waits_like_an_update():
    budget = ChatBudget(interval=1.0, reserve=0)
    budget.sent(100.0)
    assert budget.delay(100.05, must_deliver=True) == pytest.approx(0.95)


def paced(budget: ChatBudget, calls: list[tuple[float, bool]]) -> list[float]:
    """When each call goes out if sent as soon as the budget allows: (asked at, must deliver)."""
    times = []
    now = 0.0
    for asked, must_deliver in calls:
        now = max(now, asked)
        now += budget.delay(now, must_deliver=must_deliver)
        budget.sent(now)
        times.append(now)
    return times


@pytest.mark.parametrize("reserve", [0, 1, 2])
def test_updates_keep_the_same_spacing_whatever_the_reserve(reserve):
    asked = [(0.1 * i, False) for i in range(40)]
    assert paced(ChatBudget(1.0, reserve), asked) == pytest.approx(paced(ChatBudget(1.0), asked))
    assert paced(ChatBudget(1.0, reserve), asked)[:3] == pytest.approx([0.0, 1.0, 2.0])


@pytest.mark.parametrize(("interval", "reserve"), [(1.0, 1), (1.0, 2), (3.0, 1), (0.5, 0)])
def test_no_window_holds_more_than_the_burst_plus_the_rate_times_its_length(interval, reserve):
    rng = random.Random(7)
    asked, now = [], 0.0
    for _ in range(400):
        now += rng.choice([0.0, 0.0, 0.01, 0.3, interval, 2.5 * interval])
        asked.append((now, rng.random() < 0.4))
    times = paced(ChatBudget(interval, reserve), asked)
    assert times == sorted(times)
    for first, start in enumerate(times):
        for last in range(first, len(times)):
            calls = last - first + 1
            assert calls <= 1 + reserve + (times[last] - start) / interval + 1e-9
    # The reserve is used, not just allowed: some burst reaches it.
    bursts = [sum(1 for t in times if start <= t < start + 1e-6) for start in times]
    assert max(bursts) == 1 + reserve


def test_a_429_empties_the_reserve_until_the_penalty_is_over():
    budget = ChatBudget(interval=1.0, reserve=1)
    budget.sent(10.0)
    budget.retry_after(10.1, 5.0)
    assert budget.delay(10.2, must_deliver=True) == pytest.approx(4.9), "the hold applies"
    budget.sent(15.1)
    # Within the penalty the reserve is not spent: the widened interval applies to all.
    assert budget.delay(15.2, must_deliver=True) == pytest.approx(1.0 * PENALTY_FACTOR - 0.1)
    over = budget.penalty_until + 1.0
    budget.sent(over)
    assert budget.delay(over + 0.05, must_deliver=True) == 0.0, "the reserve is back after it"
