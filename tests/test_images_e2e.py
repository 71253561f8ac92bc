"""Images end to end: /image, /edit of a photo and photos to vision models, over the fakes."""

from __future__ import annotations

import asyncio
import base64

import pytest

from bot.messages import text
from bot.vision import MAX_IMAGE_BYTES
from tests.e2e import bot_texts, stored_messages, turn_over, until
from tests.factories import MODEL
from tests.fakes.provider import FAKE_PNG, ErrorResponse, ImagesAnswer, b64_item
from tests.fakes.telegram import BOT_USERNAME

USER = 42
GROUP = -1007777
PHOTO = b"\xff\xd8\xff\xe0" + b"the user's photo, full size"
THUMBNAIL = b"\xff\xd8\xff\xe0" + b"thumb"
EDITED = b"\x89PNG\r\n\x1a\n" + b"the edited picture"
CONTENT_POLICY = {
    "error": {
        "code": "content_policy_violation",
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error",
    }
}


@pytest.fixture
def config(config_for):
    """Edits rather than drafts, and one vision-capable model besides the chat model."""
    return config_for(streaming={"drafts": False}, models={"chat": MODEL, "vision": ["gpt-4o"]})


@pytest.fixture
async def seeing_bot(config_for, start_bot):
    """The bot with a chat model that can see."""
    config = config_for(
        streaming={"drafts": False}, models={"chat": "gpt-4o", "vision": ["gpt-4o"]}
    )
    async with start_bot(config) as application:
        yield application


def bot_photos(telegram, chat_id=USER):
    return [m for m in telegram.messages(chat_id, from_bot=True) if m.kind == "photo"]


def image_requests(provider):
    return [r for r in provider.requests if r.path.startswith("/v1/images/")]


