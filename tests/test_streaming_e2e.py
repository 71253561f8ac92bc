"""End to end: native drafts in private chats, the Stop button, and queued messages."""

from __future__ import annotations

from itertools import pairwise

from telegram import Bot

from bot.runner import running
from tests.e2e import answers_once_stored, bot_texts, stop_data, turn_over, until
from tests.factories import TOKEN
from tests.fakes.provider import Chunk, Delay, Done, Finish, Role
from tests.fakes.telegram import FakeTelegram, FloodLimits

USER = 42
GROUP = -1001234


async def test_private_chat_streams_as_a_draft_then_sends_the_final_message(
    telegram, provider, bot, config
):
    pieces = [f"w{i} " for i in range(16)]
    provider.enqueue_stream(pieces, delay=0.15)
    telegram.user_sends("draft it")
    answer = "".join(pieces).strip()
    await until(lambda: answer in bot_texts(telegram))

    drafts = telegram.drafts(USER)
    assert len(drafts) >= 3
    assert len({d.draft_id for d in drafts}) == 1
    texts = [d.text for d in drafts]
    assert all(b.startswith(a) for a, b in pairwise(texts))
    gaps = [b.at - a.at for a, b in pairwise(drafts)]
    assert min(gaps) >= config.streaming.draft_interval
    assert telegram.calls_to("editMessageText") == []
    (final,) = telegram.calls_to("sendMessage")
    assert final.params["text"] == answer
    assert final.at > drafts[-1].at
    assert "reply_markup" not in final.params


async def test_a_chat_that_refuses_drafts_falls_back_to_edits_for_good(telegram, provider, bot):
    telegram.inject_error("sendMessageDraft", 400, "Bad Request: drafts are unavailable")
    provider.enqueue_stream([f"a{i} " for i in range(8)], delay=0.3)
    telegram.user_sends("first")
    await until(lambda: "a7" in "".join(bot_texts(telegram)))
    assert telegram.calls_to("editMessageText"), "the answer should continue with edits"

    provider.enqueue_stream(["second answer"])
    telegram.user_sends("second")
    await until(lambda: "second answer" in bot_texts(telegram))
    assert len(telegram.calls_to("sendMessageDraft")) == 1


async def test_the_stop_button_ends_the_answer_and_keeps_what_arrived(
    telegram, provider, bot, config
):
    provider.enqueue(Role(), Chunk("Part one. "), Delay(0.2), Chunk("Part two."), Delay(30))
    telegram.user_sends("/chat a long story", chat_id=GROUP)
    await until(lambda: stop_data(telegram, GROUP) is not None)
    await until(lambda: "Part two." in "".join(bot_texts(telegram, GROUP)), timeout=10)
    data, message_id = stop_data(telegram, GROUP)
    telegram.user_presses(data, message_id=message_id, chat_id=GROUP)

    await until(lambda: any("Stopped" in t for t in bot_texts(telegram, GROUP)))
    assert bot_texts(telegram, GROUP)[-1] == "Part one. Part two.\n\n⏹ Stopped."
    assert stop_data(telegram, GROUP) is None, "the button goes away with the final text"
    (answered,) = telegram.calls_to("answerCallbackQuery")
    assert answered.params["text"] == "Stopping…"
    assert await answers_once_stored(config, 1) == [("Part one. Part two.", "stopped")]


async def test_only_the_asker_may_stop_an_answer(telegram, provider, bot):
    provider.enqueue(
        Role(), Chunk("Still going"), Delay(1.5), Chunk(" and done."), Finish(), Done()
    )
    telegram.user_sends("/chat go", chat_id=GROUP, user_id=7)
    await until(lambda: stop_data(telegram, GROUP) is not None)
    data, message_id = stop_data(telegram, GROUP)
    telegram.user_presses(data, message_id=message_id, chat_id=GROUP, user_id=8)

    await until(lambda: "Still going and done." in bot_texts(telegram, GROUP))
    (answered,) = telegram.calls_to("answerCallbackQuery")
    assert "Only the person who asked" in answered.params["text"]


async def test_stopping_a_draft_stops_the_answer(telegram, provider, bot, config):
    provider.enqueue(Role(), Chunk("Drafted so far"), Delay(30))
    telegram.user_sends("write forever")
    await until(lambda: bool(telegram.drafts(USER)))
    draft = telegram.drafts(USER)[0]
    telegram.push_update(
        {
            "stopped_message_generation": {
                "chat": {"id": USER, "type": "private", "first_name": "Alice"},
                "draft_id": draft.draft_id,
            }
        }
    )
    await until(lambda: any("Stopped" in t for t in bot_texts(telegram)))
    assert bot_texts(telegram) == ["Drafted so far\n\n⏹ Stopped."]
    assert await answers_once_stored(config, 1) == [("Drafted so far", "stopped")]


