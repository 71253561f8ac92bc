"""The flood budget shared through Redis: two outboxes stand for two instances of the bot."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket

import pytest
from telegram import Bot

from bot.streaming.outbox import Outbox
from bot.streaming.shared_budget import (
    Availability,
    SharedBudget,
    chat_key,
    global_key,
    namespace,
    parse_answer,
)
from tests.factories import TOKEN
from tests.fakes.telegram import FakeTelegram, FloodLimits

RATE = 5.0

# ------------------------------------------------------------------ the pure parts


def test_keys_carry_the_prefix_and_the_bot_id_but_never_the_secret():
    space = namespace("tg-llm-bot", "123456:SECRET-part")
    assert space == "{tg-llm-bot:123456}"
    assert global_key(space) == "{tg-llm-bot:123456}:global"
    assert chat_key(space, -100777) == "{tg-llm-bot:123456}:chat:-100777"
    assert "SECRET" not in space


def test_the_acquire_reply_is_read_in_seconds():
    answer = parse_answer(
        [b"1", b"250000", b"1700000000250000", b"1700000000200000", b"1699999999900000"]
    )
    assert answer.granted
    assert answer.wait == 0.25
    assert answer.chat_next == "1700000000250000"
    assert answer.chat_before == "1699999999900000"
    assert not parse_answer([b"0", b"1000000", b"0", b"0", b"0"]).granted


def test_an_outage_is_announced_once_and_redis_is_retried_later():
    availability = Availability(retry_seconds=5.0)
    assert availability.usable(0.0)
    assert availability.failed(1.0) is True
    assert not availability.usable(3.0)
    assert availability.usable(6.0)
    assert availability.failed(6.0) is False, "the same outage: no second warning"
    assert availability.succeeded() is True
    assert availability.succeeded() is False
    assert availability.usable(6.5)


# ------------------------------------------------------------------- against Redis


@pytest.fixture
async def flood_telegram():
    """A fake Bot API enforcing a bot-wide rate of RATE calls a second (small bursts)."""
    limits = FloodLimits(
        per_chat_interval=0.05, per_chat_burst=10, global_per_second=RATE, global_burst=2
    )
    async with FakeTelegram(token=TOKEN, flood=limits) as fake:
        yield fake


@pytest.fixture
async def real_bot(flood_telegram):
    async with Bot(
        TOKEN, base_url=flood_telegram.base_url, base_file_url=flood_telegram.base_file_url
    ) as bot:
        yield bot


@pytest.fixture
async def budgets(redis_space):
    """Two instances' shared budgets on one key space."""
    space = namespace(redis_space.prefix, TOKEN)
    made = [SharedBudget.from_url(redis_space.url, space, global_per_second=RATE) for _ in range(2)]
    try:
        yield made
    finally:
        for budget in made:
            await budget.aclose()


def outbox(shared, rate=RATE):
    return Outbox(private_interval=0.0, group_interval=0.0, global_per_second=rate, shared=shared)


def most_in_any_second(times):
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


async def test_two_instances_together_stay_within_the_bots_global_rate(
    flood_telegram, real_bot, budgets
):
    first, second = outbox(budgets[0]), outbox(budgets[1])

    async def send(box, chat_id):
        return await box.call(
            chat_id, lambda: real_bot.send_message(chat_id, "hi"), must_deliver=False
        )

    # Each outbox alone would send at RATE: twice the bot's budget together.
    results = await asyncio.gather(
        *(send(first, chat_id) for chat_id in range(1, 9)),
        *(send(second, chat_id) for chat_id in range(101, 109)),
    )
    assert all(result is not None for result in results)
    assert not flood_telegram.calls_to("sendMessage", ok=False), "no 429 may occur"
    times = [call.at for call in flood_telegram.calls_to("sendMessage")]
    assert len(times) == 16
    assert most_in_any_second(times) <= RATE + 1


async def test_a_429_in_one_instance_holds_the_chat_in_the_other(flood_telegram, real_bot, budgets):
    first, second = outbox(budgets[0]), outbox(budgets[1])
    flood_telegram.inject_retry_after("sendMessage", 2, chat_id=7, times=1)

    dropped = await first.call(7, lambda: real_bot.send_message(7, "a"), must_deliver=False)
    assert dropped is None
    sent = await second.call(7, lambda: real_bot.send_message(7, "b"), must_deliver=True)
    assert sent is not None
    rejected, accepted = flood_telegram.calls_to("sendMessage")
    assert not rejected.ok
    assert accepted.ok
    assert accepted.at - rejected.at >= 2.0, "the other instance must sit out the hold"
    other = await second.call(8, lambda: real_bot.send_message(8, "c"), must_deliver=True)
    assert other is not None
    assert flood_telegram.calls_to("sendMessage")[-1].at < accepted.at + 1.0


async def test_a_chats_interval_holds_across_instances(flood_telegram, real_bot, budgets):
    interval = 0.5
    boxes = [
        Outbox(private_interval=interval, group_interval=interval, shared=budget)
        for budget in budgets
    ]
    await asyncio.gather(
        *(
            boxes[i % 2].call(9, lambda: real_bot.send_message(9, "x"), must_deliver=True)
            for i in range(4)
        )
    )
    times = [call.at for call in flood_telegram.calls_to("sendMessage", 9)]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Redis' clock books the slots; the fake's arrival times see small network jitter.
    assert min(gaps) >= interval - 0.05