async def stored(config, timeout=10.0):
    """The stored messages once no answer is streaming: the reply goes out before the store."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await stored_messages(config)
        if all(row[3] != "streaming" for row in rows):
            return rows
        assert asyncio.get_running_loop().time() < deadline, f"answers not stored: {rows}"
        await asyncio.sleep(0.05)


# --- /image -----------------------------------------------------------------------------------


async def test_image_sends_a_photo_captioned_with_the_prompt_while_showing_upload_photo(
    telegram, provider, bot, config
) -> None:
    command = telegram.user_sends("/image a red fox in the snow")
    await until(lambda: bool(bot_photos(telegram)))
    (photo,) = bot_photos(telegram)
    assert photo.text == "a red fox in the snow"
    assert photo.reply_to_message_id == command
    assert photo.photo is not None
    assert photo.photo.data == FAKE_PNG
    actions = [c.params["action"] for c in telegram.calls_to("sendChatAction", USER)]
    assert "upload_photo" in actions
    (request,) = image_requests(provider)
    assert request.json == {
        "model": "dall-e-3",
        "prompt": "a red fox in the snow",
        "n": 1,
        "size": "1024x1024",
        "user": request.json["user"],
    }
    rows = await stored(config)
    assert rows[0] == ("image", "user", "a red fox in the snow", "complete")
    assert rows[1][:2] == ("image", "assistant")
    assert rows[1][3] == "complete"


async def test_image_turns_stay_out_of_the_chat_context(telegram, provider, bot) -> None:
    telegram.user_sends("/image a red fox")
    await until(lambda: bool(bot_photos(telegram)))
    telegram.user_sends("hello")
    await until(lambda: "echo: hello" in bot_texts(telegram))
    chat = [r for r in provider.requests if r.path == "/v1/chat/completions"][-1]
    assert [m["content"] for m in chat.json["messages"][1:]] == ["hello"]


async def test_two_images_arrive_as_one_album_with_the_caption_on_the_first(
    telegram, provider, start_bot, config_for
) -> None:
    async with start_bot(config_for(models={"chat": MODEL, "images": "gpt-image-1.5"})):
        telegram.user_sends("/image --n 2 --size 512x512 two foxes")
        await until(lambda: len(bot_photos(telegram)) == 2)
    first, second = bot_photos(telegram)
    assert (first.text, second.text) == ("two foxes", "")
    assert first.photo.media_group_id == second.photo.media_group_id is not None
    assert len(telegram.calls_to("sendMediaGroup", USER, ok=True)) == 1
    (request,) = image_requests(provider)
    assert (request.json["n"], request.json["size"]) == (2, "512x512")


async def test_a_long_prompt_is_cut_to_the_caption_limit_and_a_revised_prompt_is_shown(
    telegram, provider, bot
) -> None:
    provider.enqueue_images(ImagesAnswer([b64_item(revised_prompt="A red fox, photorealistic.")]))
    telegram.user_sends("/image a fox")
    await until(lambda: bool(bot_photos(telegram)))
    assert bot_photos(telegram)[0].text == "a fox\n\nRevised prompt: A red fox, photorealistic."

    long_prompt = "a very detailed fox " * 80
    telegram.user_sends(f"/image {long_prompt}")
    await until(lambda: len(bot_photos(telegram)) == 2)
    caption = bot_photos(telegram)[1].text
    assert len(caption) <= 1024
    assert caption.endswith("…")
    assert long_prompt.startswith(caption.removesuffix("…"))
    assert image_requests(provider)[1].json["prompt"] == long_prompt.strip()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/image --size huge a fox", "“huge” is not a size"),
        ("/image --n 9 a fox", "--n takes a whole number from 1 to 4, not “9”"),
        ("/image --style vivid a fox", "Unknown option --style"),
        ("/image", "Describe the picture after the command"),
    ],
)
async def test_bad_options_are_refused_with_a_message_and_nothing_is_asked(
    telegram, provider, bot, command, expected
) -> None:
    telegram.user_sends(command)
    await until(lambda: bool(bot_texts(telegram)))
    assert expected in bot_texts(telegram)[0]
    assert image_requests(provider) == []


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "refused to draw this because of its content policy"), ("zh", "内容安全策略拒绝生成")],
)
async def test_a_content_refusal_is_explained_in_the_users_language(
    telegram, provider, bot, config, language, expected
) -> None:
    provider.enqueue_images(ErrorResponse(400, CONTENT_POLICY))
    telegram.user_sends("/image something forbidden", language_code=language)
    await until(lambda: bool(bot_texts(telegram)))
    assert expected in bot_texts(telegram)[0]
    assert bot_photos(telegram) == []
    rows = await stored(config)
    assert rows[1] == ("image", "assistant", "", "error")


async def test_a_provider_error_reaches_the_user(telegram, provider, bot) -> None:
    provider.enqueue_images(
        ErrorResponse(401, {"error": {"code": "invalid_api_key", "message": "no"}})
    )
    telegram.user_sends("/image a fox")
    await until(lambda: bool(bot_texts(telegram)))
    assert "rejected the bot's API key" in bot_texts(telegram)[0]


async def test_an_unsupported_size_gets_a_hint_naming_the_model(telegram, provider, bot) -> None:
    bad = {"error": {"message": "Invalid size 300x300", "type": "invalid_request_error"}}
    provider.enqueue_images(ErrorResponse(400, bad))
    telegram.user_sends("/image --size 300x300 a fox")
    await until(lambda: bool(bot_texts(telegram)))
    assert "the model (dall-e-3) may not offer this size or count" in bot_texts(telegram)[0]


async def test_dall_e_3_makes_several_images_one_request_each(telegram, provider, bot) -> None:
    telegram.user_sends("/image --n 3 foxes")
    await until(lambda: len(bot_photos(telegram)) == 3)
    assert [r.json["n"] for r in image_requests(provider)] == [1, 1, 1]


async def test_a_url_telegram_cannot_reach_is_fetched_and_uploaded(
    telegram, provider, start_bot, config_for
) -> None:
    config = config_for(images={"response_format": "url"})
    async with start_bot(config):
        telegram.user_sends("/image a fox")
        await until(lambda: bool(bot_photos(telegram)))
    refused = telegram.calls_to("sendPhoto", USER, ok=False)
    assert refused
    assert refused[0].description == "Bad Request: failed to get HTTP URL content"
    assert bot_photos(telegram)[0].photo.data == FAKE_PNG


# --- /edit of a photo ---------------------------------------------------------------------


async def test_edit_as_a_reply_to_a_photo_replies_with_the_edited_image(
    telegram, provider, bot, config
) -> None:
    provider.enqueue_images(ImagesAnswer([b64_item(EDITED)]))
    photo = telegram.user_sends_photo(PHOTO, thumbnail=THUMBNAIL)
    command = telegram.user_sends("/edit give the fox a hat", reply_to_message_id=photo)
    await until(lambda: bool(bot_photos(telegram)))
    (edited,) = bot_photos(telegram)
    assert edited.photo.data == EDITED
    assert edited.reply_to_message_id == command
    assert edited.text == "give the fox a hat"
    (request,) = image_requests(provider)
    assert request.path == "/v1/images/edits"
    assert request.form["prompt"] == "give the fox a hat"
    assert request.form["model"] == "dall-e-2"
    assert request.files["image"].data == PHOTO
    assert request.files["image"].filename == "image.jpg"
    assert "upload_photo" in [c.params["action"] for c in telegram.calls_to("sendChatAction")]
    rows = await stored(config)
    assert rows[0][:3] == ("image_edit", "user", "give the fox a hat")


async def test_a_generated_image_can_be_edited_by_replying_to_it(telegram, provider, bot) -> None:
    telegram.user_sends("/image a fox")
    await until(lambda: bool(bot_photos(telegram)))
    generated = bot_photos(telegram)[0].message_id
    telegram.user_sends("/edit make it blue", reply_to_message_id=generated)
    await until(lambda: len(bot_photos(telegram)) == 2)
    assert image_requests(provider)[1].files["image"].data == FAKE_PNG


async def test_a_photo_captioned_edit_is_edited(telegram, provider, bot) -> None:
    telegram.user_sends_photo(PHOTO, "/edit make it night")
    await until(lambda: bool(bot_photos(telegram)))
    (request,) = image_requests(provider)
    assert (request.form["prompt"], request.files["image"].data) == ("make it night", PHOTO)


async def test_a_png_file_is_sent_as_png(telegram, provider, bot) -> None:
    document = telegram.user_sends_photo(EDITED, as_document="image/png")
    telegram.user_sends("/edit add stars", reply_to_message_id=document)
    await until(lambda: bool(bot_photos(telegram)))
    image = image_requests(provider)[0].files["image"]
    assert (image.filename, image.content_type, image.data) == ("image.png", "image/png", EDITED)


async def test_edit_of_a_photo_without_an_instruction_explains_itself(
    telegram, provider, bot
) -> None:
    photo = telegram.user_sends_photo(PHOTO)
    telegram.user_sends("/edit", reply_to_message_id=photo, language_code="zh")
    await until(lambda: any("请在命令后写上要修改的内容" in t for t in bot_texts(telegram)))
    assert image_requests(provider) == []


async def test_an_edit_refused_by_the_content_policy_says_so(telegram, provider, bot) -> None:
    provider.enqueue_images(ErrorResponse(400, CONTENT_POLICY))
    photo = telegram.user_sends_photo(PHOTO)
    telegram.user_sends("/edit something", reply_to_message_id=photo)
    await until(lambda: any("refused to edit this picture" in t for t in bot_texts(telegram)))


# --- photos to vision models ----------------------------------------------------------------


async def test_a_photo_to_a_vision_model_goes_as_an_image_url_data_part(
    telegram, provider, start_bot, config_for
) -> None:
    config = config_for(
        streaming={"drafts": False}, models={"chat": "gpt-4o", "vision": ["gpt-4o"]}
    )
    async with start_bot(config):
        telegram.user_sends_photo(PHOTO, "what is this?", thumbnail=THUMBNAIL)
        await until(lambda: "echo: what is this? [1 image(s)]" in bot_texts(telegram))
        telegram.user_sends("and its colour?")
        await until(lambda: "echo: and its colour?" in bot_texts(telegram))
    first, second = provider.requests
    content = first.json["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    url = content[1]["image_url"]["url"]
    assert url == "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode()
    history = [m["content"] for m in second.json["messages"][1:]]
    assert history == [
        "[photo] what is this?",
        "echo: what is this? [1 image(s)]",
        "and its colour?",
    ]


async def test_a_photo_to_a_model_that_cannot_see_names_the_models_that_can(
    telegram, provider, bot
) -> None:
    telegram.user_sends_photo(PHOTO, "what is this?")
    await until(lambda: bool(bot_texts(telegram)))
    reply = bot_texts(telegram)[0]
    assert f"The current model ({MODEL}) cannot see pictures" in reply
    assert "/models: gpt-4o." in reply
    assert "reply to it with /edit" in reply
    assert provider.requests == []


async def test_without_any_vision_model_the_admin_is_named(
    telegram, provider, start_bot, config_for
) -> None:
    async with start_bot(config_for(streaming={"drafts": False})):
        telegram.user_sends_photo(PHOTO, "was ist das?", language_code="zh")
        await until(lambda: bool(bot_texts(telegram)))
    assert "没有配置支持图片的模型" in bot_texts(telegram)[0]


async def test_in_groups_a_photo_is_answered_in_its_topic_only_when_it_speaks_to_the_bot(
    telegram, provider, seeing_bot
) -> None:
    telegram.make_forum(GROUP)
    telegram.user_sends_photo(PHOTO, "my cat", chat_id=GROUP, message_thread_id=10)
    telegram.user_sends_photo(PHOTO, "/chat what breed?", chat_id=GROUP, message_thread_id=10)
    await until(lambda: "echo: what breed? [1 image(s)]" in bot_texts(telegram, GROUP))
    telegram.user_sends_photo(
        PHOTO, f"@{BOT_USERNAME} how old is it?", chat_id=GROUP, message_thread_id=20
    )
    await until(lambda: "echo: how old is it? [1 image(s)]" in bot_texts(telegram, GROUP))
    answer = next(m for m in telegram.messages(GROUP) if m.from_bot)
    telegram.user_sends_photo(
        PHOTO,
        "and this one?",
        chat_id=GROUP,
        message_thread_id=10,
        reply_to_message_id=answer.message_id,
    )
    await until(lambda: "echo: and this one? [1 image(s)]" in bot_texts(telegram, GROUP))
    telegram.user_sends_photo(
        PHOTO,
        "TestBot which colour?",
        chat_id=GROUP,
        message_thread_id=20,
        extra_entities=[
            {"type": "text_mention", "offset": 0, "length": 7, "user": telegram.bot_user}
        ],
    )
    await until(lambda: "echo: which colour? [1 image(s)]" in bot_texts(telegram, GROUP))
    assert len(provider.requests) == 4, "the photo that does not speak to the bot is ignored"
    questions = [r.json["messages"][-1]["content"][0]["text"] for r in provider.requests]
    assert questions == ["what breed?", "how old is it?", "and this one?", "which colour?"]
    topics = {m.text: m.message_thread_id for m in telegram.messages(GROUP) if m.from_bot}
    assert topics == {
        "echo: what breed? [1 image(s)]": 10,
        "echo: how old is it? [1 image(s)]": 20,
        "echo: and this one? [1 image(s)]": 10,
        "echo: which colour? [1 image(s)]": 20,
    }


async def test_asking_the_bot_in_reply_to_a_members_photo_shows_the_model_that_photo(
    telegram, provider, seeing_bot
) -> None:
    bobs = telegram.user_sends_photo(
        PHOTO, "my holiday", chat_id=GROUP, user_id=8, first_name="Bob"
    )
    telegram.user_sends(
        f"@{BOT_USERNAME} what is in this picture?", chat_id=GROUP, reply_to_message_id=bobs
    )
    await until(lambda: len(bot_texts(telegram, GROUP)) == 1)
    await turn_over(seeing_bot, GROUP)
    telegram.user_sends("/chat and the weather?", chat_id=GROUP)
    await until(lambda: len(bot_texts(telegram, GROUP)) == 2)
    first, second = provider.requests
    question = "[Bob wrote: my holiday]\n\nwhat is in this picture?"
    assert first.json["messages"][-1]["content"] == [
        {"type": "text", "text": question},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode()},
        },
    ]
    history = [m["content"] for m in second.json["messages"][1:]]
    assert history[0] == f"[photo] {question}", "the history keeps a marker, not the image"


async def test_a_replied_photo_for_a_model_that_cannot_see_names_the_models_that_can(
    telegram, provider, bot
) -> None:
    bobs = telegram.user_sends_photo(PHOTO, chat_id=GROUP, user_id=8, first_name="Bob")
    telegram.user_sends(f"@{BOT_USERNAME} what is this?", chat_id=GROUP, reply_to_message_id=bobs)
    await until(lambda: bool(bot_texts(telegram, GROUP)))
    assert f"The current model ({MODEL}) cannot see pictures" in bot_texts(telegram, GROUP)[0]
    assert provider.requests == []


async def test_a_replied_image_file_too_large_to_send_on_is_refused_with_the_limit(
    telegram, provider, seeing_bot
) -> None:
    huge = b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES)
    bobs = telegram.user_sends_photo(
        huge, as_document="image/png", chat_id=GROUP, user_id=8, first_name="Bob"
    )
    telegram.user_sends(f"@{BOT_USERNAME} what is this?", chat_id=GROUP, reply_to_message_id=bobs)
    await until(lambda: bool(bot_texts(telegram, GROUP)))
    assert bot_texts(telegram, GROUP) == [text("photo.too_large", "en", limit=10)]
    assert provider.requests == []


async def test_a_reply_to_the_bots_own_picture_is_answered_without_it(
    telegram, provider, seeing_bot
) -> None:
    telegram.user_sends("/image a red fox", chat_id=GROUP)
    await until(lambda: bool(bot_photos(telegram, GROUP)))
    (picture,) = bot_photos(telegram, GROUP)
    telegram.user_sends(
        "now a story about it", chat_id=GROUP, reply_to_message_id=picture.message_id
    )
    await until(lambda: "echo: now a story about it" in bot_texts(telegram, GROUP))
    chat = [r for r in provider.requests if r.path == "/v1/chat/completions"]
    assert chat[-1].json["messages"][-1]["content"] == "now a story about it", (
        "the bot's picture is already in the conversation as its record"
    )


async def test_an_album_is_answered_once_with_all_its_photos(
    telegram, provider, start_bot, config_for
) -> None:
    config = config_for(
        streaming={"drafts": False}, models={"chat": "gpt-4o", "vision": ["gpt-4o"]}
    )
    second_photo = b"\xff\xd8\xff\xe0" + b"the second photo"
    async with start_bot(config):
        telegram.user_sends_photo(PHOTO, "which is better?", media_group_id="album-1")
        telegram.user_sends_photo(second_photo, media_group_id="album-1")
        await until(lambda: "echo: which is better? [2 image(s)]" in bot_texts(telegram))
    (request,) = provider.requests
    urls = [p["image_url"]["url"] for p in request.json["messages"][-1]["content"][1:]]
    assert urls == [
        "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode(),
        "data:image/jpeg;base64," + base64.b64encode(second_photo).decode(),
    ]


async def test_a_photo_captioned_for_another_bot_is_left_alone(
    telegram, provider, start_bot, config_for
) -> None:
    config = config_for(
        streaming={"drafts": False}, models={"chat": "gpt-4o", "vision": ["gpt-4o"]}
    )
    async with start_bot(config):
        telegram.user_sends_photo(PHOTO, "/chat@other_bot what is it?", chat_id=GROUP)
        telegram.user_sends_photo(PHOTO, "/chat@test_llm_bot what is it?", chat_id=GROUP)
        await until(lambda: "echo: what is it? [1 image(s)]" in bot_texts(telegram, GROUP))
    assert len(provider.requests) == 1
