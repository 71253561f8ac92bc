"""Who a group message speaks to, and what it asks: pure checks on PTB messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from telegram import Chat, Document, ForumTopicCreated, Message, MessageEntity, PhotoSize, User

from bot.addressing import (
    is_addressed,
    quoted_context,
    quoted_image,
    replies_to_bot,
    without_mention,
)
from bot.gate import AllowList, RecentKeys
from bot.instances import lock_id
from bot.storage.advisory import conversation_lock_id

BOT_ID = 5000
BOT = "llm_test_bot"
GROUP = Chat(-100, "supergroup", title="Group")
ALICE = User(1, "Alice", is_bot=False)
BOB = User(2, "Bob", is_bot=False, last_name="Builder")
BOT_USER = User(BOT_ID, "Assistant", is_bot=True, username=BOT)


def message(text: str, sender: User = ALICE, **extra: Any) -> Message:
    return Message(1, datetime.now(UTC), GROUP, from_user=sender, text=text, **extra)


def mention(text: str, name: str) -> MessageEntity:
    """A mention entity over the first occurrence of ``name`` (ASCII, so UTF-16 offsets match)."""
    return MessageEntity("mention", text.index(name), len(name))


def test_a_mention_of_the_bot_addresses_it_and_is_taken_out_of_the_prompt() -> None:
    text = "@llm_test_bot what is a haiku?"
    msg = message(text, entities=(mention(text, "@llm_test_bot"),))
    assert is_addressed(msg, BOT_ID, BOT)
    assert without_mention(msg, BOT_ID, BOT) == "what is a haiku?"


def test_a_mention_in_the_middle_or_in_other_case_is_found_and_removed() -> None:
    text = "hey @LLM_Test_Bot, translate this please"
    msg = message(text, entities=(mention(text, "@LLM_Test_Bot"),))
    assert is_addressed(msg, BOT_ID, BOT)
    assert without_mention(msg, BOT_ID, BOT) == "hey , translate this please"


def test_a_mention_after_emoji_uses_utf16_offsets_correctly() -> None:
    text = "🙂🙂 @llm_test_bot hi"
    # Each emoji is two UTF-16 units: the mention starts at unit 5.
    msg = message(text, entities=(MessageEntity("mention", 5, 13),))
    assert is_addressed(msg, BOT_ID, BOT)
    assert without_mention(msg, BOT_ID, BOT) == "🙂🙂 hi"


def test_a_mention_of_someone_else_or_plain_text_does_not_address_the_bot() -> None:
    text = "@another_bot hello"
    assert not is_addressed(message(text, entities=(mention(text, "@another_bot"),)), BOT_ID, BOT)
    assert not is_addressed(message("llm_test_bot is nice"), BOT_ID, BOT)


def test_a_text_mention_of_the_bot_addresses_it() -> None:
    text = "Assistant please summarise"
    entity = MessageEntity("text_mention", 0, len("Assistant"), user=BOT_USER)
    msg = message(text, entities=(entity,))
    assert is_addressed(msg, BOT_ID, BOT)
    assert without_mention(msg, BOT_ID, BOT) == "please summarise"


def test_a_reply_to_the_bot_addresses_it_and_quotes_nothing() -> None:
    answer = message("An answer", sender=BOT_USER)
    msg = message("and why?", reply_to_message=answer)
    assert replies_to_bot(msg, BOT_ID)
    assert is_addressed(msg, BOT_ID, BOT)
    assert quoted_context(msg, BOT_ID) is None


def test_a_reply_to_someone_else_quotes_them_with_their_name_bounded() -> None:
    bobs = message("x" * 5000, sender=BOB)
    text = "@llm_test_bot is he right?"
    msg = message(text, entities=(mention(text, "@llm_test_bot"),), reply_to_message=bobs)
    assert not replies_to_bot(msg, BOT_ID)
    quote = quoted_context(msg, BOT_ID, limit=100)
    assert quote is not None
    assert quote.startswith("[Bob Builder wrote: xxx")
    assert quote.endswith("…]")
    assert len(quote) < 130


def test_replying_to_oneself_or_the_topic_start_quotes_nothing() -> None:
    own = message("my earlier words")
    assert quoted_context(message("hm", reply_to_message=own), BOT_ID) is None
    created = Message(
        1,
        datetime.now(UTC),
        GROUP,
        from_user=BOT_USER,
        forum_topic_created=ForumTopicCreated("Topic", 0x6FB9F0),
    )
    in_topic = message("just talking", reply_to_message=created, is_topic_message=True)
    assert not is_addressed(in_topic, BOT_ID, BOT)
    assert quoted_context(in_topic, BOT_ID) is None


def photo(sender: User, **extra: Any) -> Message:
    size = PhotoSize("file-1", "unique-1", 800, 600, file_size=90_000)
    return Message(2, datetime.now(UTC), GROUP, from_user=sender, photo=(size,), **extra)


def test_a_members_photo_or_image_file_replied_to_is_the_quoted_image() -> None:
    bobs = photo(BOB)
    assert quoted_image(message("what is it?", reply_to_message=bobs), BOT_ID) is bobs
    own = photo(ALICE)
    assert quoted_image(message("and this?", reply_to_message=own), BOT_ID) is own
    png = Document("file-2", "unique-2", mime_type="image/png")
    as_file = Message(3, datetime.now(UTC), GROUP, from_user=BOB, document=png)
    assert quoted_image(message("this?", reply_to_message=as_file), BOT_ID) is as_file


def test_text_a_non_image_file_or_the_bots_own_picture_is_no_quoted_image() -> None:
    assert quoted_image(message("hm", reply_to_message=message("words", BOB)), BOT_ID) is None
    pdf = Document("file-3", "unique-3", mime_type="application/pdf")
    report = Message(3, datetime.now(UTC), GROUP, from_user=BOB, document=pdf)
    assert quoted_image(message("hm", reply_to_message=report), BOT_ID) is None
    drawn = photo(BOT_USER)
    assert quoted_image(message("hm", reply_to_message=drawn), BOT_ID) is None
    assert quoted_image(message("no reply"), BOT_ID) is None


def test_empty_allow_lists_let_everyone_in() -> None:
    lists = AllowList((1,), (), ())
    assert lists.open
    assert lists.allows(999, 999)
    assert lists.allows(None, None)


def test_allowed_users_anywhere_allowed_chats_for_everyone_inside_and_admins_always() -> None:
    lists = AllowList(admins=(9,), users=(1,), chats=(-100,))
    assert lists.allows(1, 1)
    assert lists.allows(1, -555)
    assert lists.allows(2, -100)
    assert not lists.allows(2, 2)
    assert not lists.allows(2, -555)
    assert lists.allows(9, -555)


def test_recent_keys_remember_a_bounded_number() -> None:
    keys = RecentKeys(2)
    assert keys.add(1)
    assert not keys.add(1)
    assert keys.add(2)
    assert keys.add(3)
    assert keys.add(1), "the oldest key is forgotten past the bound"


def test_each_members_own_conversation_has_its_own_lock_id() -> None:
    shared = conversation_lock_id(-100, 5)
    assert lock_id((-100, 5)) == shared, "a conversation of the topic keeps its lock id"
    members = {lock_id((-100, 5, 1)), lock_id((-100, 5, 2)), shared}
    assert len(members) == 3
