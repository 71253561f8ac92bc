"""The fake Bot API speaks what python-telegram-bot expects: driven here by the real ``Bot``."""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import (
    Bot,
    BotCommand,
    ChatMemberAdministrator,
    ChatMemberMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    MessageEntity,
)
from telegram.error import BadRequest, EndPointNotFound, InvalidToken, RetryAfter

from tests.fakes.telegram import BOT_ID, DEFAULT_TOKEN, FakeTelegram, FloodLimits

USER = 42
GROUP = -100123


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=DEFAULT_TOKEN) as fake:
        yield fake


@pytest.fixture
async def ptb(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(DEFAULT_TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        yield bot


def keyboard(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(x, callback_data=x) for x in labels]])


def seconds(retry_after: int | dtm.timedelta) -> float:
    return retry_after.total_seconds() if isinstance(retry_after, dtm.timedelta) else retry_after


# ------------------------------------------------------------------------ basics


async def test_get_me_describes_the_test_bot(tg: FakeTelegram, ptb: Bot) -> None:
    me = await ptb.get_me()
    assert (me.id, me.username, me.first_name, me.is_bot) == (
        BOT_ID,
        "test_llm_bot",
        "TestBot",
        True,
    )
    assert me.can_join_groups is True
    assert me.can_read_all_group_messages is False
    assert me.supports_inline_queries is False
    assert tg.calls_to("getMe")[0].ok


async def test_wrong_token_is_unauthorized(tg: FakeTelegram) -> None:
    bot = Bot("999:WRONG", base_url=tg.base_url, base_file_url=tg.base_file_url)
    with pytest.raises(InvalidToken):
        await bot.initialize()
    await bot.shutdown()
    [call] = tg.calls
    assert (call.ok, call.error_code, call.description) == (False, 401, "Unauthorized")


async def test_unknown_method_is_not_found(tg: FakeTelegram, ptb: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await ptb.do_api_request("sendTelepathy")
    assert tg.calls[-1].error_code == 404


async def test_raw_http_accepts_json_body_query_parameters_and_any_case(tg: FakeTelegram) -> None:
    url = f"{tg.base_url}{DEFAULT_TOKEN}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/SENDMESSAGE", json={"chat_id": USER, "text": "[1]"}) as r:
            assert r.status == 200
            sent = await r.json()
        async with session.get(f"{url}/sendmessage", params={"chat_id": "7", "text": "q"}) as r:
            assert r.status == 200
        async with session.post(f"{tg.base_url}1:bad/getMe") as r:
            assert await r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        async with session.post(f"{url}/noSuchMethod") as r:
            assert r.status == 404
            assert (await r.json())["description"] == "Not Found: method not found"
    assert sent["result"]["text"] == "[1]"  # strings are never JSON-decoded
    assert [c.method for c in tg.calls[:2]] == ["sendMessage", "sendMessage"]
    assert tg.text_of(7, 1) == "q"


# ---------------------------------------------------------------------- messages


async def test_edit_changes_the_text_and_keeps_every_version(tg: FakeTelegram, ptb: Bot) -> None:
    sent = await ptb.send_message(USER, "Hel", reply_markup=keyboard("stop"))
    assert sent.chat.type == "private"
    assert sent.from_user is not None
    assert sent.from_user.id == BOT_ID
    assert sent.reply_markup == keyboard("stop")
    edited = await ptb.edit_message_text("Hello", chat_id=USER, message_id=sent.message_id)
    assert isinstance(edited, type(sent))
    assert edited.text == "Hello"
    assert edited.edit_date is not None
    message = tg.message(USER, sent.message_id)
    assert message.texts == ["Hel", "Hello"]
    # Like Telegram, an edit without reply_markup removes the inline keyboard.
    assert message.reply_markup is None
    assert tg.text_of(USER, sent.message_id) == "Hello"


async def test_message_ids_increase_per_chat(tg: FakeTelegram, ptb: Bot) -> None:
    first = await ptb.send_message(USER, "a")
    second = await ptb.send_message(USER, "b")
    other = await ptb.send_message(GROUP, "c", message_thread_id=5)
    assert second.message_id == first.message_id + 1
    assert other.message_id == 1
    assert other.chat.type == "supergroup"
    assert other.chat.title
    assert other.message_thread_id == 5
    assert [m.text for m in tg.messages(USER)] == ["a", "b"]


