"""The outbox against the real PTB Bot and the fake Bot API: pacing, 429 holds, memory."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Bot

from bot.streaming import outbox as outbox_module
from bot.streaming.cadence import HANDOVER_SECONDS
from bot.streaming.editor import DraftSupport, StreamEditor
from bot.streaming.outbox import NextSlots, Outbox
from tests.factories import TOKEN


@pytest.fixture
async def real_bot(telegram):
    async with Bot(TOKEN, base_url=telegram.base_url, base_file_url=telegram.base_file_url) as bot:
        yield bot


async def test_a_429_holds_only_the_chat_that_received_it(telegram, real_bot):
    outbox = Outbox(private_interval=0.0, group_interval=0.0)
    telegram.inject_retry_after("sendMessage", 2, chat_id=1, times=1)

    async def send(chat_id):
        return await real_bot.send_message(chat_id, "hi")

    first = await outbox.call(1, lambda: send(1), must_deliver=False)
    assert first is None  # dropped: not a must-deliver call
    other = await outbox.call(2, lambda: send(2), must_deliver=True)
    assert other is not None
    calls = telegram.calls_to("sendMessage")
    assert calls[1].at - calls[0].at < 0.5, "chat 2 must not wait for chat 1's hold"

    held = await outbox.call(1, lambda: send(1), must_deliver=True)
    assert held is not None
    assert telegram.calls_to("sendMessage")[-1].at - calls[0].at >= 2.0
    assert outbox.retry_afters == 1


async def test_a_must_deliver_call_is_retried_after_the_hold(telegram, real_bot):
    outbox = Outbox(private_interval=0.0, group_interval=0.0)
    telegram.inject_retry_after("sendMessage", 1, chat_id=5, times=1)
    message = await outbox.call(5, lambda: real_bot.send_message(5, "final"), must_deliver=True)
    assert message is not None
    assert message.text == "final"
    ok = telegram.calls_to("sendMessage", ok=True)
    rejected = telegram.calls_to("sendMessage", ok=False)
    assert len(ok) == 1
    assert len(rejected) == 1
    assert ok[0].at - rejected[0].at >= 1.0


async def test_idle_chats_are_forgotten_once_there_are_many(monkeypatch, real_bot):
    monkeypatch.setattr(outbox_module, "PRUNE_ABOVE_CHATS", 10)
    outbox = Outbox(private_interval=0.0, group_interval=0.0)

    async def nothing():
        return None

    for chat_id in range(1, 30):
        await outbox.call(chat_id, nothing, must_deliver=False)
    assert len(outbox._budgets) <= 10


async def test_cancelled_waiters_give_their_global_slots_to_later_calls():
    outbox = Outbox(private_interval=0.0, group_interval=0.0, global_per_second=20.0)

    waiting = [
        asyncio.create_task(outbox.call(chat_id, sent, must_deliver=False))
        for chat_id in range(1, 21)
    ]
    await asyncio.sleep(0.01)
    for task in waiting[1:]:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    # Each slot is kept a moment for its own chat's next call (a final text), then freed.
    await asyncio.sleep(HANDOVER_SECONDS)

    booked = outbox._global.next_slot
    await asyncio.gather(*(outbox.call(100 + i, sent, must_deliver=False) for i in range(19)))
    # The 19 calls took the slots given back; only those whose time passed while they
    # waited for their own chats (a slot every 0.05 s) were booked anew.
    booked_anew = round((outbox._global.next_slot - booked) * 20)
    assert booked_anew < 19 // 2


# A chat interval far longer than any test, so waiting for it shows as a call still pending.
LONG_INTERVAL = 30.0


async def still_waiting(call) -> bool:
    """Start ``call``; whether it is still waiting for its slot a moment later (then cancel)."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0.3)
    waiting = not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return waiting


async def test_a_final_call_spends_the_chats_reserve_instead_of_waiting_its_interval(
    telegram, real_bot
):
    outbox = Outbox(private_interval=LONG_INTERVAL, group_interval=LONG_INTERVAL, final_burst=1)

    def send(text):
        return lambda: real_bot.send_message(3, text)

    assert await outbox.call(3, send("draft"), must_deliver=False) is not None
    async with asyncio.timeout(10):
        final = await outbox.call(3, send("final"), must_deliver=True)
    assert final is not None
    assert await still_waiting(outbox.call(3, send("update"), must_deliver=False))
    assert await still_waiting(outbox.call(3, send("again"), must_deliver=True)), (
        "one call in reserve: the second must-deliver call waits"
    )
    assert [c.params["text"] for c in telegram.calls_to("sendMessage")] == ["draft", "final"]


async def test_with_no_final_burst_a_final_call_waits_its_interval(telegram, real_bot):
    outbox = Outbox(private_interval=LONG_INTERVAL, group_interval=LONG_INTERVAL)
    assert await outbox.call(3, lambda: real_bot.send_message(3, "a"), must_deliver=False)
    assert await still_waiting(
        outbox.call(3, lambda: real_bot.send_message(3, "b"), must_deliver=True)
    )