async def test_a_message_sent_while_answering_is_queued_and_answered_after(telegram, provider, bot):
    provider.enqueue_stream(["First ", "answer."], delay=0.8)
    provider.enqueue_stream(["Second answer."])
    telegram.user_sends("one")
    await until(lambda: bool(provider.requests))
    telegram.user_sends("two")

    await until(lambda: "Second answer." in bot_texts(telegram))
    texts = bot_texts(telegram)
    assert texts[0].startswith("⏳")
    assert texts[1:] == ["First answer.", "Second answer."]
    second = [m["content"] for m in provider.requests[1].json["messages"]]
    assert second[-3:] == ["one", "First answer.", "two"]


async def test_a_deleted_answer_message_continues_in_a_new_one(telegram, provider, bot):
    provider.enqueue_stream([f"piece{i} " for i in range(10)], delay=0.4)
    telegram.user_sends("/chat go on", chat_id=GROUP)
    await until(lambda: bool(telegram.messages(GROUP, from_bot=True)))
    first = telegram.messages(GROUP, from_bot=True)[0]
    async with Bot(TOKEN, base_url=telegram.base_url) as other_client:
        await other_client.delete_message(GROUP, first.message_id)

    await until(lambda: any("piece9" in t for t in bot_texts(telegram, GROUP)), timeout=20)
    assert bot_texts(telegram, GROUP)[-1] == "".join(f"piece{i} " for i in range(10)).strip()
    assert telegram.calls_to("editMessageText", ok=False), "the edit of the deleted message"


async def test_a_stream_ending_right_after_a_draft_gets_its_final_message_at_once(
    provider, config_for
):
    # Telegram's limits enforced, and updates spaced far longer than the test may take: a
    # final text waiting out the spacing behind the draft would never arrive in time.
    async with FakeTelegram(token=TOKEN, flood=FloodLimits()) as telegram:
        config = config_for(
            telegram={"base_url": telegram.base_url, "base_file_url": telegram.base_file_url},
            streaming={"draft_interval": 60, "edit_interval_private": 60},
        )
        provider.enqueue(
            Role(), Chunk("Right after"), Delay(0.3), Chunk(" the draft."), Finish(), Done()
        )
        async with running(config):
            telegram.user_sends("go")
            await until(lambda: "Right after the draft." in bot_texts(telegram), timeout=20)
    (draft,) = telegram.drafts(USER)
    assert draft.text == "Right after"
    (final,) = telegram.calls_to("sendMessage")
    assert final.at > draft.at
    assert [c.summary() for c in telegram.calls if c.error_code == 429] == []


async def test_while_the_chat_cannot_show_more_the_body_waits_unread_up_to_the_cap(
    telegram, provider, config_for
):
    # The next draft is a minute away, so the rest of the answer waits in the socket and
    # the stream's end is noticed only when the cap on holding a body runs out.
    config = config_for(
        streaming={"draft_interval": 60, "edit_interval_private": 60, "read_interval_max": 0.8}
    )
    provider.enqueue(Role(), Chunk("First"), Delay(0.1), Chunk(" and last."), Finish(), Done())
    async with running(config):
        telegram.user_sends("go")
        await until(lambda: "First and last." in bot_texts(telegram), timeout=20)
    (draft,) = telegram.drafts(USER)
    assert draft.text == "First"
    (final,) = telegram.calls_to("sendMessage")
    assert final.at - draft.at >= 0.75


async def test_many_answers_in_a_row_to_one_chat_never_meet_a_429(provider, config_for):
    # The default pacing against Telegram's limits: each answer's final text spends the
    # reserve right after its draft, so the next answer must wait for it to refill.
    answers = 6
    async with FakeTelegram(token=TOKEN, flood=FloodLimits()) as telegram:
        config = config_for(
            telegram={"base_url": telegram.base_url, "base_file_url": telegram.base_file_url}
        )
        async with running(config) as application:
            for n in range(answers):
                provider.enqueue(
                    Role(), Chunk(f"Answer {n}"), Delay(0.1), Chunk(" ends."), Finish(), Done()
                )
                telegram.user_sends(f"question {n}")
                await until(lambda n=n: f"Answer {n} ends." in bot_texts(telegram), timeout=30)
                await turn_over(application)
    assert bot_texts(telegram) == [f"Answer {n} ends." for n in range(answers)]
    assert [c.summary() for c in telegram.calls if c.error_code == 429] == []
