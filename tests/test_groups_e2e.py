"""Groups end to end: who the bot answers, forum topics, quoted replies, and the flood budget."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e import answers_once_stored, bot_texts, turn_over, until
from tests.fakes.telegram import BOT_USERNAME, FakeTelegram, FloodLimits

GROUP = -1007777
ALICE, BOB = 7, 8
MENTION = f"@{BOT_USERNAME}"


@pytest.fixture
def config(config_for):
    return config_for(streaming={"drafts": False})


def user_turns(request):
    return [m["content"] for m in request.json["messages"] if m["role"] == "user"]


async def test_in_a_group_only_mentions_replies_to_the_bot_and_chat_are_answered(
    telegram, provider, bot
):
    telegram.user_sends("good morning everyone", chat_id=GROUP, user_id=ALICE)
    telegram.user_sends("/chat@some_other_bot hello", chat_id=GROUP, user_id=ALICE)
    provider.enqueue_stream(["Four."])
    telegram.user_sends(f"{MENTION} what is 2+2?", chat_id=GROUP, user_id=ALICE)
    await until(lambda: "Four." in bot_texts(telegram, GROUP))
    assert user_turns(provider.requests[0]) == ["what is 2+2?"], "the mention is taken out"

    answer = next(m for m in telegram.messages(GROUP) if m.from_bot)
    provider.enqueue_stream(["Because."])
    telegram.user_sends(
        "why?", chat_id=GROUP, user_id=BOB, first_name="Bob", reply_to_message_id=answer.message_id
    )
    await until(lambda: "Because." in bot_texts(telegram, GROUP))
    provider.enqueue_stream(["Hi."])
    telegram.user_sends("/chat hi", chat_id=GROUP, user_id=BOB, first_name="Bob")
    await until(lambda: "Hi." in bot_texts(telegram, GROUP))

    assert len(provider.requests) == 3, "the chatter and the other bot's command are ignored"
    assert user_turns(provider.requests[2]) == ["what is 2+2?", "why?", "hi"]
    answers = [t for t in bot_texts(telegram, GROUP) if not t.startswith("⏳")]
    assert answers == ["Four.", "Because.", "Hi."]


async def test_a_text_mention_of_the_bot_addresses_it(telegram, provider, bot):
    provider.enqueue_stream(["Sure."])
    telegram.user_sends(
        "TestBot summarise please",
        chat_id=GROUP,
        user_id=ALICE,
        extra_entities=[
            {"type": "text_mention", "offset": 0, "length": 7, "user": telegram.bot_user}
        ],
    )
    await until(lambda: "Sure." in bot_texts(telegram, GROUP))
    assert user_turns(provider.requests[0]) == ["summarise please"]


async def test_a_bare_mention_asks_for_a_question(telegram, provider, bot):
    telegram.user_sends(MENTION, chat_id=GROUP, user_id=ALICE)
    await until(lambda: bool(bot_texts(telegram, GROUP)))
    assert bot_texts(telegram, GROUP) == [
        f"Ask me something after the mention, e.g. {MENTION} What is a haiku?"
    ]
    assert provider.requests == []


async def test_a_reply_to_another_member_joins_the_context_with_their_name(telegram, provider, bot):
    bobs = telegram.user_sends(
        "The Great Wall is visible from the Moon.", chat_id=GROUP, user_id=BOB, first_name="Bob"
    )
    provider.enqueue_stream(["It is not."])
    telegram.user_sends(
        f"{MENTION} is that true?", chat_id=GROUP, user_id=ALICE, reply_to_message_id=bobs
    )
    await until(lambda: "It is not." in bot_texts(telegram, GROUP))
    provider.enqueue_stream(["Yes."])
    telegram.user_sends("/chat sure?", chat_id=GROUP, user_id=ALICE)
    await until(lambda: "Yes." in bot_texts(telegram, GROUP))

    quoted = "[Bob wrote: The Great Wall is visible from the Moon.]\n\nis that true?"
    assert user_turns(provider.requests[0]) == [quoted]
    assert user_turns(provider.requests[1]) == [quoted, "sure?"], "kept in the history"


async def test_a_long_quoted_message_is_cut_to_a_bounded_length(telegram, provider, bot):
    bobs = telegram.user_sends("word " * 1000, chat_id=GROUP, user_id=BOB, first_name="Bob")
    provider.enqueue_stream(["Noted."])
    telegram.user_sends("/chat summarise", chat_id=GROUP, user_id=ALICE, reply_to_message_id=bobs)
    await until(lambda: "Noted." in bot_texts(telegram, GROUP))
    (turn,) = user_turns(provider.requests[0])
    assert turn.startswith("[Bob wrote: word word")
    assert turn.endswith("…]\n\nsummarise")
    assert len(turn) < 1100


async def test_each_forum_topic_keeps_its_own_conversation_and_answers_land_in_it(
    telegram, provider, bot
):
    telegram.make_forum(GROUP)
    provider.enqueue_stream(["About cats."])
    telegram.user_sends("/chat cats", chat_id=GROUP, user_id=ALICE, message_thread_id=10)
    await until(lambda: "About cats." in bot_texts(telegram, GROUP))
    provider.enqueue_stream(["About dogs."])
    telegram.user_sends(f"{MENTION} dogs", chat_id=GROUP, user_id=BOB, message_thread_id=20)
    await until(lambda: "About dogs." in bot_texts(telegram, GROUP))
    await turn_over(bot, GROUP, 10)
    provider.enqueue_stream(["More cats."])
    telegram.user_sends("/chat more", chat_id=GROUP, user_id=BOB, message_thread_id=10)
    await until(lambda: "More cats." in bot_texts(telegram, GROUP))

    assert user_turns(provider.requests[1]) == ["dogs"]
    assert user_turns(provider.requests[2]) == ["cats", "more"]
    topics = {m.text: m.message_thread_id for m in telegram.messages(GROUP) if m.from_bot}
    assert topics == {"About cats.": 10, "About dogs.": 20, "More cats.": 10}


@pytest.mark.parametrize("scope", ["chat"])
async def test_with_the_chat_scope_topics_share_one_conversation(
    telegram, provider, config_for, start_bot, scope
):
    telegram.make_forum(GROUP)
    async with start_bot(config_for(streaming={"drafts": False}, context={"scope": scope})):
        provider.enqueue_stream(["One."])
        telegram.user_sends("/chat first", chat_id=GROUP, user_id=ALICE, message_thread_id=10)
        await until(lambda: "One." in bot_texts(telegram, GROUP))
        provider.enqueue_stream(["Two."])
        telegram.user_sends("/chat second", chat_id=GROUP, user_id=BOB, message_thread_id=20)
        await until(lambda: "Two." in bot_texts(telegram, GROUP))
    assert user_turns(provider.requests[1]) == ["first", "second"]
    topics = {
        m.text: m.message_thread_id
        for m in telegram.messages(GROUP)
        if m.from_bot and not m.text.startswith("⏳")
    }
    assert topics == {"One.": 10, "Two.": 20}, "answers still land in the asker's topic"


async def test_three_members_asking_at_once_stay_within_the_group_budget(provider, config_for):
    # A group budget ten times Telegram's, so the test is quick; the bot is paced to match.
    # Three answers paced on their own would spend it three times over.
    limits = FloodLimits(
        per_chat_interval=60 / 200, per_chat_burst=2, group_per_minute=200, group_burst=2
    )
    async with FakeTelegram(token=config_for().telegram.token, flood=limits) as telegram:
        config = config_for(
            telegram={"base_url": telegram.base_url, "base_file_url": telegram.base_file_url},
            streaming={"drafts": False, "edit_interval_group": 60 / 200},
        )
        from bot.runner import running

        telegram.make_forum(GROUP)
        for _ in range(3):
            provider.enqueue_stream(["part one, ", "part two, ", "the end."], delay=0.2)
        async with running(config):
            for n, user in enumerate((ALICE, BOB, 9)):
                telegram.user_sends(
                    f"{MENTION} question {n}", chat_id=GROUP, user_id=user, message_thread_id=n + 1
                )
            await until(
                lambda: sum("the end." in t for t in bot_texts(telegram, GROUP)) == 3, timeout=30
            )
            await asyncio.sleep(0.2)
    assert len(provider.requests) == 3
    refused = [c.summary() for c in telegram.calls if c.error_code == 429]
    assert refused == []


async def test_with_the_user_scope_each_member_has_a_conversation_of_their_own(
    telegram, provider, config_for, start_bot
):
    config = config_for(streaming={"drafts": False}, context={"scope": "user"})
    async with start_bot(config):
        provider.enqueue_stream(["Slow for Alice."], delay=1.0)
        telegram.user_sends("/chat one", chat_id=GROUP, user_id=ALICE)
        await provider.wait_for_requests(1)
        provider.enqueue_stream(["For Bob."])
        telegram.user_sends("/chat two", chat_id=GROUP, user_id=BOB, first_name="Bob")
        await until(lambda: "For Bob." in bot_texts(telegram, GROUP))
        await until(lambda: "Slow for Alice." in bot_texts(telegram, GROUP))
        await answers_once_stored(config, 2)
        provider.enqueue_stream(["Alice again."])
        telegram.user_sends("/chat three", chat_id=GROUP, user_id=ALICE)
        await until(lambda: "Alice again." in bot_texts(telegram, GROUP))
        await answers_once_stored(config, 3)
        provider.enqueue_stream(["Fresh."])
        telegram.user_sends("/new", chat_id=GROUP, user_id=BOB, first_name="Bob")
        await until(lambda: len(bot_texts(telegram, GROUP)) == 4)
        telegram.user_sends("/chat four", chat_id=GROUP, user_id=BOB, first_name="Bob")
        await until(lambda: "Fresh." in bot_texts(telegram, GROUP))

    assert user_turns(provider.requests[1]) == ["two"]
    assert user_turns(provider.requests[2]) == ["one", "three"]
    assert user_turns(provider.requests[3]) == ["four"], "Bob's /new ends his conversation only"
    assert not any(t.startswith("⏳") for t in bot_texts(telegram, GROUP)), (
        "members do not wait for each other"
    )


async def test_members_asking_at_once_stay_within_telegrams_own_group_limit(provider, config_for):
    # Telegram's limits as the fake enforces them (20 messages a minute in a group, a burst of
    # 5) against the bot's default pacing: six answers at once need more than one burst.
    async with FakeTelegram(token=config_for().telegram.token, flood=FloodLimits()) as telegram:
        config = config_for(
            telegram={"base_url": telegram.base_url, "base_file_url": telegram.base_file_url},
            streaming={"drafts": False},
        )
        from bot.runner import running

        telegram.make_forum(GROUP)
        members = (ALICE, BOB, 9, 10, 11, 12)
        for n in range(len(members)):
            provider.enqueue_stream([f"answer {n}, ", "the end."])
        async with running(config):
            for n, user in enumerate(members):
                telegram.user_sends(
                    f"{MENTION} question {n}", chat_id=GROUP, user_id=user, message_thread_id=n + 1
                )
            await until(
                lambda: sum("the end." in t for t in bot_texts(telegram, GROUP)) == len(members),
                timeout=60,
            )
    sent = [c for c in telegram.calls if c.chat_id == GROUP and c.method != "sendChatAction"]
    assert len(sent) > FloodLimits().group_burst, "more than one burst of the budget was needed"
    assert [c.summary() for c in telegram.calls if c.error_code == 429] == []
    topics = {m.text: m.message_thread_id for m in telegram.messages(GROUP) if m.from_bot}
    assert topics == {f"answer {n}, the end.": n + 1 for n in range(len(members))}