async def test_after_a_429_a_final_call_does_not_spend_the_reserve(telegram, real_bot):
    outbox = Outbox(private_interval=LONG_INTERVAL, group_interval=LONG_INTERVAL, final_burst=1)
    telegram.inject_retry_after("sendMessage", 1, chat_id=4, times=1)

    def send(text):
        return lambda: real_bot.send_message(4, text)

    assert await outbox.call(4, send("refused"), must_deliver=False) is None
    async with asyncio.timeout(10):
        assert await outbox.call(4, send("after the hold"), must_deliver=True) is not None
    # Without the 429 this call would go at once on the reserve.
    assert await still_waiting(outbox.call(4, send("final"), must_deliver=True))
    assert outbox.retry_afters == 1


class FrozenClock:
    """A clock that moves only when told, so the outbox's answers are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def sent() -> bool:
    """A call that went out."""
    return True


def paced(
    clock: FrozenClock, *, private_interval: float = 1.0, global_per_second: float = 30.0
) -> Outbox:
    """An outbox on ``clock``: private chats 1 s apart and groups 3 s unless told."""
    return Outbox(
        private_interval=private_interval,
        group_interval=3.0,
        global_per_second=global_per_second,
        clock=clock,
    )


async def test_next_slots_of_a_new_chat_is_now_with_its_kinds_spacing():
    outbox = Outbox(private_interval=1.0, group_interval=3.0, clock=FrozenClock())
    assert outbox.next_slots(7) == NextSlots(0.0, 1.0, call_waiting=False)
    assert outbox.next_slots(-100) == NextSlots(0.0, 3.0, call_waiting=False)
    assert outbox.next_slots(7, interval=0.5) == NextSlots(0.0, 0.5, call_waiting=False)


async def test_next_slots_counts_down_from_the_last_call_of_the_chat():
    clock = FrozenClock()
    outbox = paced(clock)

    await outbox.call(7, sent, must_deliver=False)
    assert outbox.next_slots(7) == NextSlots(1.0, 1.0, call_waiting=False)
    clock.now += 0.75
    assert outbox.next_slots(7).until == pytest.approx(0.25)
    assert outbox.next_slots(8).until == 0.0, "another chat's call changes nothing"


async def test_a_call_waiting_for_the_chats_own_budget_says_when_it_goes():
    clock = FrozenClock()
    outbox = paced(clock)

    await outbox.call(7, sent, must_deliver=False)
    clock.now += 0.25
    waiting = asyncio.create_task(outbox.call(7, sent, must_deliver=False))
    while not outbox.next_slots(7).call_waiting:
        await asyncio.sleep(0)
    assert outbox.next_slots(7) == NextSlots(0.75, 1.0, call_waiting=True)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not outbox.next_slots(7).call_waiting


async def test_next_slots_of_a_chat_waiting_for_the_bots_budget_is_its_reserved_slot():
    clock = FrozenClock()
    # Two calls a second in all: the second chat's call is given the slot 0.5 s on.
    outbox = paced(clock, private_interval=0.0, global_per_second=2.0)

    await outbox.call(1, sent, must_deliver=False)
    waiting = asyncio.create_task(outbox.call(2, sent, must_deliver=False))
    while outbox.next_slots(2).until < 0.5:
        await asyncio.sleep(0)
    assert outbox.next_slots(2) == NextSlots(0.5, 0.0, call_waiting=True)
    await waiting
    assert outbox.next_slots(2) == NextSlots(0.0, 0.0, call_waiting=False), "the slot is spent"


async def test_next_slots_after_a_429_waits_out_the_hold_then_doubles_the_spacing(
    telegram, real_bot
):
    clock = FrozenClock()
    outbox = paced(clock)
    telegram.inject_retry_after("sendMessage", 5, chat_id=4, times=1)
    assert await outbox.call(4, lambda: real_bot.send_message(4, "x"), must_deliver=False) is None
    assert outbox.next_slots(4) == NextSlots(5.0, 2.0, call_waiting=False)


async def test_an_editor_reports_the_spacing_of_its_own_kind_of_update(real_bot):
    outbox = Outbox(private_interval=1.0, group_interval=3.0, clock=FrozenClock())
    drafts = DraftSupport(enabled=True, interval=0.4)
    assert StreamEditor(real_bot, outbox, 7, drafts=drafts).next_updates()[:2] == (0.0, 0.4)
    assert StreamEditor(real_bot, outbox, 7).next_updates()[:2] == (0.0, 1.0)
    assert StreamEditor(real_bot, outbox, -100, drafts=drafts).next_updates()[:2] == (0.0, 3.0)
    drafts.refuse(8)
    assert StreamEditor(real_bot, outbox, 8, drafts=drafts).next_updates()[:2] == (0.0, 1.0)


async def test_a_call_cut_off_in_flight_still_counts_against_the_chats_budget():
    # An editor that stops lets its update in flight land: the next call of the chat (its
    # final text) must keep the spacing behind it, or Telegram sees them too close.
    clock = FrozenClock()
    outbox = paced(clock)
    in_flight = asyncio.Event()

    async def slow_update():
        in_flight.set()
        await asyncio.sleep(30)
        return True

    call = asyncio.create_task(outbox.call(7, slow_update, must_deliver=False))
    await in_flight.wait()
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    assert outbox.next_slots(7) == NextSlots(1.0, 1.0, call_waiting=False)