async def test_a_call_waiting_for_its_shared_slot_says_when_it_goes(
    flood_telegram, real_bot, budgets
):
    # The reads of a streamed answer are timed by next_slots: after another instance's
    # call, this one's own budget is free, but Redis makes it wait the chat's interval.
    interval = 1.0
    first, second = (
        Outbox(private_interval=interval, group_interval=interval, shared=budget)
        for budget in budgets
    )
    await first.call(9, lambda: real_bot.send_message(9, "a"), must_deliver=True)
    waiting = asyncio.create_task(
        second.call(9, lambda: real_bot.send_message(9, "b"), must_deliver=False)
    )
    async with asyncio.timeout(0.5):
        while second.next_slots(9).until < 0.5:
            await asyncio.sleep(0.005)
    slots = second.next_slots(9)
    assert slots.call_waiting
    assert slots.until <= interval
    assert await waiting is not None
    assert not second.next_slots(9).call_waiting


async def test_an_unused_slot_does_not_delay_the_chat(flood_telegram, real_bot, budgets):
    box = Outbox(private_interval=30.0, group_interval=30.0, shared=budgets[0])

    async def nothing():
        return None

    assert await box.call(11, nothing, must_deliver=False) is None
    other = Outbox(private_interval=30.0, group_interval=30.0, shared=budgets[1])
    async with asyncio.timeout(5):
        sent = await other.call(11, lambda: real_bot.send_message(11, "y"), must_deliver=True)
    assert sent is not None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_without_redis_the_outbox_keeps_sending_on_its_own_budget(
    flood_telegram, real_bot, caplog
):
    budget = SharedBudget.from_url(
        f"redis://127.0.0.1:{closed_port()}/0", "{test}", global_per_second=RATE
    )
    box = outbox(budget)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.streaming.shared_budget"):
            for chat_id in (21, 22, 23):
                sent = await box.call(
                    chat_id, lambda c=chat_id: real_bot.send_message(c, "z"), must_deliver=True
                )
                assert sent is not None
    finally:
        await budget.aclose()
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert len(flood_telegram.calls_to("sendMessage", ok=True)) == 3


async def test_a_cancelled_wait_for_a_slot_always_ends_cancelled(budgets):
    # redis-py may deliver a reply to a cancelled task and drop the cancellation; an editor
    # closing at that moment would wait forever. Cancel at many points of the exchange.
    budget = budgets[0]
    outcomes = []
    for attempt in range(200):
        waiting = asyncio.create_task(budget.turn(1000 + attempt % 7, 0.0))
        for _ in range(attempt % 9):
            await asyncio.sleep(0)
        if not waiting.cancel():
            continue
        done, _ = await asyncio.wait([waiting], timeout=5)
        assert done, "a cancelled wait must end"
        outcomes.append(waiting.cancelled())
    assert outcomes
    assert all(outcomes), "every cancelled wait must end cancelled, never with a slot"


async def still_waiting(call, seconds=0.3) -> bool:
    """Start ``call``; whether it is still waiting for its slot ``seconds`` later (then cancel)."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(seconds)
    waiting = not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return waiting


def reserving(shared):
    """An instance's outbox with a long chat interval and one call in reserve."""
    return Outbox(private_interval=30.0, group_interval=30.0, final_burst=1, shared=shared)


async def test_a_chats_reserve_is_shared_by_the_instances(flood_telegram, real_bot, budgets):
    first, second = reserving(budgets[0]), reserving(budgets[1])

    def send(text):
        return lambda: real_bot.send_message(12, text)

    assert await first.call(12, send("draft"), must_deliver=False) is not None
    async with asyncio.timeout(10):
        assert await second.call(12, send("final"), must_deliver=True) is not None
    # The reserve is spent on the other instance: this one's local budget alone would allow both.
    assert await still_waiting(first.call(12, send("next final"), must_deliver=True))
    assert await still_waiting(first.call(12, send("update"), must_deliver=False))
    assert len(flood_telegram.calls_to("sendMessage", 12)) == 2


async def test_an_unused_final_slot_gives_back_the_reserve_but_not_the_spacing(
    flood_telegram, real_bot, budgets
):
    first, second = reserving(budgets[0]), reserving(budgets[1])

    async def nothing():
        return None

    assert await first.call(13, lambda: real_bot.send_message(13, "a"), must_deliver=False)
    assert await second.call(13, nothing, must_deliver=True) is None
    # The second instance's own budget is blank: Redis alone decides for it.
    assert await still_waiting(
        second.call(13, lambda: real_bot.send_message(13, "b"), must_deliver=False)
    ), "giving the slot back must not undo the spacing of the call before it"
    async with asyncio.timeout(10):
        final = await second.call(13, lambda: real_bot.send_message(13, "c"), must_deliver=True)
    assert final is not None


async def test_a_429_on_one_instance_empties_the_reserve_on_the_other(
    flood_telegram, real_bot, budgets
):
    first, second = reserving(budgets[0]), reserving(budgets[1])
    flood_telegram.inject_retry_after("sendMessage", 1, chat_id=14, times=1)

    def send(text):
        return lambda: real_bot.send_message(14, text)

    assert await first.call(14, send("refused"), must_deliver=False) is None
    # The hold is 1 s; spending the reserve, the final would follow it. The other instance's
    # own budget knows no 429 and would let it go at once.
    assert await still_waiting(second.call(14, send("final"), must_deliver=True), seconds=2.0)
    assert len(flood_telegram.calls_to("sendMessage", 14)) == 1