async def test_identical_edit_is_rejected_as_not_modified(tg: FakeTelegram, ptb: Bot) -> None:
    sent = await ptb.send_message(USER, "same", reply_markup=keyboard("a"))
    with pytest.raises(BadRequest, match=r"not modified"):
        await ptb.edit_message_text(
            "same", chat_id=USER, message_id=sent.message_id, reply_markup=keyboard("a")
        )
    with pytest.raises(BadRequest, match=r"not modified"):
        await ptb.edit_message_reply_markup(USER, sent.message_id, reply_markup=keyboard("a"))
    assert tg.message(USER, sent.message_id).texts == ["same"]
    assert not tg.calls_to("editMessageText")[0].ok


async def test_whitespace_only_differences_are_not_a_modification(ptb: Bot) -> None:
    sent = await ptb.send_message(USER, "answer")
    with pytest.raises(BadRequest, match=r"not modified"):
        await ptb.edit_message_text("answer \n", chat_id=USER, message_id=sent.message_id)


async def test_editing_a_missing_message_is_rejected(ptb: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await ptb.edit_message_text("x", chat_id=USER, message_id=77)


async def test_text_longer_than_4096_utf16_units_is_too_long(tg: FakeTelegram, ptb: Bot) -> None:
    await ptb.send_message(USER, "a" * 4096)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await ptb.send_message(USER, "😀" * 2049)  # 2049 characters, 4098 UTF-16 units
    assert len(tg.messages(USER)) == 1


async def test_empty_text_is_rejected(ptb: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await ptb.send_message(USER, " \n ")


async def test_html_is_parsed_into_text_and_entities(tg: FakeTelegram, ptb: Bot) -> None:
    sent = await ptb.send_message(USER, "<b>Hi</b> &amp; <i>bye</i>", parse_mode="HTML")
    assert sent.text == "Hi & bye"
    assert sent.entities == (
        MessageEntity(MessageEntity.BOLD, 0, 2),
        MessageEntity(MessageEntity.ITALIC, 5, 3),
    )
    assert tg.calls_to("sendMessage")[0].params["text"] == "<b>Hi</b> &amp; <i>bye</i>"


async def test_html_with_an_unclosed_tag_cannot_be_parsed(ptb: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities.*end tag"):
        await ptb.send_message(USER, "<b>bold", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities.*unsupported start tag"):
        await ptb.send_message(USER, "1 <blink>2</blink>", parse_mode="HTML")


async def test_entities_beyond_the_text_cannot_be_parsed(tg: FakeTelegram, ptb: Bot) -> None:
    # "😀ab" is 4 UTF-16 units long: bold over units 2..4 fits, 3..5 does not.
    sent = await ptb.send_message(USER, "😀ab", entities=[MessageEntity("bold", 2, 2)])
    assert sent.entities == (MessageEntity("bold", 2, 2),)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await ptb.send_message(USER, "😀ab", entities=[MessageEntity("bold", 3, 2)])


async def test_reply_to_a_user_message_carries_it(tg: FakeTelegram, ptb: Bot) -> None:
    asked = tg.user_sends("What is 2+2?")
    sent = await ptb.send_message(USER, "4", reply_to_message_id=asked)
    assert sent.reply_to_message is not None
    assert sent.reply_to_message.text == "What is 2+2?"
    with pytest.raises(BadRequest, match=r"(?i)replied not found"):
        await ptb.send_message(USER, "?", reply_to_message_id=999)


async def test_deleted_message_leaves_the_chat(tg: FakeTelegram, ptb: Bot) -> None:
    sent = await ptb.send_message(USER, "oops")
    assert await ptb.delete_message(USER, sent.message_id) is True
    assert tg.messages(USER) == []
    assert tg.message(USER, sent.message_id).deleted
    with pytest.raises(BadRequest, match=r"(?i)not found"):
        await ptb.delete_message(USER, sent.message_id)


async def test_a_users_photo_sizes_are_downloadable_with_get_file(
    tg: FakeTelegram, ptb: Bot
) -> None:
    tg.user_sends_photo(b"full size", "look", thumbnail=b"tiny")
    (update,) = await ptb.get_updates()
    message = update.message
    assert message is not None
    assert message.caption == "look"
    small, large = message.photo
    assert (small.file_size, large.file_size) == (4, 9)
    assert large.width > small.width
    file = await ptb.get_file(large.file_id)
    assert bytes(await file.download_as_bytearray()) == b"full size"
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await ptb.get_file("no-such-file")


async def test_an_image_file_from_a_user_is_a_document(tg: FakeTelegram, ptb: Bot) -> None:
    tg.user_sends_photo(b"\x89PNG", as_document="image/png")
    (update,) = await ptb.get_updates()
    document = update.message.document if update.message else None
    assert document is not None
    assert (document.mime_type, document.file_size) == ("image/png", 4)
    file = await ptb.get_file(document.file_id)
    assert bytes(await file.download_as_bytearray()) == b"\x89PNG"


async def test_an_album_of_uploads_becomes_photos_sharing_a_media_group(
    tg: FakeTelegram, ptb: Bot
) -> None:
    album = [InputMediaPhoto(b"one"), InputMediaPhoto("https://images.example/two.png")]
    sent = await ptb.send_media_group(USER, album, caption="two")
    assert [m.caption for m in sent] == ["two", None]
    assert sent[0].media_group_id == sent[1].media_group_id is not None
    assert [m.message_id for m in sent] == [1, 2]
    file = await ptb.get_file(sent[0].photo[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == b"one"
    with pytest.raises(BadRequest, match="between 2 and 10"):
        await ptb.send_media_group(USER, [InputMediaPhoto(b"alone")] * 11)


async def test_a_photo_url_on_the_loopback_cannot_be_fetched_by_telegram(
    tg: FakeTelegram, ptb: Bot
) -> None:
    with pytest.raises(BadRequest, match=r"(?i)failed to get http url content"):
        await ptb.send_photo(USER, "http://127.0.0.1:9/picture.png")
    sent = await ptb.send_photo(USER, "https://images.example/picture.png")
    stored = tg.message(USER, sent.message_id).photo
    assert stored is not None
    assert stored.source == "https://images.example/picture.png"


async def test_uploaded_photo_is_stored_with_size_and_caption(tg: FakeTelegram, ptb: Bot) -> None:
    picture = b"\x89PNG\r\n\x1a\n" + bytes(100)
    sent = await ptb.send_photo(USER, picture, caption="<b>cat</b>", parse_mode="HTML")
    assert sent.photo
    assert sent.photo[-1].file_size == len(picture)
    assert sent.caption == "cat"
    assert sent.caption_entities == (MessageEntity("bold", 0, 3),)
    stored = tg.message(USER, sent.message_id)
    assert stored.photo is not None
    assert stored.photo.size == len(picture)
    again = await ptb.send_photo(USER, sent.photo[-1].file_id)
    assert again.photo
    by_file_id = tg.message(USER, again.message_id).photo
    assert by_file_id is not None
    assert (by_file_id.size, by_file_id.source) == (None, sent.photo[-1].file_id)


# ------------------------------------------------------------- faults and floods


async def test_injected_retry_after_raises_retry_after(tg: FakeTelegram, ptb: Bot) -> None:
    tg.inject_retry_after("editMessageText", 7, chat_id=USER)
    sent = await ptb.send_message(USER, "a")
    with pytest.raises(RetryAfter) as caught:
        await ptb.edit_message_text("b", chat_id=USER, message_id=sent.message_id)
    assert seconds(caught.value.retry_after) == 7
    await ptb.edit_message_text("b", chat_id=USER, message_id=sent.message_id)  # used up
    failed = tg.calls_to("editMessageText", USER, ok=False)
    assert [(c.error_code, c.description) for c in failed] == [
        (429, "Too Many Requests: retry after 7")
    ]


async def test_injection_is_scoped_to_its_chat(tg: FakeTelegram, ptb: Bot) -> None:
    tg.inject_error("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=7)
    await ptb.send_message(USER, "fine")
    with pytest.raises(Exception, match=r"blocked"):
        await ptb.send_message(7, "blocked")


async def test_injected_cant_parse_entities_raises_bad_request(tg: FakeTelegram, ptb: Bot) -> None:
    tg.inject_cant_parse_entities("sendMessage", times=2)
    for _ in range(2):
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await ptb.send_message(USER, "*x*")
    await ptb.send_message(USER, "*x*")


async def test_injected_not_modified_raises_bad_request(tg: FakeTelegram, ptb: Bot) -> None:
    tg.inject_not_modified()
    sent = await ptb.send_message(USER, "a")
    with pytest.raises(BadRequest, match=r"not modified"):
        await ptb.edit_message_text("b", chat_id=USER, message_id=sent.message_id)


async def test_flood_limit_rejects_a_second_edit_within_the_interval() -> None:
    flood = FloodLimits(per_chat_interval=0.2, per_chat_burst=1)
    async with (
        FakeTelegram(flood=flood) as tg,
        Bot(DEFAULT_TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot,
    ):
        sent = await bot.send_message(USER, "a")
        with pytest.raises(RetryAfter) as caught:
            await bot.edit_message_text("b", chat_id=USER, message_id=sent.message_id)
        assert seconds(caught.value.retry_after) == 1  # rounded up, at least one second
        await bot.send_chat_action(USER, "typing")  # chat actions are free
        await bot.send_message(GROUP, "other chats have their own budget")


async def test_flood_limit_allows_edits_spaced_by_the_interval() -> None:
    flood = FloodLimits(per_chat_interval=0.05, per_chat_burst=1)
    async with (
        FakeTelegram(flood=flood) as tg,
        Bot(DEFAULT_TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot,
    ):
        sent = await bot.send_message(USER, "a")
        for text in ("ab", "abc"):
            await asyncio.sleep(0.06)
            await bot.edit_message_text(text, chat_id=USER, message_id=sent.message_id)
        assert tg.text_of(USER, sent.message_id) == "abc"


# ------------------------------------------------------------------ updates


async def test_long_poll_returns_an_update_pushed_while_it_waits(
    tg: FakeTelegram, ptb: Bot
) -> None:
    poll = asyncio.create_task(ptb.get_updates(timeout=5))
    await tg.wait_until_polling()
    started = time.monotonic()
    tg.user_sends("hello")
    [update] = await poll
    assert time.monotonic() - started < 1
    assert update.message is not None
    assert update.message.text == "hello"
    assert update.message.from_user is not None
    assert update.message.from_user.first_name == "Alice"


async def test_offset_confirms_and_drops_older_updates(tg: FakeTelegram, ptb: Bot) -> None:
    ids = [tg.user_sends(f"m{i}") and tg.pending_updates[-1]["update_id"] for i in range(3)]
    assert [u.update_id for u in await ptb.get_updates()] == ids
    assert [u.update_id for u in await ptb.get_updates(offset=ids[1], limit=1)] == [ids[1]]
    assert [u["update_id"] for u in tg.pending_updates] == ids[1:]
    assert await ptb.get_updates(offset=ids[2] + 1, timeout=0) == ()


async def test_short_long_poll_times_out_empty(tg: FakeTelegram, ptb: Bot) -> None:
    started = time.monotonic()
    assert await ptb.get_updates(timeout=dtm.timedelta(seconds=0.2)) == ()
    assert 0.15 < time.monotonic() - started < 2


async def test_close_answers_a_pending_long_poll_promptly() -> None:
    tg = FakeTelegram()
    await tg.start()
    async with Bot(DEFAULT_TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await tg.wait_until_polling()
        started = time.monotonic()
        await tg.close()
        assert await poll == ()
        assert time.monotonic() - started < 2


async def test_user_command_parses_with_a_bot_command_entity(tg: FakeTelegram, ptb: Bot) -> None:
    tg.user_sends("/chat hi")
    tg.user_sends("/chat@test_llm_bot hi", user_id=7, chat_id=GROUP, username="bob")
    private, group = await ptb.get_updates()
    assert private.message is not None
    assert group.message is not None
    assert private.message.entities == (MessageEntity(MessageEntity.BOT_COMMAND, 0, 5),)
    assert private.message.parse_entity(private.message.entities[0]) == "/chat"
    assert group.message.entities[0].length == len("/chat@test_llm_bot")
    assert group.message.chat.type == "supergroup"
    assert group.message.from_user is not None
    assert group.message.from_user.username == "bob"
    assert [m.text for m in tg.messages(GROUP)] == ["/chat@test_llm_bot hi"]


async def test_button_press_reaches_the_bot_and_is_answered_once(
    tg: FakeTelegram, ptb: Bot
) -> None:
    sent = await ptb.send_message(USER, "Pick", reply_markup=keyboard("yes", "no"))
    query_id = tg.user_presses("yes", message_id=sent.message_id)
    [update] = await ptb.get_updates()
    query = update.callback_query
    assert query is not None
    assert (query.id, query.data) == (query_id, "yes")
    assert query.message is not None
    assert query.message.message_id == sent.message_id
    assert await ptb.answer_callback_query(query_id, text="ok") is True
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await ptb.answer_callback_query(query_id)


# ------------------------------------------------------------ other methods


async def test_commands_are_stored_per_language(tg: FakeTelegram, ptb: Bot) -> None:
    commands = [BotCommand("chat", "Ask the model"), BotCommand("new", "Start over")]
    assert await ptb.set_my_commands(commands) is True
    assert await ptb.set_my_commands([BotCommand("new", "新对话")], language_code="zh")
    assert tg.commands == [c.to_dict() for c in commands]
    assert await ptb.get_my_commands() == tuple(commands)
    assert [c.command for c in await ptb.get_my_commands(language_code="zh")] == ["new"]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await ptb.set_my_commands([BotCommand("Chat", "uppercase is invalid")])


async def test_message_drafts_are_recorded(tg: FakeTelegram, ptb: Bot) -> None:
    assert await ptb.send_message_draft(USER, draft_id=5, text="Thinking") is True
    assert await ptb.send_message_draft(
        USER, draft_id=5, text="<i>Thinking more</i>", parse_mode="HTML"
    )
    assert await ptb.send_message_draft(USER, draft_id=5)  # the "Thinking..." placeholder
    assert [(d.draft_id, d.text) for d in tg.drafts(USER)] == [
        (5, "Thinking"),
        (5, "Thinking more"),
        (5, ""),
    ]
    assert tg.drafts(USER)[1].entities == [{"type": "italic", "offset": 0, "length": 13}]
    with pytest.raises(BadRequest):
        await ptb.send_message_draft(GROUP, draft_id=5, text="drafts are for private chats")


async def test_chat_action_is_recorded(tg: FakeTelegram, ptb: Bot) -> None:
    assert await ptb.send_chat_action(USER, "typing") is True
    [call] = tg.calls_to("sendChatAction", chat_id=USER)
    assert call.params == {"chat_id": USER, "action": "typing"}
    with pytest.raises(BadRequest):
        await ptb.send_chat_action(USER, "dancing")


async def test_chat_member_status_is_set_by_the_test(tg: FakeTelegram, ptb: Bot) -> None:
    tg.set_member_status(GROUP, USER, "administrator")
    admin = await ptb.get_chat_member(GROUP, USER)
    assert isinstance(admin, ChatMemberAdministrator)
    assert isinstance(await ptb.get_chat_member(GROUP, 7), ChatMemberMember)
    for status in ("creator", "member", "restricted", "left", "kicked"):
        tg.set_member_status(GROUP, 8, status)
        assert (await ptb.get_chat_member(GROUP, 8)).status == status


async def test_get_chat_describes_private_and_group_chats(tg: FakeTelegram, ptb: Bot) -> None:
    tg.user_sends("hi", first_name="Zoë")
    private = await ptb.get_chat(USER)
    assert (private.type, private.first_name) == ("private", "Zoë")
    group = await ptb.get_chat(GROUP)
    assert group.type == "supergroup"
    assert group.title


async def test_wait_for_times_out_with_a_summary_of_the_calls(tg: FakeTelegram, ptb: Bot) -> None:
    await ptb.send_message(USER, "only this")
    with pytest.raises(AssertionError, match=r"(?s)editMessageText.*sendMessage.*'only this'"):
        await tg.wait_for_call("editMessageText", timeout=0.05)


async def test_wait_for_wakes_when_the_call_arrives(tg: FakeTelegram, ptb: Bot) -> None:
    waiter = asyncio.create_task(tg.wait_for_call("sendMessage", chat_id=USER, count=2))
    await ptb.send_message(USER, "one")
    assert not waiter.done()
    await ptb.send_message(USER, "two")
    calls = await waiter
    assert [c.params["text"] for c in calls] == ["one", "two"]
